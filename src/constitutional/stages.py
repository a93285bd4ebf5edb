"""The pipeline's stages, each declared once in :data:`STAGES`: its name, its function,
the stages whose files it reads and the config sections it depends on.

A stage function takes a :class:`RunContext` (the config, the run folder, the
constitution, the model handles) and returns a summary for its marker. It calls the same
library functions the single-stage commands call. ``ctx.overwrite`` is False when resuming
an interrupted attempt of the same stage (keep its records) and True when the inputs
changed (replace them). ``tests/test_pipeline.py`` checks that what each function reads
is what its row declares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

from .backends import ModelConfig
from .backends.spec import hf_spec
from .errors import CaiError
from .hashing import content_hash
from .jsonio import read_jsonl, write_json, write_jsonl
from .layout import RunLayout
from .prompts import Prompt, load_prompts

if TYPE_CHECKING:
    from .constitution import Constitution
    from .runconfig import PipelineConfig

SETS = ("train_redteam", "train_helpful", "eval_harmful", "eval_borderline", "eval_helpful")


@dataclass
class RunContext:
    """What a stage is handed: the run's config, folder and constitution, and its models."""

    config: "PipelineConfig"
    layout: RunLayout
    constitution: "Constitution"
    overwrite: bool = True
    device: str | None = None  # the user's choice (command line, environment) over the config's
    dtype: str | None = None
    engine: str | None = None

    def model(self, role: Literal["policy", "feedback"]) -> ModelConfig:
        m, r = self.config.models, self.config.ray
        return ModelConfig(spec=getattr(m, role), batch_size=m.batch_size,
                           device=self.device or m.device, dtype=self.dtype or m.dtype,
                           engine=self.engine or m.engine,
                           ray_workers=r.workers, ray_address=r.address or None)

    def trained(self, name: Literal["sft", "rl"]) -> ModelConfig:
        """The model a training stage of this run saved (SL-CAI: sft, RL-CAI: rl)."""
        return self.model("policy").using(hf_spec(self.layout.model(name)))

    @property
    def has_rl(self) -> bool:
        return self.config.rl.method != "none"

    def prompt_set(self, name: str) -> list[Prompt]:
        path = self.layout.prompt_set(name)
        if not path.is_file() or not path.read_text().strip():
            return []
        return load_prompts(path)

    def where(self) -> dict[str, Any]:
        """device and dtype for a trainer."""
        policy = self.model("policy")
        return {"device": policy.device, "dtype": policy.dtype}


# -- the stages -------------------------------------------------------------------------

def _split(prompts: list[Prompt], n_eval: int, n_train: int, seed: int):
    """Held-out evaluation prompts first, by a seeded hash order; never in training."""
    order = sorted(prompts, key=lambda p: content_hash([seed, p.id, "split"]))
    return order[n_eval : n_eval + n_train], order[:n_eval]


def _write_prompts(path: Path, prompts: list[Prompt]) -> int:
    return write_jsonl(path, [{"messages": [m.model_dump() for m in p.messages],
                               "category": p.category, "source": p.source, "locale": p.locale,
                               "original_id": p.original} for p in prompts])


def prompts(ctx: RunContext) -> dict[str, Any]:
    from .redteam import build_redteam, resolve_prompts

    c, cp = ctx.config, ctx.config.prompts
    red = resolve_prompts(cp.redteam)
    train_red, eval_harm = _split(red, cp.eval_harmful, cp.train_redteam, cp.seed)
    helpful = resolve_prompts(cp.helpful) if cp.train_helpful + cp.eval_helpful else []
    train_help, eval_help = _split(helpful, cp.eval_helpful, cp.train_helpful, cp.seed)
    border = resolve_prompts(cp.borderline)[: cp.eval_borderline] if cp.eval_borderline else []
    grow = c.redteam.generate_per_category or c.redteam.mutations
    if grow:
        summary = build_redteam(train_red, ctx.layout.grown, c.redteam,
                                backend=ctx.model("policy").backend())
        train_red = load_prompts(ctx.layout.grown / "redteam.jsonl")
    counts = {}
    for name, rows in zip(SETS, (train_red, train_help, eval_harm, border, eval_help)):
        counts[name] = _write_prompts(ctx.layout.prompt_set(name), rows)
    return {"prompts": sum(counts.values()), **counts, **({"grown": summary} if grow else {})}


def judge(ctx: RunContext) -> dict[str, Any]:
    """The feedback model on the bundled clear-cut cases, before any of its verdicts is used."""
    from .evaluation.judge_check import check_judge, one_line

    check = check_judge(ctx.model("feedback").backend(), ctx.constitution)
    write_json(ctx.layout.judge_check, check)
    return {"line": one_line(check),
            **{role: {k: check[role][k] for k in ("accuracy", "ci95", "flip_rate", "informative", "n")}
               for role in ("preference", "harm")}}


