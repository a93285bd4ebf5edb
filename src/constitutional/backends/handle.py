"""One handle per model: what to load, how, and one loaded copy per process.

    policy = ModelConfig(spec="smollm2", batch_size=32)          # device/dtype: the user's default
    policy.backend().generate([...])                               # loads on first use, then cached
    policy.using("hf:runs/x/models/sft").backend()                 # same settings, another model
    policy.model_dir()                                             # a trainer's starting point

A :class:`ModelConfig` carries every setting that decides how a model runs (spec, batch
size, device, number format, engine, Ray workers and address). A local model (``smollm2``,
``hf:DIR``) generates and scores on vLLM (``backends/vllm_engine.py``) or on our own
transformers loop (``backends/hf.py``): ``engine`` picks, ``auto`` taking vLLM where it is
installed and supports the model. :func:`open_backend` keeps one
loaded backend per distinct config in this process, so the judge of an evaluation and the
policy of consecutive generation stages load once; :func:`release` frees them (the runner
does so before a training stage). Each real load is logged in :data:`LOADS`, which the
runner writes into the stage's marker.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .. import devices
from ..errors import CaiError
from .base import Backend, ChoiceRequest, Generation, GenerationRequest
from .spec import DEFAULT_MODEL, Spec, parse_spec

log = logging.getLogger(__name__)


class ModelConfig(BaseModel):
    """Everything that decides how one model runs. Frozen: it is the cache key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    spec: str = DEFAULT_MODEL
    batch_size: int = Field(32, ge=1)
    device: str = Field(default_factory=lambda: devices.default("device"))
    dtype: str = Field(default_factory=lambda: devices.default("dtype"))
    engine: str = Field(default_factory=lambda: devices.default("engine"))  # auto, hf, vllm
    ray_workers: int = Field(0, ge=0)
    ray_address: str | None = None

    @field_validator("spec")
    @classmethod
    def _known_form(cls, spec: str) -> str:
        parse_spec(spec)  # a CaiError naming the spec and the forms it may take
        return spec

    @property
    def parsed(self) -> Spec:
        return parse_spec(self.spec)

    def using(self, spec: str | Path | Spec, *, exists: bool = False, **changes: Any) -> "ModelConfig":
        """The same settings for another model. The spec is checked now (its form; with
        ``exists``, that an ``hf:DIR`` holds a model), not at the first load."""
        parsed = parse_spec(spec.text if isinstance(spec, Spec) else str(spec))
        if exists:
            parsed.check()
        return self.model_copy(update={"spec": parsed.text, **changes})  # model_copy does not validate

    def named(self, specs: list[str]) -> dict[str, "ModelConfig"]:
        """``NAME=SPEC`` (or a bare spec, named after itself) → that model, with these
        settings; every spec checked before any model runs."""
        out = {}
        for s in specs:
            name, _, spec = s.partition("=") if "=" in s and not s.startswith("hf:") else (s, "", s)
            out[name] = self.using(spec, exists=True)
        return out

    def backend(self) -> "LazyBackend":
        """This model's backend: loaded on first use, shared with every other user of the
        same config in this process."""
        return LazyBackend(self)

    def load(self) -> Backend:
        """A fresh backend, not cached (tests and benchmarks that want their own)."""
        return _load(self)

    def model_dir(self) -> Path:
        """The transformers directory of an ``hf`` model (a trainer's starting point)."""
        from .hf import resolve_model_dir

        return resolve_model_dir(self.parsed)


LOADS: list[dict[str, Any]] = []  # every real load in this process: spec, engine, seconds
_CACHE: dict[tuple, Backend] = {}  # in order of last use
# Loaded models kept at once: a stage uses at most three (the evaluation's models answer
# one after the other, then the judge rates them). Models on Ray workers hold the workers'
# CPUs, so one such model is kept at a time.
MAX_LOADED = 3


def _fingerprint(config: ModelConfig) -> tuple:
    """A model directory rewritten by a trainer is a new model: its files' times join the key."""
    spec = config.parsed
    if spec.kind == "hf" and spec.path is not None:
        stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(spec.path.glob("*.json"))
                      if p.is_file())
        return (config, stamp)
    return (config,)


