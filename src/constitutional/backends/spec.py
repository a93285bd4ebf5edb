"""A model spec string, parsed in this one place.

* ``smollm2``             the packaged SmolLM2-135M-Instruct (``DEFAULT_MODEL``)
* ``hf:DIR``              a local transformers model directory, e.g. one our trainers saved
* ``openai:URL#MODEL``    an OpenAI-compatible server (``#MODEL@TEMPLATE``: render chats
                          with that model directory's template for raw completions)
* ``scripted``            the deterministic stand-in of the unit tests;
                          ``scripted:delay=S`` (S seconds per request) or
                          ``scripted:prefer=NAME`` (a scripted judge with a preference)

Every other module takes a :class:`Spec` (or a :class:`~.handle.ModelConfig`), never the
string, so a new kind of model is added here and in ``handle.open_backend`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import CaiError

DEFAULT_MODEL = "smollm2"

Kind = Literal["hf", "openai", "scripted"]


@dataclass(frozen=True)
class Spec:
    text: str  # as the user wrote it; recorded in every manifest
    kind: Kind
    path: Path | None = None  # hf: the directory (None: the packaged default model)
    url: str = ""  # openai
    model: str = ""  # openai: the served model's name
    template: str | None = None  # openai: whose chat template renders raw completions
    option: tuple[str, str] | None = None  # scripted: (key, value)

    @property
    def packaged(self) -> bool:
        return self.kind == "hf" and self.path is None

    def check(self) -> "Spec":
        """Fail now, naming the folder, if an ``hf:DIR`` holds no model (before a command
        opens its output folder, not at the first load)."""
        if self.kind == "hf" and self.path is not None and not any(
                (self.path / f).exists() for f in ("config.json", "adapter_config.json")):
            raise CaiError(f"model {self.text!r}: {self.path} is not a model directory "
                           "(no config.json)")
        return self

    def __str__(self) -> str:
        return self.text


def parse_spec(spec: "str | Spec") -> Spec:
    """The parsed spec; a :class:`CaiError` naming the spec and the forms it may take."""
    if isinstance(spec, Spec):
        return spec
    text = str(spec)
    if text == DEFAULT_MODEL:
        return Spec(text, "hf")
    if text.startswith("hf:"):
        if not text[3:]:
            raise CaiError(f"model {text!r}: expected hf:DIR, a model directory")
        return Spec(text, "hf", path=Path(text[3:]).expanduser())
    if text.startswith("openai:"):
        body = text[len("openai:"):]
        if "#" not in body:
            raise CaiError(f"model {text!r}: expected openai:URL#MODEL, e.g. "
                           "openai:http://127.0.0.1:8000/v1#smollm2")
        url, model = body.rsplit("#", 1)
        template = None
        if "@" in model:
            model, template = model.split("@", 1)
        if not url.startswith(("http://", "https://")) or not model:
            raise CaiError(f"model {text!r}: the URL must start with http:// or https:// and "
                           "a model name must follow '#'")
        return Spec(text, "openai", url=url.rstrip("/"), model=model, template=template)
    if text == "scripted":
        return Spec(text, "scripted")
    if text.startswith("scripted:"):
        from .scripted import PREFERENCES

        key, _, value = text.partition(":")[2].partition("=")
        ok = key == "prefer" and value in PREFERENCES
        if key == "delay":
            try:
                ok = float(value) >= 0
            except ValueError:
                ok = False
        if not ok:
            raise CaiError(f"model {text!r}: expected scripted, scripted:delay=SECONDS or "
                           f"scripted:prefer={'|'.join(PREFERENCES)}")
        return Spec(text, "scripted", option=(key, value))
    raise CaiError(f"model {text!r}: unknown spec (expected {DEFAULT_MODEL}, hf:DIR, "
                   "openai:URL#MODEL or scripted)")


def hf_spec(path: str | Path) -> Spec:
    """The spec of a model directory (what a trainer saved)."""
    return Spec(f"hf:{path}", "hf", path=Path(path))
