"""Model backends, named by a spec string.

* ``smollm2``      the packaged SmolLM2-135M-Instruct (default)
* ``hf:DIR``       any local transformers model directory, e.g. one our trainers saved
* ``scripted``     deterministic stand-in for unit tests
"""

from __future__ import annotations

from ..errors import CaiError
from .base import (Backend, ChoiceRequest, Generation, GenerationRequest, Message, Sampling,
                   chat)

DEFAULT_MODEL = "smollm2"

__all__ = ["Backend", "ChoiceRequest", "Generation", "GenerationRequest", "Message",
           "Sampling", "chat", "load_backend", "DEFAULT_MODEL"]


def load_backend(spec: str, batch_size: int = 32) -> Backend:
    if spec == "scripted":
        from .scripted import ScriptedBackend

        return ScriptedBackend()
    if spec == "smollm2" or spec.startswith("hf:"):
        from .hf import HFBackend

        return HFBackend.from_spec(spec, batch_size=batch_size)
    raise CaiError(f"model {spec!r}: unknown spec (expected smollm2, hf:DIR or scripted)")


class LazyBackend:
    """Loads the model on first use, so a stage with nothing left to do starts at once."""

    def __init__(self, spec: str, batch_size: int = 32):
        self.spec = spec
        self.batch_size = batch_size
        self._backend: Backend | None = None

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = load_backend(self.spec, batch_size=self.batch_size)
        return self._backend

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        return self.backend.generate(requests)

    def score(self, requests: list[ChoiceRequest]) -> list[dict[str, float]]:
        return self.backend.score(requests)
