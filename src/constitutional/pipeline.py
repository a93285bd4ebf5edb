"""`cai run`: the whole method from one TOML config, resumable stage by stage.

    cai run pipeline.toml --out runs/demo [--set sft.max_steps=4]
    cai status runs/demo

Stages, in order (each writes under the run folder):

    prompts   train/eval split of the prompt sets; optional red-team growth   prompts/
    critique  SL-CAI critique → revision trajectories (the policy model)       critique/
    helpful   policy answers to helpfulness prompts, mixed into SFT            helpful/
    sft-data  the SFT set and its preference view                              sft/
    sft       fine-tune the policy → the SL-CAI model                          models/sft/
    pairs     two samples per prompt from the SL-CAI model                     rlaif/pairs.jsonl
    label     AI feedback soft labels (the feedback model)                     rlaif/labels.jsonl
    pm        preference model on 80% of the labels, evaluated on the rest     models/pm/, pm-eval/
    rl        DPO from the SL-CAI model on the labels → the RL-CAI model       models/rl/
    eval      base vs SL-CAI vs RL-CAI: harm, refusals, evasiveness, Elo        eval/
    report    one self-contained HTML page                                     report.html

A stage is skipped when its marker (``.cai/stages/NAME.json``) holds the same key: a
hash of its own settings and the keys of the stages it reads. A stage killed midway
resumes: generation stages keep every batch already written (the run store skips their
ids); training stages start over. Change a setting and exactly the stages downstream
of it run again.
"""

from __future__ import annotations

import json
import os
import re
import time
import tomllib
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import StageConfig
from .critique import CritiqueConfig
from .errors import CaiError
from .evaluation.suite import EvalConfig
from .feedback import LabelConfig
from .generate import GenerateConfig, PairsConfig
from .hashing import content_hash
from .layout import RunLayout
from .records import lock_folder, now, provenance
from .redteam import RedteamConfig
from .sft_data import SFTDataConfig
from .train.config import DPOTrainConfig, PMTrainConfig, RLTrainConfig, SFTTrainConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Models(_Section):
    policy: str = Field("smollm2", description="The model being trained (it critiques itself).")
    feedback: str = Field("smollm2", description="Labels comparisons and judges harm.")
    batch_size: int = Field(32, ge=1, description="Sequences per batched model call.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where every model runs "
                                                   "(auto: a CUDA GPU if there is one).")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Number format (auto: bf16 on a GPU or a CPU with native bf16).")


class Ray(_Section):
    """Fan generation and labelling out over Ray actors (0: no Ray). Not part of any
    stage's key: the same run resumes with or without it."""
    workers: int = Field(0, ge=0, description="Ray actors, each holding the model (0: no Ray).")
    address: str = Field("", description="Empty: a local Ray instance; else e.g. ray://head:10001.")


class Prompts(StageConfig):
    """The prompt sets of a run and their train/evaluation split."""

    redteam: str = Field("bundled:redteam", description="Red-team prompts (a file or bundled:NAME).")
    helpful: str = Field("bundled:helpful", description="Helpfulness prompts.")
    borderline: str = Field("bundled:borderline", description="Benign look-alikes, for false refusals.")
    train_redteam: int = Field(64, ge=1, description="Red-team prompts for critique and RLAIF pairs.")
    train_helpful: int = Field(32, ge=0, description="Helpful prompts mixed into SFT and RLAIF.")
    eval_harmful: int = Field(24, ge=1, description="Held-out red-team prompts, never trained on.")
    eval_borderline: int = Field(24, ge=0, description="Held-out benign look-alikes.")
    eval_helpful: int = Field(24, ge=0, description="Held-out helpful prompts.")
    seed: int = Field(0, description="Seeds the split.")


class PMStage(PMTrainConfig):
    """``cai train pm``'s settings, plus the pipeline's hold-out for calibration."""

    enabled: bool = Field(True, description="Train the preference model (needed by rl.method = rloo).")
    holdout: float = Field(0.2, ge=0, lt=1, description="Share of labels held out to measure the "
                           "preference model's accuracy and calibration.")

    def training(self) -> PMTrainConfig:
        return PMTrainConfig(**self.model_dump(exclude={"enabled", "holdout"}))


class RLStage(StageConfig):
    """The RL step: DPO on the labels, or RLOO against the preference model."""

    method: Literal["dpo", "rloo", "none"] = Field("dpo", description="dpo: offline, from the "
                                                   "labelled pairs; rloo: RL against the preference "
                                                   "model; none: stop at SL-CAI.")
    dpo: DPOTrainConfig = DPOTrainConfig()
    rloo: RLTrainConfig = RLTrainConfig()


class PipelineConfig(_Section):
    name: str = "run"
    constitution: str = "default"
    models: Models = Models()
    prompts: Prompts = Prompts()
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
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for n in range(start, end):
        if pattern.match(lines[n]):
            return n + 1
    return start + 1


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
        path = Path(path)
        where = str(path)
        if not path.is_file():
            raise CaiError(f"{path}: no such file")
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
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
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


# -- the runner -----------------------------------------------------------------------

STAGES = ["prompts", "judge", "critique", "helpful", "sft-data", "sft", "pairs", "label", "pm", "rl",
          "eval", "report"]

