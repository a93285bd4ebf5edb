"""A run folder, declared once: where `cai run` writes each stage's files, and nothing
else. The stages write through ``RunLayout``, the report and the audit
read through it, so renaming a file is one edit here, not a silently missing section.

    run = RunLayout("runs/demo")
    run.labels          # runs/demo/rlaif/labels.jsonl
    run.prompt_set("eval_harmful")

The shapes of the records in those files are declared in ``records.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# -- the files --------------------------------------------------------------------------

# What an evaluation folder holds (``cai eval …`` and the pipeline's eval/ alike).
METRICS = "metrics.json"
VERDICTS = "verdicts.jsonl"
BY_ROUND = "by_round.json"


@dataclass(frozen=True)
class RunLayout:
    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    # inputs and provenance
    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def provenance(self) -> Path:
        return self.root / "provenance.json"

    @property
    def markers(self) -> Path:
        return self.root / ".cai" / "stages"

    @property
    def prompts(self) -> Path:
        return self.root / "prompts"

    def prompt_set(self, name: str) -> Path:
        return self.prompts / f"{name}.jsonl"

    @property
    def grown(self) -> Path:
        return self.prompts / "grown"

    # SL-CAI
    @property
    def critique_dir(self) -> Path:
        return self.root / "critique"

    @property
    def critique(self) -> Path:
        return self.critique_dir / "critique.jsonl"

    @property
    def helpful_dir(self) -> Path:
        return self.root / "helpful"

    @property
    def helpful(self) -> Path:
        return self.helpful_dir / "generate.jsonl"

    @property
    def sft_dir(self) -> Path:
        return self.root / "sft"

    @property
    def sft(self) -> Path:
        return self.sft_dir / "sft.jsonl"

    # RLAIF
    @property
    def rlaif(self) -> Path:
        return self.root / "rlaif"

    @property
    def pairs(self) -> Path:
        return self.rlaif / "pairs.jsonl"

    @property
    def labels(self) -> Path:
        return self.rlaif / "labels.jsonl"

    @property
    def labels_manifest(self) -> Path:
        return self.rlaif / "labels.manifest.json"

    def model(self, name: Literal["sft", "pm", "rl"]) -> Path:
        return self.root / "models" / name

    def training_manifest(self, name: Literal["sft", "pm", "rl"]) -> Path:
        return self.model(name) / "cai_training.json"

    @property
    def pm_eval(self) -> Path:
        return self.root / "pm-eval"

    @property
    def pm_train(self) -> Path:
        return self.pm_eval / "train.jsonl"

    @property
    def pm_metrics(self) -> Path:
        return self.pm_eval / "eval_pm.json"

    @property
    def judge_check(self) -> Path:
        """The feedback model measured on the bundled clear-cut cases."""
        return self.root / "judge" / "judge_check.json"

    @property
    def self_preference(self) -> Path:
        """The judge's preference for its own answers, where it was measured into the run
        (``cai eval self-preference --out RUN/judge/self-preference``)."""
        return self.root / "judge" / "self-preference" / "self_preference.json"

    # evaluation and report
    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def metrics(self) -> Path:
        return self.eval / METRICS

    @property
    def verdicts(self) -> Path:
        return self.eval / VERDICTS

    @property
    def by_round(self) -> Path:
        return self.eval / BY_ROUND

    @property
    def locales(self) -> Path:
        """Refusals by language (``[eval] locales``, or ``cai eval locales --out RUN/eval/locales``)."""
        return self.eval / "locales" / "locales.json"

    @property
    def robustness(self) -> Path:
        return self.root / "robustness" / "robustness.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"
