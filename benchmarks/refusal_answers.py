"""Answers of our own models to the bundled prompts, for people to label: the source of
``src/constitutional/data/refusal_ours.jsonl`` (issue 27).

    .venv/bin/python benchmarks/refusal_answers.py runs/demo [--out benchmarks/out/refusal_answers.jsonl]

The packaged model (base) and a demo run's SL-CAI and RL-CAI models each answer a
different third of the bundled red-team, borderline and helpful prompts (50, 30 and 20
per model), greedy, 64 new tokens: what the run's evaluation sees. The base model also
answers 60 further red-team prompts sampled at temperature 0.9, for phrasings greedy
decoding never shows. Each row keeps the model, the prompt set, the prompt and the answer;
the label is added by a person (see the labelled file's README section). The prompt
sets are the project's own; nothing is read from outside the repository.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from constitutional.backends import load_backend
from constitutional.backends.base import GenerationRequest, Sampling, chat
from constitutional.hashing import content_hash
from constitutional.prompts import load_prompts, packaged

PER_MODEL = {"redteam": 50, "borderline": 30, "helpful": 20}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/refusal_answers.jsonl"))
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--models", default="base,sl-cai,rl-cai",
                    help="which models to run now; rows already in --out are kept")
    args = ap.parse_args()
    sets = {name: [p.text for p in load_prompts(packaged(f"{name}_prompts.jsonl"))]
            for name in PER_MODEL}
    models = {"base": "smollm2", "sl-cai": f"hf:{args.run / 'models' / 'sft'}",
              "rl-cai": f"hf:{args.run / 'models' / 'rl'}"}
    jobs: list[tuple[str, str, str, float]] = []   # model, set, prompt, temperature
    for m, name in enumerate(models):
        for set_name, n in PER_MODEL.items():
            jobs += [(name, set_name, p, 0.0) for p in sets[set_name][m::3][:n]]
    greedy_redteam = {p for _, s, p, _ in jobs if s == "redteam"}
    jobs += [("base", "redteam", p, 0.9)
             for p in [p for p in sets["redteam"] if p not in greedy_redteam][:60]]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = ({json.loads(line)["model"] for line in args.out.open(encoding="utf-8")}
            if args.out.exists() else set())
    rows = []
    for name, spec in models.items():
        if name not in args.models.split(",") or name in done:
            continue
        mine = [j for j in jobs if j[0] == name]
        backend = load_backend(spec, batch_size=64)
        gens = backend.generate([GenerationRequest(
            messages=chat(p), sampling=Sampling(max_new_tokens=args.max_new_tokens,
                                                temperature=t, seed=17))
            for _, _, p, t in mine])
        for (_, set_name, p, t), g in zip(mine, gens):
            rows.append({"id": content_hash([name, set_name, p, t])[:12], "model": name,
                         "set": set_name, "temperature": t, "prompt": p, "response": g.texts[0]})
    with args.out.open("a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(rows)} answers → {args.out}")


if __name__ == "__main__":
    main()
