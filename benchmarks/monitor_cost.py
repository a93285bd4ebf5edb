"""What the over-training monitor costs an RLOO step, measured inside the run.

    .venv/bin/python benchmarks/monitor_cost.py --pm DIR [--steps 10] [--out benchmarks/out/monitor-cost]

RLOO from the packaged model against a trained preference model (``--pm``: a folder from
``cai train pm``, e.g. the one ``benchmarks/label_following.py`` trains), with the
label-following run's settings (lr 5e-5, 8 completions a step, k = 4, β = 0.05, 64 tokens)
and the monitor as ``cai train rloo`` runs it (the batch figures, the refusal classifier,
and the completions' NLL under the starting model). The trainer times every call of the
monitor; printed: the monitor's seconds, the training's seconds and the share.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    from constitutional.redteam import resolve_prompts
    from constitutional.train.config import RLTrainConfig
    from constitutional.train.rl import build_prompts, train_rl

    ap = argparse.ArgumentParser()
    ap.add_argument("--pm", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", default="benchmarks/out/monitor-cost")
    args = ap.parse_args()
    prompts = build_prompts(resolve_prompts("bundled:redteam")[:64],
                            resolve_prompts("bundled:helpful")[:64], 1.0, 0)
    config = RLTrainConfig(learning_rate=5e-5, max_steps=args.steps, batch_size=8,
                           num_generations=4, beta=0.05, max_completion_length=64)
    m = train_rl(prompts, Path(args.out), "smollm2", config, pm=args.pm)
    cost = m["monitor_cost"]
    per_batch = [round(h["monitor_s"], 2) for h in m["monitor"]]
    print(json.dumps({"steps": m["steps"], **cost, "monitor_s_per_batch": per_batch}))
    print(f"the monitor took {cost['monitor_s']:.1f} s of {cost['train_s']:.1f} s of training "
          f"({100 * cost['share']:.1f} %) over {m['steps']} steps")


if __name__ == "__main__":
    main()
