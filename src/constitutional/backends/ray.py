"""Ray fan-out: one backend per Ray actor, each batch split across them.

    ModelConfig(spec="smollm2", ray_workers=2).backend()            # a local Ray instance
    ModelConfig(spec="openai:…", ray_workers=8, ray_address="ray://head:10001").backend()

:class:`RayBackend` has the same two calls as every backend, so the stages do not change:
a stage hands it a batch, it splits the batch into one contiguous shard per worker, runs
them at once and returns the results in the original order. The stage then writes them
to the same run store, batch by batch, with the same resume guarantees as without Ray;
its ``spec`` is the wrapped model's, so a run started without Ray resumes with it and the
other way round. Requests that failed on a worker come back as :class:`RequestsFailed`
with the other workers' results kept.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from .base import ChoiceRequest, Generation, GenerationRequest, RequestsFailed
from ..errors import CaiError

log = logging.getLogger(__name__)


def _actor_class():
    import ray

    @ray.remote(num_cpus=1)
    class BackendActor:
        def __init__(self, factory: Callable[[Any], Any], config: Any, threads: int):
            import torch

            torch.set_num_threads(max(1, threads))
            self.backend = factory(config)

        def call(self, method: str, requests: list) -> tuple[list, dict[int, str]]:
            try:
                return getattr(self.backend, method)(requests), {}
            except RequestsFailed as e:  # pickling a custom exception loses its fields
                return e.results, e.errors

    return BackendActor


class RayBackend:
    """``config`` (a ``ModelConfig`` without Ray) is what each actor loads, with
    ``factory(config)``: the caller's loader, so this module imports no other backend."""

    def __init__(self, config: Any, workers: int, address: str | None = None,
                 threads_per_worker: int = 1, factory: Callable[[Any], Any] | None = None):
        try:
            import ray
        except ImportError:
            raise CaiError("Ray fan-out needs Ray: pip install 'constitutional[scale]'") from None
        if workers < 1:
            raise CaiError(f"ray workers must be at least 1 (got {workers})")
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": workers}
            ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING, **kwargs)
        if factory is None:
            raise CaiError("RayBackend needs the loader each actor runs (factory=)")
        self.spec, self.workers = config.spec, workers
        actor = _actor_class()
        self.actors = [actor.remote(factory, config, threads_per_worker) for _ in range(workers)]

    def _fan_out(self, method: str, requests: list) -> list:
        import ray

        if not requests:
            return []
        size = -(-len(requests) // len(self.actors))
        shards = [requests[i : i + size] for i in range(0, len(requests), size)]
        outs = ray.get([a.call.remote(method, shard) for a, shard in zip(self.actors, shards)])
        results: list = []
        errors: dict[int, str] = {}
        for k, (res, errs) in enumerate(outs):
            errors.update({k * size + i: e for i, e in errs.items()})
            results += res
        if errors:
            raise RequestsFailed(self.spec, results, errors)
        return results

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        return self._fan_out("generate", requests)

    def score(self, requests: list[ChoiceRequest]) -> list[dict[str, float]]:
        return self._fan_out("score", requests)

    def close(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors = []
