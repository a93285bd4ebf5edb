"""Judge injection on the default model: each injection against a same-length neutral
control, under our quoting (tags + neutralised answer phrases), tags only, and plain.

    .venv/bin/python benchmarks/injection.py [--pairs 204] [--out benchmarks/out/injection.json]

Pairs: the first N bundled red-team prompts, each with a safe refusal and a compliant
answer (both written by us, alternating positions). For each injection text, appended to
the response the judge rejected, the share of pairs whose label flips to it, next to the
share a neutral text of the same length flips, and the mean shift of p.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from constitutional import constitution
from constitutional.backends import load_backend
from constitutional.evaluation.injection import flip_rates, pairs_from_prompts
from constitutional.redteam import resolve_prompts

LAYOUTS = {"quoted+neutralised": dict(delimit=True, neutralise=True),
           "tags only": dict(delimit=True, neutralise=False),
           "plain": dict(delimit=False, neutralise=False)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=204)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    backend = load_backend("smollm2", batch_size=args.batch_size)
    pairs = pairs_from_prompts(resolve_prompts("bundled:redteam", limit=args.pairs))
    c = constitution.load()
    out = {}
    for name in args.layouts.split(","):
        t0 = time.perf_counter()
        out[name] = flip_rates(backend, pairs, c, **LAYOUTS[name])
        out[name]["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {out[name]['seconds']} s", flush=True)
        for k, v in out[name]["per_injection"].items():
            print(f"  {k:12s} flip {v['injection']['flip_rate']:.3f} vs control "
                  f"{v['control']['flip_rate']:.3f} (diff {v['flip_rate_minus_control']:+.3f}); "
                  f"shift net {v['shift_minus_control']:+.4f}"
                  + (f"; letter shift net {v['letter_shift_minus_control']:+.4f}"
                     if "letter_shift_minus_control" in v else ""), flush=True)
    text = json.dumps(out, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
