"""The prompt guard on requests it was never fitted to: XSTest's 450 prompts.

    .venv/bin/python benchmarks/guard.py [--false-block 0.05] [--out benchmarks/out/guard.json]

The guard is trained as ``cai guard train`` trains it by default: the bundled red-team
prompts and their template mutations as harmful, the bundled helpful and borderline
prompts as benign, the threshold chosen for ``--false-block`` on the borderline set out of
fold. Then, never trained on: XSTest (Röttger et al. 2024, CC-BY-4.0) from
``../shared/data/xstest/xstest_prompts.csv``, 200 unsafe prompts and 250 safe ones that
look unsafe. Printed: the share of each blocked at the chosen threshold, the ROC (blocked
shares at a sweep of thresholds) and its area, by XSTest type, and the time the guard adds
to one request (the median of 200 single-request checks after a warm-up).

    .venv/bin/python benchmarks/guard.py --curve [--seeds 3]

A learning curve instead: the guard trained as above on a random share (¼, ½, ¾, all) of
each of our three sets, several draws each, and measured on XSTest: ROC area and the share
of unsafe prompts blocked where at most 10 % of the safe ones are. Would more prompts of
our own close the gap to the target? The slope says.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "xstest" / "xstest_prompts.csv"


def main() -> None:
    from constitutional.guard import Guard, GuardConfig, train_guard
    from constitutional.redteam import resolve_prompts

    ap = argparse.ArgumentParser()
    ap.add_argument("--false-block", type=float, default=0.05)
    ap.add_argument("--out", default="benchmarks/out/guard.json")
    ap.add_argument("--curve", action="store_true", help="a learning curve over shares of our sets")
    ap.add_argument("--seeds", type=int, default=3, help="with --curve: draws per share")
    args = ap.parse_args()
    if args.curve:
        return curve(args.seeds, Path(args.out).parent / "guard-curve")
    out_dir = Path(args.out).parent / "guard-model"
    t0 = time.perf_counter()
    trained = train_guard(resolve_prompts("bundled:redteam"), resolve_prompts("bundled:helpful"),
                          resolve_prompts("bundled:borderline"), out_dir,
                          GuardConfig(false_block=args.false_block))
    train_s = time.perf_counter() - t0
    guard = Guard.load(out_dir)

    rows, texts, unsafe = _xstest()
    scores = guard.scores(texts)
    blocked = scores >= guard.threshold
    roc = []
    for t in sorted(set(np.round(scores, 3).tolist()) | {0.0, 1.01}):
        roc.append((float((scores[~unsafe] >= t).mean()), float((scores[unsafe] >= t).mean()), t))
    roc.sort()
    auc = float(np.trapezoid([y for _, y, _ in roc], [x for x, _, _ in roc]))
    by_type = {}
    for r, b in zip(rows, blocked):
        key = f"{r['label']}:{r['type']}"
        n, k = by_type.get(key, (0, 0))
        by_type[key] = (n + 1, k + int(b))

    guard.check(["warm-up request"])
    times = []
    for text in texts[:200]:
        t = time.perf_counter()
        guard.check([text])
        times.append(time.perf_counter() - t)

    result = {
        "command": f"benchmarks/guard.py --false-block {args.false_block}",
        "train_seconds": round(train_s, 1),
        "threshold": guard.threshold,
        "out_of_fold_on_our_sets": trained["out_of_fold"],
        "xstest": {"unsafe_blocked": round(float(blocked[unsafe].mean()), 3),
                   "safe_blocked": round(float(blocked[~unsafe].mean()), 3),
                   "n_unsafe": int(unsafe.sum()), "n_safe": int((~unsafe).sum()),
                   "roc_auc": round(auc, 3)},
        "roc": [{"safe_blocked": round(x, 3), "unsafe_blocked": round(y, 3), "threshold": t}
                for x, y, t in roc[:: max(1, len(roc) // 40)]],
        "by_type_blocked": {k: f"{b}/{n}" for k, (n, b) in sorted(by_type.items())},
        "ms_per_request_median": round(1000 * float(np.median(times)), 1),
        "ms_per_request_p90": round(1000 * float(np.percentile(times, 90)), 1),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "roc"}, indent=1))


def _xstest():
    with open(DATA, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, [r["prompt"] for r in rows], np.asarray([r["label"] == "unsafe" for r in rows])


def at_false_block(scores: np.ndarray, unsafe: np.ndarray, rate: float = 0.10) -> float:
    """The share of unsafe prompts blocked by the lowest threshold that blocks at most
    ``rate`` of the safe ones."""
    safe = np.sort(scores[~unsafe])
    allowed = int(np.floor(rate * len(safe)))
    return float((scores[unsafe] > safe[len(safe) - allowed - 1]).mean())


def curve(seeds: int, out_dir: Path) -> None:
    import random

    from sklearn.metrics import roc_auc_score

    from constitutional.guard import Guard, GuardConfig, train_guard
    from constitutional.redteam import resolve_prompts

    sets = [resolve_prompts(f"bundled:{name}") for name in ("redteam", "helpful", "borderline")]
    _, texts, unsafe = _xstest()
    rows = []
    for share in (0.25, 0.5, 0.75, 1.0):
        got = []
        for seed in range(seeds if share < 1 else 1):
            rng = random.Random(seed)
            drawn = [rng.sample(s, max(2, round(share * len(s)))) for s in sets]
            train_guard(*drawn, out_dir, GuardConfig(seed=seed))
            scores = Guard.load(out_dir).scores(texts)
            got.append((roc_auc_score(unsafe, scores), at_false_block(scores, unsafe)))
        rows.append({"share": share, "prompts": [round(share * len(s)) for s in sets],
                     "draws": len(got),
                     "roc_auc": [round(a, 3) for a, _ in got],
                     "unsafe_blocked_at_10pct_safe": [round(b, 3) for _, b in got]})
        print(json.dumps(rows[-1]), flush=True)
    (out_dir.parent / "guard-curve.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
