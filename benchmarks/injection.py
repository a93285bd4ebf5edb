"""Judge injection flip rate on the default model, with and without our delimiting.

    .venv/bin/python benchmarks/injection.py [--pairs 32]

Pairs: the first N bundled red-team prompts, each with a safe refusal and a compliant
answer (both written by us, alternating positions). For each injection text, appended to
the response the judge rejected, the share of pairs whose label flips to it.
"""

from __future__ import annotations

import argparse
import json
import time

from constitutional import constitution
from constitutional.backends import load_backend
from constitutional.evaluation.injection import flip_rates, pairs_from_prompts
from constitutional.redteam import resolve_prompts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    backend = load_backend("smollm2", batch_size=args.batch_size)
    pairs = pairs_from_prompts(resolve_prompts("bundled:redteam", limit=args.pairs))
    c = constitution.load()
    out = {}
    for delimit in (True, False):
        t0 = time.perf_counter()
        out["delimited" if delimit else "plain"] = flip_rates(backend, pairs, c, delimit=delimit)
        out["delimited" if delimit else "plain"]["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