# Which stages each stage reads, and which config sections it depends on.
UPSTREAM: dict[str, tuple[str, ...]] = {
    "prompts": (), "judge": (), "critique": ("prompts",), "helpful": ("prompts",),
    "sft-data": ("critique", "helpful"), "sft": ("sft-data",), "pairs": ("sft", "prompts"),
    "label": ("pairs",), "pm": ("label",), "rl": ("label", "sft", "pm"),
    "eval": ("prompts", "sft", "rl"),
    "report": ("eval", "pm", "label", "critique", "judge"),
}
SECTIONS: dict[str, tuple[str, ...]] = {
    "prompts": ("prompts", "redteam"), "judge": (), "critique": ("critique",), "helpful": ("helpful",),
    "sft-data": ("sft_data",), "sft": ("sft",), "pairs": ("pairs",), "label": ("label",),
    "pm": ("pm",), "rl": ("rl",), "eval": ("eval",), "report": (),
}


class Run:
    def __init__(self, config: PipelineConfig, root: str | Path):
        from . import constitution as constitution_mod

        self.config, self.root = config, Path(root)
        self.constitution = constitution_mod.load(
            None if config.constitution == "default" else config.constitution)
        self.layout = RunLayout(self.root)
        self.markers = self.layout.markers
        self.keys: dict[str, str] = {}

    @property
    def sft_spec(self) -> str:
        return f"hf:{self.layout.model('sft')}"

    @property
    def rl_spec(self) -> str | None:
        return f"hf:{self.layout.model('rl')}" if self.config.rl.method != "none" else None

    def key(self, stage: str) -> str:
        c = self.config
        own = {s: getattr(c, s).model_dump(mode="json") for s in SECTIONS[stage]}
        upstream = [u for u in UPSTREAM[stage]
                    if not (stage == "rl" and u == "pm" and c.rl.method != "rloo")]
        return content_hash([stage, own, c.models.model_dump(mode="json"),
                             self.constitution.hash, [self.keys[u] for u in upstream]])

    def marker(self, stage: str) -> dict[str, Any] | None:
        path = self.markers / f"{stage}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def _write_marker(self, stage: str, data: dict[str, Any]) -> None:
        self.markers.mkdir(parents=True, exist_ok=True)
        path = self.markers / f"{stage}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        tmp.replace(path)

    def run(self, only: list[str] | None = None, echo: Callable[[str], None] = print) -> dict[str, Any]:
        from . import stages

        bad = [s for s in only or () if s not in STAGES]
        if bad:
            raise CaiError(f"--only {bad[0]!r}: no such stage (stages: {', '.join(STAGES)})")

        from .devices import configure

        # The config's choice, unless the command line or the environment made one.
        configure(None if os.environ.get("CAI_DEVICE") else self.config.models.device,
                  None if os.environ.get("CAI_DTYPE") else self.config.models.dtype)
        self.root.mkdir(parents=True, exist_ok=True)
        lock_folder(self.root)  # one writer per run; a second `cai run` here stops at once
        self.layout.config.write_text(
            json.dumps(self.config.model_dump(mode="json"), indent=2) + "\n")
        results = {}
        for stage in STAGES:
            self.keys[stage] = self.key(stage)
            if only and stage not in only:
                continue
            m = self.marker(stage)
            if m and m.get("key") == self.keys[stage] and m.get("state") == "done":
                echo(f"[{stage}] up to date ({m.get('seconds', 0):.0f} s when run)")
                results[stage] = m
                if stage == "judge" and m.get("summary", {}).get("line"):
                    echo(f"[judge] {m['summary']['line']}")
                continue
            # Same key as an interrupted attempt: resume. A new key: replace old records.
            resume = bool(m and m.get("key") == self.keys[stage])
            echo(f"[{stage}] {'resuming' if resume else 'running'}")
            t0 = time.time()
            self._write_marker(stage, {"stage": stage, "key": self.keys[stage], "state": "running",
                                       "started_at": now()})
            summary = getattr(stages, stage.replace("-", "_"))(self, overwrite=not resume)
            marker = {"stage": stage, "key": self.keys[stage], "state": "done",
                      "started_at": m.get("started_at") if resume and m else None,
                      "finished_at": now(), "seconds": round(time.time() - t0, 1),
                      "summary": summary}
            self._write_marker(stage, marker)
            results[stage] = marker
            if stage == "judge" and summary.get("line"):
                echo(f"[judge] {summary['line']}")
        return results

    def provenance(self) -> dict[str, Any]:
        return provenance(config=self.config.model_dump(mode="json"),
                          constitution_hash=self.constitution.hash,
                          constitution=self.constitution.name,
                          models={"policy": self.config.models.policy,
                                  "feedback": self.config.models.feedback,
                                  "sl-cai": self.sft_spec, "rl-cai": self.rl_spec})


def status(root: str | Path) -> list[dict[str, Any]]:
    """Each stage's state as recorded in the run folder (no config needed)."""
    root = Path(root)
    if not root.is_dir():
        raise CaiError(f"{root}: no such run folder")
    rows = []
    for stage in STAGES:
        path = root / ".cai" / "stages" / f"{stage}.json"
        m = json.loads(path.read_text()) if path.is_file() else {}
        state = m.get("state", "pending")
        if state == "running":
            state = "incomplete"  # running now, or stopped midway (rerun cai run to resume)
        rows.append({"stage": stage, "state": state, "seconds": m.get("seconds"),
                     "records": _count(m.get("summary") or {}), "finished_at": m.get("finished_at")})
    return rows


def _count(summary: dict[str, Any]) -> Any:
    for k in ("records", "rows", "prompts", "steps"):
        if k in summary:
            return f"{summary[k]} {k}"
    return ""