def critique(ctx: RunContext) -> dict[str, Any]:
    from .critique import run_critique

    c = ctx.config
    return run_critique(ctx.model("policy").backend(), ctx.prompt_set("train_redteam"),
                        ctx.constitution, ctx.layout.critique_dir, c.critique,
                        chunk_size=c.models.batch_size, overwrite=ctx.overwrite)


def helpful(ctx: RunContext) -> dict[str, Any]:
    from .generate import generate

    c = ctx.config
    rows = ctx.prompt_set("train_helpful")
    if not rows:
        return {"records": 0}
    return generate(ctx.model("policy").backend(), rows, ctx.layout.helpful_dir, c.helpful,
                    batch_size=c.models.batch_size, overwrite=ctx.overwrite)


def sft_data(ctx: RunContext) -> dict[str, Any]:
    from .sft_data import build_sft

    help_file = ctx.layout.helpful
    return build_sft(ctx.layout.critique, ctx.layout.sft_dir, ctx.config.sft_data,
                     helpful=help_file if help_file.is_file() else None)


def sft(ctx: RunContext) -> dict[str, Any]:
    from .train.sft import train_sft

    m = train_sft(ctx.layout.sft, ctx.layout.model("sft"), ctx.model("policy").model_dir(),
                  ctx.config.sft, **ctx.where())
    return {"steps": m["steps"], "losses": m["losses"]}


def pairs(ctx: RunContext) -> dict[str, Any]:
    from .generate import generate

    c = ctx.config
    rows = ctx.prompt_set("train_redteam") + ctx.prompt_set("train_helpful")
    return generate(ctx.trained("sft").backend(), rows, ctx.layout.rlaif, c.pairs,
                    batch_size=c.models.batch_size, overwrite=ctx.overwrite, stage_name="pairs")


def label(ctx: RunContext) -> dict[str, Any]:
    from .feedback import pairs_from_file, run_label

    c = ctx.config
    return run_label(ctx.model("feedback").backend(), pairs_from_file(ctx.layout.pairs),
                     ctx.constitution, ctx.layout.rlaif, c.label,
                     chunk_size=c.models.batch_size, overwrite=ctx.overwrite)


def pm(ctx: RunContext) -> dict[str, Any]:
    from .comparisons import load_comparisons
    from .evaluation.preference import eval_pm
    from .pm import PreferenceModel
    from .train.pm import train_pm

    pc = ctx.config.pm
    if not pc.enabled:
        return {"skipped": "pm.enabled = false"}
    rows = load_comparisons(ctx.layout.labels)
    held = {r["id"] for r in rows
            if int(content_hash([pc.seed, r["id"], "holdout"])[:8], 16) / 16**8 < pc.holdout}
    train = [r for r in rows if r["id"] not in held] or rows
    test = [r for r in rows if r["id"] in held]
    write_jsonl(ctx.layout.pm_train, train)
    m = train_pm(ctx.layout.pm_train, ctx.layout.model("pm"), ctx.model("policy").model_dir(),
                 pc.training(), **ctx.where())
    summary: dict[str, Any] = {"steps": m["steps"], "losses": m["losses"], "train": len(train),
                               "held_out": len(test)}
    if test:
        metrics = eval_pm(PreferenceModel.load(ctx.layout.model("pm"), **ctx.where()), test,
                          ctx.layout.pm_eval, source="held-out AI labels")
        summary["eval"] = {k: metrics[k] for k in ("accuracy", "ece", "n", "by_margin")}
    return summary


def rl(ctx: RunContext) -> dict[str, Any]:
    from .train.dpo import train_dpo

    c, r = ctx.config, ctx.config.rl
    if r.method == "none":
        return {"skipped": "rl.method = none"}
    start = ctx.trained("sft").model_dir()
    if r.method == "rloo":
        from .train.rl import build_prompts, probe_set, train_rl

        if not c.pm.enabled:
            raise CaiError("rl.method = 'rloo' needs the preference model (pm.enabled = true)")
        rows = build_prompts(ctx.prompt_set("train_redteam"), ctx.prompt_set("train_helpful"),
                             r.rloo.helpful_ratio, r.rloo.seed)
        # the probe set: held-out evaluation prompts, never trained on
        probe = probe_set(ctx.prompt_set("eval_harmful")[:8], ctx.prompt_set("eval_helpful")[:8])
        m = train_rl(rows, ctx.layout.model("rl"), start, r.rloo, pm=ctx.layout.model("pm"),
                     feedback=ctx.model("feedback"), constitution=ctx.constitution,
                     probe=probe if r.rloo.probe_every else (), **ctx.where())
        return {"steps": m["steps"], "losses": m["losses"], "method": "rloo",
                "monitor_last": m["monitor"][-1] if m["monitor"] else None}
    m = train_dpo(ctx.layout.labels, ctx.layout.model("rl"), start, r.dpo, **ctx.where())
    return {"steps": m["steps"], "losses": m["losses"], "method": r.method,
            "rows": m["provenance"]["config"]["rows"]}