def open_backend(config: ModelConfig) -> Backend:
    """The loaded backend for ``config``, loading it the first time it is asked for."""
    key = _fingerprint(config)
    if key in _CACHE:
        _CACHE[key] = _CACHE.pop(key)  # most recently used last
        return _CACHE[key]
    old = [k for k in _CACHE if config.ray_workers and k[0].ray_workers]
    old += list(_CACHE)[: max(0, len(_CACHE) - MAX_LOADED + 1)]
    for k in dict.fromkeys(old):
        _close(_CACHE.pop(k))
    _CACHE[key] = _load(config)
    return _CACHE[key]


def release(config: ModelConfig | None = None, *, engines: bool = True) -> None:
    """Forget a loaded model (None: all of them), stopping its Ray workers. With
    ``engines=False`` (the runner, before a training stage) vLLM engines stay: each holds a
    process of its own, not this one's memory, and starting one again costs 15–100 s."""
    for key in [k for k in _CACHE if config is None or k[0] == config]:
        if engines or not getattr(_CACHE[key], "own_process", False):
            _close(_CACHE.pop(key))


def _close(backend: Backend) -> None:
    close = getattr(backend, "close", None)
    if close:
        close()


def _load(config: ModelConfig) -> Backend:
    spec = config.parsed
    t0 = time.time()
    backend: Backend
    if config.ray_workers:
        from .ray import RayBackend

        backend = RayBackend(config.model_copy(update={"ray_workers": 0}), config.ray_workers,
                             address=config.ray_address, factory=_load)
        engine = f"ray×{config.ray_workers}/{engine_for(config)}"
    elif spec.kind == "openai":
        from .openai_server import OpenAIBackend

        backend = OpenAIBackend(spec.url, spec.model, spec.template, spec=spec.text,
                                concurrency=min(config.batch_size, 32))
        engine = "openai"
    elif spec.kind == "scripted":
        from .scripted import PREFERENCES, ScriptedBackend

        key, value = spec.option or ("", "")
        if key == "delay":
            backend = ScriptedBackend(spec=spec.text, delay=float(value))
        elif key == "prefer":
            backend = ScriptedBackend(spec=spec.text, scores=PREFERENCES[value])
        else:
            backend = ScriptedBackend(spec=spec.text)
        engine = "scripted"
    elif spec.kind == "hf" and engine_for(config) == "vllm":
        from .vllm_engine import VLLMBackend

        backend = VLLMBackend(config.model_dir(), spec.text, dtype=config.dtype,
                              device=config.device, batch_size=config.batch_size)
        engine = "vllm"
    elif spec.kind == "hf":
        from .hf import HFBackend

        backend = HFBackend.from_spec(spec, batch_size=config.batch_size, device=config.device,
                                      dtype=config.dtype)
        engine = "hf"
    else:  # pragma: no cover - parse_spec admits no other kind
        raise CaiError(f"model {spec.text!r}: no backend for kind {spec.kind!r}")
    LOADS.append({"spec": spec.text, "engine": engine, "seconds": round(time.time() - t0, 2)})
    log.info("loaded %s (%s) in %.1f s", spec.text, engine, time.time() - t0)
    return backend


def engine_for(config: ModelConfig) -> str:
    """The engine ``config`` loads on: ``hf``, ``vllm``, or the spec's kind (``openai``,
    ``scripted``). ``auto`` is vLLM where it is installed and supports the model; an
    explicit ``vllm`` that cannot load the model is an error that says why."""
    spec = config.parsed
    if spec.kind != "hf":
        return spec.kind
    devices.check(engine=config.engine)
    if config.engine == "hf":
        return "hf"
    from .vllm_engine import unsupported

    why = unsupported(config.model_dir(), config.device)
    if why is None:
        return "vllm"
    if config.engine == "vllm":
        raise CaiError(f"model {spec.text!r}: --engine vllm cannot load it: {why}")
    return "hf"


class LazyBackend:
    """A backend that loads on first use, so a stage with nothing left to do starts at once."""

    def __init__(self, config: ModelConfig):
        self.config = config
        self.spec = config.spec

    @property
    def backend(self) -> Backend:
        return open_backend(self.config)

    def generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        return self.backend.generate(requests)

    def score(self, requests: list[ChoiceRequest]) -> list[dict[str, float]]:
        return self.backend.score(requests)


def load_backend(spec: str, batch_size: int = 32, ray_workers: int = 0,
                 ray_address: str | None = None) -> Backend:
    """A fresh backend for ``spec`` with the user's default device and dtype."""
    return ModelConfig(spec=spec, batch_size=batch_size, ray_workers=ray_workers,
                       ray_address=ray_address).load()
