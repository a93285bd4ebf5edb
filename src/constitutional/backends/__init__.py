"""Model backends, named by a spec string.

* ``smollm2``      the packaged SmolLM2-135M-Instruct (default)
* ``hf:DIR``       any local transformers model directory, e.g. one our trainers saved
* ``openai:URL#MODEL``  an OpenAI-compatible server (vLLM, llama.cpp server, …)
* ``scripted``     deterministic stand-in for unit tests (``scripted:delay=S``: S seconds
                   per request, so tests can interrupt a stage part-way)

``load_backend(spec, ray_workers=N)`` spreads each batch over N Ray actors (see ``scale``).
"""

from __future__ import annotations

from ..errors import CaiError
from .base import (Backend, ChoiceRequest, Generation, GenerationRequest, Message, Sampling,
                   chat)

DEFAULT_MODEL = "smollm2"

__all__ = ["Backend", "ChoiceRequest", "Generation", "GenerationRequest", "Message",
           "Sampling", "chat", "load_backend", "DEFAULT_MODEL"]


def load_backend(spec: str, batch_size: int = 32, ray_workers: int = 0,
                 ray_address: str | None = None) -> Backend:
    if ray_workers:
        from .ray import RayBackend

        return RayBackend(spec, ray_workers, batch_size=batch_size, address=ray_address)
    if spec.startswith("openai:"):
        from .openai_server import OpenAIBackend

        return OpenAIBackend.from_spec(spec, batch_size=batch_size)
    if spec == "scripted" or spec.startswith("scripted:"):
        from .scripted import PREFERENCES, ScriptedBackend

        key, _, value = spec.partition(":")[2].partition("=")
        if spec == "scripted":
            return ScriptedBackend(spec=spec)
        if key == "delay":
            try:
                return ScriptedBackend(spec=spec, delay=float(value))
            except ValueError:
                pass
        if key == "prefer" and value in PREFERENCES:
            return ScriptedBackend(spec=spec, scores=PREFERENCES[value])
        raise CaiError(f"model {spec!r}: expected scripted, scripted:delay=SECONDS or "
                       f"scripted:prefer={'|'.join(PREFERENCES)}")
    if spec == "smollm2" or spec.startswith("hf:"):
        from .hf import HFBackend

        return HFBackend.from_spec(spec, batch_size=batch_size)
    raise CaiError(f"model {spec!r}: unknown spec (expected smollm2, hf:DIR, "
                   "openai:URL#MODEL or scripted)")


class LazyBackend:
    """Loads the model on first use, so a stage with nothing left to do starts at once."""

    def __init__(self, spec: str, batch_size: int = 32, ray_workers: int = 0,
                 ray_address: str | None = None):
        self.spec = spec
        self.batch_size = batch_size
        self.ray = (ray_workers, ray_address)
        self._backend: Backend | None = None

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = load_backend(self.spec, batch_size=self.batch_size,
                                         ray_workers=self.ray[0], ray_address=self.ray[1])
        return self._backend

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        return self.backend.generate(requests)

    def score(self, requests: list[ChoiceRequest]) -> list[dict[str, float]]:
        return self.backend.score(requests)