def eval(ctx: RunContext) -> dict[str, Any]:
    from .evaluation.suite import evaluate_models, harm_by_round, summary_rows

    c = ctx.config
    models = {"base": ctx.model("policy"), "sl-cai": ctx.trained("sft")}
    if ctx.has_rl:
        models["rl-cai"] = ctx.trained("rl")
    if ctx.overwrite:
        import shutil

        shutil.rmtree(ctx.layout.eval, ignore_errors=True)  # models changed: answer afresh
    judge = ctx.model("feedback").backend()
    metrics = evaluate_models({k: m.backend() for k, m in models.items()},
                              ctx.prompt_set("eval_harmful"), ctx.prompt_set("eval_borderline"),
                              ctx.prompt_set("eval_helpful"), ctx.layout.eval, c.eval,
                              judge=judge, constitution=ctx.constitution,
                              batch_size=c.models.batch_size)
    if c.eval.locales:
        from .evaluation.locales import evaluate_locales, translated_sets

        cp = c.prompts
        trained = {p.id for p in ctx.prompt_set("train_redteam")}
        sets = translated_sets({"harmful": cp.redteam,
                                "borderline": cp.borderline if cp.eval_borderline else ""},
                               list(c.eval.locales), exclude=trained)
        locales = evaluate_locales({k: m.backend() for k, m in models.items()}, sets,
                                   ctx.layout.locales.parent, c.eval.max_new_tokens,
                                   c.models.batch_size)
        metrics["locales"] = {"file": str(ctx.layout.locales), "locales": locales["locales"]}
        write_json(ctx.layout.metrics, metrics)
    if ctx.layout.critique.is_file():
        harm_by_round(judge, read_jsonl(ctx.layout.critique), ctx.constitution, ctx.layout.eval,
                      c.eval.judge_principles, c.models.batch_size)
    cap = c.eval.capability
    if cap.tasks:
        from .evaluation.capability import evaluate_capability

        scoring = {k: m if cap.engine == "model" else m.using(m.spec, engine=cap.engine)
                   for k, m in models.items()}
        metrics["capability"] = evaluate_capability(
            {k: m.backend() for k, m in scoring.items()}, ctx.layout.eval / "capability", cap)
        write_json(ctx.layout.metrics, metrics)
    return {"models": list(models), "summary": summary_rows(metrics)}


def report(ctx: RunContext) -> dict[str, Any]:
    from .report import write_report

    return {"report": str(write_report(ctx.layout.root))}


# -- the table --------------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[RunContext], dict[str, Any]]
    reads: tuple[str, ...] = ()  # stages whose files (or models) this one opens
    sections: tuple[str, ...] = ()  # config sections its key hashes
    # reads that hold only under a setting (rl reads the pm and the prompts only for rloo)
    reads_if: dict[str, Callable[["PipelineConfig"], bool]] = field(default_factory=dict)
    trains: bool = False  # a training stage: loaded models are released before it
    # what it leaves in the run folder: a ``RunLayout`` name or ``models/NAME``; a stage
    # marked done whose output is gone (deleted by hand) runs again
    makes: str = ""

    def output_gone(self, marker: dict[str, Any], layout: "RunLayout") -> bool:
        """A done stage whose output was deleted since (a stage that skipped made none)."""
        if not self.makes or "skipped" in (marker.get("summary") or {}):
            return False
        kind, _, name = self.makes.partition("/")
        return not (layout.model(name) if kind == "models" else getattr(layout, self.makes)).exists()

    def upstream(self, config: "PipelineConfig") -> tuple[str, ...]:
        return tuple(s for s in self.reads if s not in self.reads_if or self.reads_if[s](config))


def _rloo(c: "PipelineConfig") -> bool:
    return c.rl.method == "rloo"


STAGES: tuple[Stage, ...] = (
    Stage("prompts", prompts, sections=("prompts", "redteam"), makes="prompts"),
    Stage("judge", judge, makes="judge_check"),
    Stage("critique", critique, reads=("prompts",), sections=("critique",), makes="critique"),
    Stage("helpful", helpful, reads=("prompts",), sections=("helpful",), makes="helpful"),
    Stage("sft-data", sft_data, reads=("critique", "helpful"), sections=("sft_data",), makes="sft"),
    Stage("sft", sft, reads=("sft-data",), sections=("sft",), trains=True, makes="models/sft"),
    Stage("pairs", pairs, reads=("sft", "prompts"), sections=("pairs",), makes="pairs"),
    Stage("label", label, reads=("pairs",), sections=("label",), makes="labels"),
    Stage("pm", pm, reads=("label",), sections=("pm",), trains=True, makes="models/pm"),
    Stage("rl", rl, reads=("label", "sft", "pm", "prompts"), sections=("rl",),
          reads_if={"pm": _rloo, "prompts": _rloo}, trains=True, makes="models/rl"),
    Stage("eval", eval, reads=("prompts", "sft", "rl", "critique"), sections=("eval",),
          makes="metrics"),
    Stage("report", report, reads=("eval", "pm", "label", "critique", "judge", "sft-data", "sft",
                                   "rl"), makes="report"),
)
BY_NAME = {s.name: s for s in STAGES}
NAMES = [s.name for s in STAGES]
