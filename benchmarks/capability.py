"""Capability scoring on the two engines, side by side in one run: ARC-Easy through
lm-evaluation-harness with our transformers loop (hf) and with vLLM, alternating
hf, vllm, hf, vllm, and how closely their per-question results agree.

    .venv/bin/python benchmarks/capability.py [--limit 200] [--repeats 2]
                                              [--out benchmarks/out/capability.json]

The packaged SmolLM2-135M-Instruct, the default dtype (bf16 on a CPU with native bf16),
32 questions per call. Each engine loads once (timed apart); each repeat scores the first
N questions afresh, in a new folder, so nothing is read back from an earlier repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

ARC = Path(__file__).resolve().parents[2] / "shared" / "data" / "arc" / "ARC-Easy-test.jsonl"


def main() -> None:
    from constitutional.backends import ModelConfig
    from constitutional.evaluation.capability import CapabilityConfig, evaluate_capability
    from constitutional.evaluation.metrics import mcnemar
    from constitutional.progress import quiet_libraries

    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/out/capability.json")
    args = ap.parse_args()
    quiet_libraries()
    config = CapabilityConfig(arc_file=str(ARC), limit=args.limit)
    engines = {e: ModelConfig(engine=e).load() for e in ("hf", "vllm")}  # warm-up below
    load = {}
    for name in engines:  # a first tiny pass: the engine's lazy start-up, timed apart
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            evaluate_capability({name: engines[name]}, tmp, config.model_copy(update={"limit": 2}))
        load[name] = round(time.perf_counter() - t0, 2)
    seconds: dict[str, list[float]] = {e: [] for e in engines}
    rows: dict[str, list[dict]] = {}
    for _ in range(args.repeats):
        for name, backend in engines.items():
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                evaluate_capability({name: backend}, tmp, config)
                seconds[name].append(round(time.perf_counter() - t0, 2))
                rows[name] = [json.loads(x) for x in (Path(tmp) / f"{name}.jsonl").read_text().splitlines()]
    hf, vl = rows["hf"], rows["vllm"]
    diffs = [abs(a - b) for x, y in zip(hf, vl) for a, b in zip(x["loglikelihoods"], y["loglikelihoods"])]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "command": f"benchmarks/capability.py --limit {args.limit} --repeats {args.repeats}",
        "questions": args.limit, "first_pass_seconds": load, "seconds": seconds,
        "ratio_vllm_over_hf": [round(v / h, 2) for h, v in zip(seconds["hf"], seconds["vllm"])],
        "acc": {e: sum(r["acc"] for r in rows[e]) / len(rows[e]) for e in rows},
        "same_pick": sum(x["pred"] == y["pred"] for x, y in zip(hf, vl)),
        "loglikelihood_diff": {"mean": sum(diffs) / len(diffs), "max": max(diffs)},
        "mcnemar_hf_vs_vllm": mcnemar([r["acc"] for r in hf], [r["acc"] for r in vl]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    for backend in engines.values():
        getattr(backend, "close", lambda: None)()


if __name__ == "__main__":  # vLLM's engine starts worker processes by spawning
    main()
