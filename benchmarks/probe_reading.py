"""Read the over-training probe's answers blind: which step an answer came from is hidden
until every answer has been read (issue 25).

    # a reading sheet from the answers the monitor saw (RUN/probe_answers.jsonl), shuffled
    python benchmarks/probe_reading.py sheet OUT/model ... --sheet sheet.jsonl --key key.json
    # read sheet.jsonl; write labels.jsonl, one {"id": N, "degenerate": true|false} per row
    python benchmarks/probe_reading.py tally --labels labels.jsonl --key key.json

An answer given word for word at several steps (or runs) is read once and counted at each.
The sheet shows the request and the answer, nothing else: no step, run, reward or figure.
``tally`` prints, per run and probe step, how many answers were read as degenerate.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path


def sheet(runs: list[Path], sheet_path: Path, key_path: Path, seed: int = 0) -> int:
    where: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for run in runs:
        for line in (run / "probe_answers.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            where[(row["prompt"], row["answer"])].append((str(run), row["step"]))
    items = list(where.items())
    random.Random(seed).shuffle(items)
    with sheet_path.open("w", encoding="utf-8") as f:
        for i, ((prompt, answer), _) in enumerate(items):
            f.write(json.dumps({"id": i, "prompt": prompt, "answer": answer},
                               ensure_ascii=False) + "\n")
    key_path.write_text(json.dumps({i: seen for i, (_, seen) in enumerate(items)}),
                        encoding="utf-8")
    return len(items)


def tally(labels_path: Path, key_path: Path) -> dict[str, dict[int, list[int]]]:
    key = json.loads(key_path.read_text(encoding="utf-8"))
    labels = {str(r["id"]): r["degenerate"] for r in
              map(json.loads, labels_path.read_text(encoding="utf-8").splitlines())}
    missing = sorted(set(key) - set(labels), key=int)
    if missing:
        raise SystemExit(f"{labels_path}: no label for ids {missing[:10]}"
                         f"{' …' if len(missing) > 10 else ''}")
    counts: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for i, seen in key.items():
        for run, step in seen:
            counts[run][step][0] += labels[i]
            counts[run][step][1] += 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sheet")
    s.add_argument("runs", nargs="+", type=Path, help="training output folders")
    s.add_argument("--sheet", type=Path, required=True)
    s.add_argument("--key", type=Path, required=True)
    s.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("tally")
    t.add_argument("--labels", type=Path, required=True)
    t.add_argument("--key", type=Path, required=True)
    args = ap.parse_args()
    if args.cmd == "sheet":
        print(f"{sheet(args.runs, args.sheet, args.key, args.seed)} distinct answers in {args.sheet}")
        return
    for run, steps in tally(args.labels, args.key).items():
        print(run + ": " + " · ".join(f"{step}: {d}/{n}" for step, (d, n) in sorted(steps.items())))


if __name__ == "__main__":
    main()
