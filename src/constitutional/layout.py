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


# Each file and folder of a run, relative to its root: ``RunLayout(root).labels`` is
# ``root / "rlaif/labels.jsonl"``.
PATHS = {
    # inputs and provenance
    "config": "config.json", "provenance": "provenance.json", "markers": ".cai/stages",
    "prompts": "prompts", "grown": "prompts/grown",
    # SL-CAI
    "critique_dir": "critique", "critique": "critique/critique.jsonl",
    "helpful_dir": "helpful", "helpful": "helpful/generate.jsonl",
    "sft_dir": "sft", "sft": "sft/sft.jsonl",
    # RLAIF
    "rlaif": "rlaif", "pairs": "rlaif/pairs.jsonl", "labels": "rlaif/labels.jsonl",
    "labels_manifest": "rlaif/labels.manifest.json",
    "pm_eval": "pm-eval", "pm_train": "pm-eval/train.jsonl", "pm_metrics": "pm-eval/eval_pm.json",
    # the feedback model measured on the bundled clear-cut cases, and its preference for its
    # own answers where that was measured into the run (``cai eval self-preference --out
    # RUN/judge/self-preference``)
    "judge_check": "judge/judge_check.json",
    "self_preference": "judge/self-preference/self_preference.json",
    # evaluation (refusals by language: ``[eval] locales``, or ``cai eval locales --out
    # RUN/eval/locales``) and the report
    "eval": "eval", "metrics": f"eval/{METRICS}", "verdicts": f"eval/{VERDICTS}",
    "by_round": f"eval/{BY_ROUND}", "locales": "eval/locales/locales.json",
    "robustness": "robustness/robustness.json", "report": "report.html",
}


@dataclass(frozen=True)
class RunLayout:
    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    def __getattr__(self, name: str) -> Path:
        if name not in PATHS:  # ``root`` included, before it is set (a copy, a pickle)
            raise AttributeError(name)
        return self.root / PATHS[name]

    def prompt_set(self, name: str) -> Path:
        return self.root / "prompts" / f"{name}.jsonl"

    def model(self, name: Literal["sft", "pm", "rl"]) -> Path:
        return self.root / "models" / name

    def training_manifest(self, name: Literal["sft", "pm", "rl"]) -> Path:
        return self.model(name) / "cai_training.json"
