"""A run's config: one TOML file whose sections are the stages' own configs.

    config = load_config("pipeline.toml", ["sft.max_steps=4"])   # file, then --set overrides
    config.critique.rounds, config.models.policy

Each section is the config model its stage's module declares (``CritiqueConfig`` in
``critique.py``, …), so ``cai run`` and the single-stage commands share every default.
A bad file is one line naming the file, the line and the field.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .backends.spec import DEFAULT_MODEL, parse_spec
from .config import did_you_mean, key_line
from .critique import CritiqueConfig
from .errors import CaiError, input_file
from .evaluation.suite import EvalConfig
from .feedback import LabelConfig
from .generate import GenerateConfig, PairsConfig
from .prompts import PromptsConfig
from .redteam import RedteamConfig
from .sft_data import SFTDataConfig
from .train.config import PMStage, RLStage, SFTTrainConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Models(_Section):
    policy: str = Field(DEFAULT_MODEL, description="The model being trained (it critiques itself).")
    feedback: str = Field(DEFAULT_MODEL, description="Labels comparisons and judges harm.")
    batch_size: int = Field(32, ge=1, description="Sequences per batched model call.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where every model runs "
                                                   "(auto: a CUDA GPU if there is one).")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Number format (auto: bf16 on a GPU or a CPU with native bf16).")
    engine: Literal["auto", "hf", "vllm"] = Field(
        "auto", description="What generates and scores: vllm, hf (our transformers loop), or "
        "auto (vLLM where it is installed and supports the model, else hf). Trainers always "
        "use transformers. Not part of any stage's key: a run resumes under another engine.")

    @field_validator("policy", "feedback")
    @classmethod
    def _a_model_spec(cls, spec: str) -> str:
        try:  # its form now, with the file's line; an hf:DIR is looked for when it loads
            parse_spec(spec)
        except CaiError as e:
            raise ValueError(str(e).removeprefix("model ")) from None
        return spec


class Ray(_Section):
    """Fan generation and labelling out over Ray actors (0: no Ray). Not part of any
    stage's key: the same run resumes with or without it."""
    workers: int = Field(0, ge=0, description="Ray actors, each holding the model (0: no Ray).")
    address: str = Field("", description="Empty: a local Ray instance; else e.g. ray://head:10001.")


class PipelineConfig(_Section):
    name: str = "run"
    constitution: str = "default"
    models: Models = Models()
    prompts: PromptsConfig = PromptsConfig()
    redteam: RedteamConfig = RedteamConfig()
    critique: CritiqueConfig = CritiqueConfig()
    helpful: GenerateConfig = GenerateConfig()
    sft_data: SFTDataConfig = SFTDataConfig()
    sft: SFTTrainConfig = SFTTrainConfig()
    pairs: PairsConfig = PairsConfig()
    label: LabelConfig = LabelConfig()
    pm: PMStage = PMStage()
    rl: RLStage = RLStage()
    eval: EvalConfig = EvalConfig()
    ray: Ray = Ray()


# -- loading --------------------------------------------------------------------------

def _line_of(text: str, loc: tuple[Any, ...]) -> int:
    """The line of ``[section]`` / ``key =`` a validation error points at."""
    lines = text.splitlines()
    start, end = 0, len(lines)
    dotted = ".".join(map(str, loc))
    table = re.compile(rf"^\s*\[+\s*{re.escape(dotted)}\s*[\].]")  # [a.b], [a.b.c], [[a.b]]
    found = next((n for n, line in enumerate(lines) if table.match(line)), None)
    if found is not None:  # the error is about a whole table
        return found + 1
    if len(loc) >= 2:
        section = ".".join(map(str, loc[:-1]))
        header = re.compile(rf"^\s*\[\s*{re.escape(section)}\s*\]")
        for n, line in enumerate(lines):
            if header.match(line):
                start = n
                end = next((m for m in range(n + 1, len(lines))
                            if lines[m].lstrip().startswith("[")), len(lines))
                break
        else:
            return 1
        key = str(loc[-1])
    else:
        key = str(loc[0]) if loc else ""
        end = next((m for m, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
    return key_line(lines, start, end, key)


def _apply_override(raw: dict[str, Any], assignment: str) -> None:
    if "=" not in assignment:
        raise CaiError(f"--set {assignment!r}: expected key=value, e.g. sft.max_steps=4")
    key, value = assignment.split("=", 1)
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value  # a bare word is a string: --set models.policy=hf:runs/x
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise CaiError(f"--set {assignment!r}: {part!r} is not a section")
    node[parts[-1]] = parsed


def load_config(path: str | Path | None, overrides: list[str] = ()) -> PipelineConfig:
    """A pipeline TOML (``None``: all defaults), then ``key=value`` overrides on top."""
    text, raw, where = "", {}, "config"
    if path is not None:
        path = input_file(path)
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
            raw = tomllib.loads(text)
        except UnicodeDecodeError:
            raise CaiError(f"{path}: not UTF-8 text") from None
        except tomllib.TOMLDecodeError as e:
            raise CaiError(f"{path}: TOML syntax error: {e}") from None
        if not raw:
            # Most likely a mistake (a truncated or wrong file); an empty config would
            # silently start the full default pipeline.
            raise CaiError(f"{path}: the config sets nothing (empty, or comments only); "
                           "give at least `name = \"...\"`")
    for o in overrides:
        _apply_override(raw, o)
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(map(str, err["loc"]))
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg += did_you_mean(PipelineConfig, err["loc"])
        # the last --set of this key (or of a table above it) put the value there
        def covers(o: str) -> bool:
            a, b = f"{field}.", o.split("=", 1)[0].strip() + "."
            return a.startswith(b) or b.startswith(a)

        setter = next((o for o in reversed(overrides) if covers(o)), None)
        if setter is not None:
            raise CaiError(f"--set {setter}: field {field!r}: {msg}") from None
        return_line = _line_of(text, err["loc"]) if text else None
        at = f"{where}:{return_line}" if return_line else where
        raise CaiError(f"{at}: field {field!r}: {msg}") from None


def resolve_config(name_or_path: str) -> Path:
    """A config file, or the name of a packaged one (``demo``)."""
    path = Path(name_or_path)
    if not path.exists() and "/" not in name_or_path and not name_or_path.endswith(".toml"):
        return packaged_config(name_or_path)
    return path


def packaged_config(name: str) -> Path:
    from .prompts import packaged

    path = packaged(f"pipelines/{name}.toml")
    if not path.is_file():
        raise CaiError(f"no packaged pipeline {name!r}")
    return path
