"""Scale-out throughput on this machine.

    .venv/bin/python benchmarks/scale.py server URL [--requests 32]   # concurrency sweep
    .venv/bin/python benchmarks/scale.py ray [--prompts 32]           # Ray 1 vs 2 workers

``server``: the openai: backend against an OpenAI-compatible server (e.g. llama-cpp-python's
serving the packaged GGUF), the same greedy requests at concurrency 1, 2, 4, 8: requests/s
and generated tokens/s. ``ray``: the packaged model through RayBackend with 1 and 2 workers
(1 torch thread each) and without Ray (2 threads), same prompts, greedy.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from constitutional.backends import load_backend
from constitutional.backends.base import GenerationRequest, Sampling
from constitutional.redteam import resolve_prompts


def requests(n: int, tokens: int) -> list[GenerationRequest]:
    prompts = resolve_prompts("bundled:helpful", limit=n)
    return [GenerationRequest(messages=p.messages, sampling=Sampling(max_new_tokens=tokens, temperature=0))
            for p in prompts]


def timed(backend, reqs) -> dict[str, float]:
    t0 = time.perf_counter()
    gens = backend.generate(reqs)
    s = time.perf_counter() - t0
    toks = sum(sum(g.tokens) for g in gens)
    return {"seconds": round(s, 2), "requests_per_s": round(len(reqs) / s, 3),
            "tokens_per_s": round(toks / s, 1), "tokens": toks}


def server(url: str, n: int, tokens: int) -> dict:
    from constitutional.backends.openai_server import OpenAIBackend

    reqs = requests(n, tokens)
    out = {}
    OpenAIBackend(url, "smollm2", concurrency=1).generate(reqs[:2])  # warm-up
    for c in (1, 2, 4, 8):
        out[f"concurrency_{c}"] = timed(OpenAIBackend(url, "smollm2", concurrency=c), reqs)
    return out


def ray_bench(n: int, tokens: int, batch: int) -> dict:
    import ray

    reqs = requests(n, tokens)
    out = {"no_ray_2_threads": timed(load_backend("smollm2", batch_size=batch), reqs)}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    for w in (1, 2):
        b = load_backend("smollm2", batch_size=batch, ray_workers=w)
        b.generate(reqs[:w])  # load the model in every actor first
        out[f"ray_{w}_workers"] = timed(b, reqs)
        b.close()
    ray.shutdown()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("server")
    s.add_argument("url")
    s.add_argument("--requests", type=int, default=32)
    s.add_argument("--tokens", type=int, default=48)
    r = sub.add_parser("ray")
    r.add_argument("--prompts", type=int, default=32)
    r.add_argument("--tokens", type=int, default=48)
    r.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    res = server(args.url, args.requests, args.tokens) if args.what == "server" \
        else ray_bench(args.prompts, args.tokens, args.batch_size)
    print(json.dumps({**res, "settings": vars(args), "machine": platform.machine()}, indent=2))


if __name__ == "__main__":
    main()
