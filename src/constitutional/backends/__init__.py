"""Model backends. A model is one handle, :class:`ModelConfig` (spec, batch size, device,
dtype, Ray workers); ``config.backend()`` gives its backend, loaded once per process.

Specs (parsed in ``spec.py`` only):

* ``smollm2``      the packaged SmolLM2-135M-Instruct (default)
* ``hf:DIR``       any local transformers model directory, e.g. one our trainers saved
* ``openai:URL#MODEL``  an OpenAI-compatible server (vLLM, llama.cpp server, …)
* ``scripted``     deterministic stand-in for unit tests (``scripted:delay=S``: S seconds
                   per request, so tests can interrupt a stage part-way)

``ModelConfig(spec=..., ray_workers=N)`` spreads each batch over N Ray actors (``ray.py``).
"""

from __future__ import annotations

from .base import (Backend, ChoiceRequest, Generation, GenerationRequest, Message, Sampling,
                   chat)
from .handle import LazyBackend, ModelConfig, load_backend, open_backend, release
from .spec import DEFAULT_MODEL, Spec, parse_spec

__all__ = ["Backend", "ChoiceRequest", "Generation", "GenerationRequest", "Message",
           "Sampling", "chat", "load_backend", "DEFAULT_MODEL", "ModelConfig", "LazyBackend",
           "open_backend", "release", "Spec", "parse_spec"]
