"""`cai` — the command line. It parses arguments, calls the library and hands the result
to ``render``; no logic here.

A command's options are made from a config the library declares, the model and prompt
options from shared groups (``options.command``), so each default lives in one place and
``cai run`` uses the same one. Every input problem is one line on stderr and exit status 2,
never a traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from .. import __version__, guard as guards, pipeline, render, report
from ..audit import agreement as audit_agreement, sample as audit_sampling
from ..audit.db import AuditDB
from ..backends import DEFAULT_MODEL, ModelConfig
from ..constitution import load as _load
from ..critique import CritiqueConfig, run_critique
from ..devices import configure
from ..errors import CaiError
from ..evaluation import locales as locs, overtraining, preference, refusal, robustness as rob
from ..evaluation.capability import CapabilityConfig, evaluate_capability
from ..evaluation.self_preference import SelfPreferenceConfig, self_preference
from ..evaluation.suite import EvalConfig, evaluate_models
from ..feedback import LabelConfig, pairs_from_file, run_label
from ..generate import GenerateConfig, PairsConfig, generate as generated
from ..jsonio import write_json
from ..progress import quiet_libraries
from ..redteam import RedteamConfig, build_redteam, resolve_prompts
from ..render import out, said
from ..sft_data import SFTDataConfig, build_sft as sft_rows
from ..train.config import DPOTrainConfig, PMTrainConfig, RLTrainConfig, SFTTrainConfig
from .options import HELP_STYLE, command, constitution, renamed, sub_app

app = typer.Typer(
    help="Constitutional AI end to end: write a constitution, then critique and revise "
    "(SL-CAI), label with AI feedback (RLAIF), train, evaluate and audit.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
    **HELP_STYLE)
constitution_app = sub_app(app, "constitution", "Validate, show, hash and diff constitution files.")
train_app = sub_app(app, "train", "Train with TRL: sft, pm (preference model), dpo, rloo (RL "
                    "against the preference model).")
eval_app = sub_app(app, "eval", "Evaluate: harm, refusals, compare (Elo), pm (preference model), "
                   "feedback (the feedback model's labels vs humans'), robustness, regress, overtraining, "
                   "refusal-classifier, capability, self-preference, locales (refusals across "
                   "languages).")
guard_app = sub_app(app, "guard", "A prompt guard learned from red-team findings: train it, "
                    "check prompt files with it, serve it as an OpenAI-compatible proxy in front "
                    "of a model.")
audit_app = sub_app(app, "audit", "Human audit of AI judgments: sample a run, review in a "
                    "browser (serve), import/export human labels, and report agreement and drift.")

Db = typer.Option(Path("audit.db"), "--db", help="The audit database (SQLite).")
Others = typer.Argument(None, help="More models on the same prompts: NAME=SPEC or SPEC.")
Host = typer.Option("127.0.0.1", help="Bind address (loopback by default).")
File = typer.Argument(..., help="Constitution TOML file ('default' for the packaged one).")
Start = lambda help: typer.Option(..., "--model", "-m", help=help)  # noqa: E731
Base = typer.Option(DEFAULT_MODEL, "--model", "-m", help=f"Starting model: {DEFAULT_MODEL}, hf:DIR.")
Labels = typer.Option(..., help="labels.jsonl from cai label (or any comparison file).")
Guard = typer.Option(..., "--guard", "-g", help="Guard folder from cai guard train.")
Unread = typer.Option("pass", help="A request in a language the guard was not trained in (it "
                      "reads English only, if trained on our sets): pass it (logged as unread) "
                      "or block it.")


def _version(value: bool) -> None:
    if value:
        print(f"cai {__version__}")
        raise typer.Exit()


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit."),
          device: Optional[str] = typer.Option(None, help="Where every model runs: auto (a "
                                               "CUDA GPU if there is one), cpu, cuda, cuda:N. "
                                               "Default: CAI_DEVICE, else auto."),
          dtype: Optional[str] = typer.Option(None, help="auto (bf16 on a GPU or a CPU with "
                                              "native bf16, else float32), float32 or bfloat16. "
                                              "Default: CAI_DTYPE, else auto."),
          engine: Optional[str] = typer.Option(None, help="What generates and scores: auto "
                                               "(vLLM where installed and the model is supported, "
                                               "else hf), vllm or hf. Default: CAI_ENGINE, else "
                                               "auto.")) -> None:
    configure(device, dtype, engine)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    quiet_libraries(verbose)


# -- constitution -------------------------------------------------------------------

@constitution_app.command("validate")
def constitution_validate(file: str = File) -> None:
    """Check a constitution file; exit 2 with file:line and field on the first problem."""
    render.validated(file, _load(file))


@constitution_app.command("show")
def constitution_show(file: str = File, full: bool = typer.Option(
        False, help="Print every request in full.")) -> None:
    """Print the principles as a table."""
    render.constitution(_load(file), full)


@constitution_app.command("hash")
def constitution_hash(file: str = File) -> None:
    """Print the content hash stamped on every artifact made with this constitution."""
    print(_load(file).hash)


@constitution_app.command("diff")
def constitution_diff(a: str = typer.Argument(..., help="Old constitution."),
                      b: str = typer.Argument(..., help="New constitution."),
                      as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """What changed between two constitutions, by principle id."""
    from .. import constitution

    render.constitution_diff(constitution.diff(_load(a), _load(b)), as_json)


# -- generation and SL-CAI ----------------------------------------------------------------

@command(app, None, GenerateConfig, roles=("model",), out="generate.jsonl", overwrite=True,
         prompts=dict(default=..., help="JSONL or CSV prompt file, or bundled:NAME."))
def generate(model, prompts, out_dir, overwrite, config) -> None:
    """Generate responses for a prompt file, batched and resumable (rerun to resume)."""
    said("generate", generated(model.backend(), prompts, out_dir, config,
                               batch_size=model.batch_size, overwrite=overwrite), out_dir)


@command(app, None, RedteamConfig, roles=("model",), ray=False, prompts={}, out="redteam.jsonl")
def redteam(model, prompts, out_dir, config) -> None:
    """Grow a red-team prompt set: generate, mutate, dedup; print the category coverage."""
    render.coverage(build_redteam(prompts, out_dir, config, backend=model.backend()), out_dir)


@command(app, None, CritiqueConfig, roles=("model",), prompts={}, out="critique.jsonl",
         constitution_file=True, overwrite=True, chunk=(64, "Prompts"))
def critique(model, prompts, out_dir, constitution, overwrite, chunk_size, config) -> None:
    """SL-CAI: draft answers, then critique and revise them under sampled principles."""
    said("critique", run_critique(model.backend(), prompts, constitution, out_dir, config,
                                  chunk_size=chunk_size, overwrite=overwrite), out_dir)


@command(app, "sft-data", SFTDataConfig, out="sft.jsonl")
def build_sft(out_dir, config,
              trajectories: Path = typer.Option(..., help="critique.jsonl from cai critique."),
              helpful: Optional[Path] = typer.Option(None, help="generate.jsonl of helpful "
                                                     "prompts.")) -> None:
    """Turn trajectories into an SFT set ({"messages": [...]}) plus a preference view."""
    said("sft-data", sft_rows(trajectories, out_dir, config, helpful=helpful), out_dir)


# -- RLAIF ----------------------------------------------------------------------------

@command(app, "pairs", PairsConfig, roles=("model",), prompts={}, out="pairs.jsonl",
         overwrite=True)
def sample_pairs(model, prompts, out_dir, overwrite, config) -> None:
    """RLAIF step 1: two sampled responses per prompt from the policy."""
    said("pairs", generated(model.backend(), prompts, out_dir, config, batch_size=model.batch_size,
                            overwrite=overwrite, stage_name="pairs"), out_dir)


@command(app, None, LabelConfig, roles=("model",), out="labels.jsonl", constitution_file=True,
         overwrite=True, chunk=(32, "Pairs"))
def label(model, out_dir, constitution, overwrite, chunk_size, config,
          pairs: Path = typer.Option(..., help="pairs.jsonl from cai pairs.")) -> None:
    """RLAIF step 2: the feedback model picks (A) or (B); soft labels from log-probs."""
    said("label", run_label(model.backend(), pairs_from_file(pairs), constitution, out_dir, config,
                            chunk_size=chunk_size, overwrite=overwrite), out_dir)


# -- training -------------------------------------------------------------------------

def _train(kind: str, data, out_dir: Path, model: str, config, **kw) -> None:
    from ..train import train

    said(f"train {kind}", train(kind, data, out_dir, ModelConfig(spec=model), config, **kw), out_dir)


@command(train_app, "sft", SFTTrainConfig, out="the trained model")
def train_sft(out_dir, config, model: str = Base,
              data: Path = typer.Option(..., help="sft.jsonl from cai sft-data.")) -> None:
    """Fine-tune with TRL's SFTTrainer; saves a directory that --model hf:DIR loads."""
    _train("sft", data, out_dir, model, config)


@command(train_app, "pm", PMTrainConfig, out="the preference model")
def train_pm(out_dir, config, data: Path = Labels, model: str = Base, mix: Optional[Path] = typer.Option(
        None, help="Other comparison data to mix in (ours, HH-RLHF or BIG-bench HHH).")) -> None:
    """Train a preference model with the soft-label Bradley-Terry loss (TRL RewardTrainer)."""
    _train("pm", data, out_dir, model, config, mix_data=mix)


@command(train_app, "dpo", DPOTrainConfig, out="the trained policy")
def train_dpo(out_dir, config, data: Path = Labels, model: str = Start(
        "Starting policy, also the DPO reference (usually hf:runs/x/models/sft).")) -> None:
    """DPO on AI-labelled pairs (TRL DPOTrainer). Soft labels: confidence filter, and
    optionally label smoothing."""
    _train("dpo", data, out_dir, model, config)


@command(train_app, "rloo", RLTrainConfig, roles=("feedback",), batch_size=None, ray=False,
         prompts=dict(limit=32), out="the trained policy", constitution_file=True)
def train_rl(feedback, prompts, out_dir, constitution, config,
             model: str = Start("Starting policy and KL reference (usually hf:runs/x/models/sft)."),
             pm: Optional[Path] = typer.Option(None, help="Preference model from cai train pm."),
             helpful: Optional[str] = typer.Option("bundled:helpful", help="Helpfulness prompts "
                                                   "to mix in.")) -> None:
    """RL-CAI with TRL's RLOOTrainer: preference-model reward, KL penalty to the reference,
    the over-training monitor logged every step."""
    from ..train.rl import prompt_mix

    mix, probe = prompt_mix(prompts, resolve_prompts(helpful) if helpful else [], config)
    _train("rl", mix, out_dir, model, config, pm=pm, feedback=feedback, probe=probe,
           constitution=constitution)


# -- evaluation -----------------------------------------------------------------------

@command(eval_app, "robustness", rob.RobustnessConfig, roles=("model", "feedback"), ray=False,
         prompts=dict(limit=24), out="robustness.json/.jsonl", constitution_file=True)
def eval_robustness(model, feedback, prompts, out_dir, constitution, config) -> None:
    """Violation rate of the same harmful prompts, plain and under each mutation."""
    m = rob.robustness(model.backend(), feedback.backend(), prompts, constitution, out_dir, config)
    render.violation_by_mutation(f"violation rate by mutation: {model.spec}", m["per_mutation"])


@command(eval_app, "regress", rob.RegressConfig, roles=("feedback",), ray=False,
         out="regress.json/.jsonl")
def eval_regress(feedback, out_dir, config) -> None:
    """Regression suite tied to principle ids: which principles regressed from A to B
    (two models, or one model judged under two constitution versions)."""
    render.regressions(rob.regress_sides(feedback, config, out_dir))


@command(eval_app, "refusal-classifier", refusal.AgreementConfig,
         out="agreement.json and errors-NAME.jsonl (every disagreement)", out_required=False)
def eval_refusal_classifier(out_dir, config) -> None:
    """Agreement of the refusal classifier (and optionally the model judge) with people's
    labels: accuracy, Cohen's kappa, per-class precision and recall, confusion table.
    XSTest files count a full or partial refusal as a refusal, as XSTest does."""
    judges = {config.model: ModelConfig(spec=config.model).backend()} if config.model else {}
    render.agreements(refusal.measure_agreement(config.data, judges, config.split, out_dir),
                      out_dir)


@command(eval_app, "overtraining", out="overtraining.json", out_required=False)
def eval_overtraining(out_dir, responses: Path = typer.Argument(
        ..., help="A generate/pairs JSONL (or verdicts.jsonl)."),
        reference: Optional[str] = typer.Option(None, help="A model spec (the starting model): "
                                                "adds the responses' mean NLL under it.")) -> None:
    """Boilerplate (stock phrases, and phrases shared by answers to many prompts), distinct-1/2,
    length, refusal rate and degeneration inside each response, with warnings where a figure
    crosses its threshold; with --reference, fluency under the starting model."""
    ref = ModelConfig(spec=reference, engine="hf").load() if reference else None
    render.overtraining(*overtraining.measure_file(responses, out_dir, ref))


@command(eval_app, "pm", preference.PMEvalConfig, out="eval_pm.json/.jsonl")
def eval_pm(out_dir, config) -> None:
    """Preference-model accuracy and calibration (ECE, reliability bins) on comparisons."""
    from ..pm import PreferenceModel

    m = preference.eval_pm(PreferenceModel.load(config.pm, batch_size=config.batch_size),
                           config.load(), out_dir, source=str(config.data))
    render.calibration(f"preference model on {m['n_comparisons']} comparisons", m, out_dir)


@command(eval_app, "feedback", preference.FeedbackEvalConfig, roles=("model",), batch_size=16,
         ray=False, out="eval_feedback.json/.jsonl", constitution_file=True)
def eval_feedback(model, out_dir, constitution, config) -> None:
    """The feedback model's (--model's) agreement with the file's labels (humans' for
    HH-RLHF): with and without order averaging, with and without chain of thought."""
    render.feedback_agreement(preference.eval_feedback(
        model.backend(), config.load(), constitution, out_dir, seed=config.seed,
        cot=(False, True) if config.cot else (False,), source=str(config.data)), out_dir)


def _evaluate(models: dict[str, ModelConfig], harmful, borderline, helpful, out_dir, config,
              judge: ModelConfig, constitution=None):
    full = evaluate_models({k: m.backend() for k, m in models.items()}, harmful, borderline,
                           helpful, out_dir, config, judge=judge.backend(),
                           constitution=_load("default") if constitution is None else constitution,
                           batch_size=judge.batch_size)
    render.temperature_sweep(full.get("temperature"))
    return full


@command(eval_app, "harm", EvalConfig, skip=("judge", "compare"), roles=("model", "feedback"),
         prompts=dict(filters=True, help="Harmful prompts: bundled:redteam, or a file (AdvBench: "
                      "--column goal)."), out="metrics.json, verdicts.jsonl", constitution_file=True)
def eval_harm(model, feedback, prompts, out_dir, constitution, config) -> None:
    """Violation rate per harm category (Wilson intervals), judged by the feedback model
    under the constitution, naming the violated principle; plus refusal classes."""
    said("eval harm", _evaluate({"model": model}, prompts, [], [], out_dir, config.only("harm"),
                                feedback, constitution)["per_model"]["model"], out_dir)


@command(eval_app, "refusals", EvalConfig, skip=("judge", "compare", "judge_principles"),
         roles=("model",), out="metrics.json, verdicts.jsonl",
         prompts=dict(default="bundled:borderline", flag="--benign", filters=True, keep_limit=True,
                      help="Benign look-alikes: bundled:borderline or a file (XSTest: --where "
                      "label=safe)."))
def eval_refusals(model, prompts, limit, out_dir, config, harmful: Optional[str] = typer.Option(
        "bundled:redteam", help="Harmful prompts, for the evasive-refusal rate ('' to skip).")
        ) -> None:
    """False-refusal rate on benign look-alikes and evasive-refusal rate on harmful prompts
    (--limit: at most N prompts from each set)."""
    h = resolve_prompts(harmful, None, limit) if harmful else []
    m = _evaluate({"model": model}, h, prompts, [], out_dir, config.only("refusals"), model)
    render.refusals(m["per_model"]["model"], bool(h), out_dir)


@command(eval_app, "locales", EvalConfig, only=("locales", "max_new_tokens"), roles=("model",),
         out="locales.json, verdicts.jsonl")
def eval_locales(model, out_dir, config, others: Optional[list[str]] = Others,
                 harmful: str = typer.Option("bundled:redteam", help="Harmful prompts with "
                                             "translations: bundled:redteam, or a file whose rows "
                                             "carry locale and original."),
                 benign: str = typer.Option("bundled:borderline", help="Benign look-alikes, "
                                            "likewise ('' to skip).")) -> None:
    """Refusals in each language against English on the same prompts: the share of answers
    in the prompt's language, refusal rates with 95% intervals and McNemar's test against
    English. A figure in a language the refusal measure does not read says so."""
    ms = {"model": model, **model.named(others or [])}
    sets = locs.translated_sets({"harmful": harmful, "borderline": benign}, list(config.locales))
    render.locales(locs.evaluate_locales({k: m.backend() for k, m in ms.items()}, sets, out_dir,
                                         config.max_new_tokens, model.batch_size), out_dir)


@command(eval_app, "capability", CapabilityConfig, skip=("engine",), roles=("model",),
         batch_size=None, out="capability.json, MODEL.jsonl")
def eval_capability(model, out_dir, config, others: Optional[list[str]] = Others) -> None:
    """Capability kept? Multiple-choice benchmarks (ARC-Easy by default) through
    lm-evaluation-harness on local data: accuracy with 95% intervals, each question's result
    kept, and every pair of models compared on the same questions (McNemar). Uses the
    engine --engine picks. Never train on these sets."""
    model = model.model_copy(update={"batch_size": config.batch_size})
    ms = {model.spec: model, **model.named(others or [])}
    render.capability(evaluate_capability({k: m.backend() for k, m in ms.items()}, out_dir,
                                          config), out_dir)


@command(eval_app, "self-preference", SelfPreferenceConfig, roles=("feedback",),
         prompts=dict(default="bundled:helpful", limit=40), constitution_file=True,
         out="self_preference.json, pairs.jsonl")
def eval_self_preference(
    feedback, prompts, out_dir, constitution, config,
    other: str = typer.Option(..., help="The model whose answers the feedback model's own are "
                              "compared with: a model spec."),
    reference: Optional[str] = typer.Option(None, help="A reference feedback model on the same "
                                            "pairs: self-preference is the excess over it."),
) -> None:
    """Does the feedback model prefer its own answers? It compares them with --other's on the
    same prompts, both orders, as it labels RLAIF pairs; against --reference on the same pairs."""
    other_m = feedback.using(other, exists=True)
    reference_m = feedback.using(reference, exists=True) if reference else None
    render.self_preference(self_preference(
        feedback.backend(), other_m.backend(), prompts, out_dir, config=config,
        constitution=constitution, reference=reference_m and reference_m.backend()), out_dir)


@command(eval_app, "compare", EvalConfig, skip=("judge", "compare", "judge_principles"),
         roles=("feedback",), out="metrics.json", constitution_file=True)
def eval_compare(
    feedback, out_dir, constitution, config,
    specs: list[str] = typer.Argument(..., help="Two or more models: NAME=SPEC or SPEC."),
    harmful: str = typer.Option("bundled:redteam", help="Prompts for harmlessness."),
    helpful: str = typer.Option("bundled:helpful", help="Prompts for helpfulness."),
    limit: int = typer.Option(24, help="Prompts from each set."),
) -> None:
    """Pairwise comparisons by the feedback model (both orders): win rates and Elo with
    bootstrap intervals, for harmlessness and helpfulness separately."""
    ms = feedback.named(specs)
    if len(ms) < 2:
        raise CaiError("cai eval compare needs at least two models")
    render.elo(_evaluate(ms, resolve_prompts(harmful, None, limit), [],
                         resolve_prompts(helpful, None, limit), out_dir, config.only("compare"),
                         feedback, constitution)["per_model"])


# -- the pipeline ------------------------------------------------------------------------

Run = typer.Argument(..., help="Run folder.")


@app.command("run")
def run_pipeline(
    config: str = typer.Argument(..., help="Pipeline TOML, or the name of a packaged one (demo)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o",
                                           help="Run folder (default runs/NAME, the config's name)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key, e.g. "
                                   "--set sft.max_steps=4 (repeatable)."),
    only: list[str] = typer.Option([], "--only", help="Run only these stages (repeatable)."),
) -> None:
    """Run the whole method: prompts → judge check → critique → SFT → pairs → labels → PM → DPO →
    evaluation → report. Stages already done with the same inputs are skipped; after an
    interruption, the same command resumes."""
    cfg = pipeline.load_config(pipeline.resolve_config(config), set_)
    render.run_results(pipeline.Run(cfg, out_dir or Path("runs") / cfg.name).run(
        only or None, echo=render.line))


@app.command("status")
def run_status(run: Path = Run) -> None:
    """Each stage of a run: done, incomplete or pending, with records and time."""
    render.status(run, pipeline.status(run))


@app.command("report")
def report_cmd(run: Path = Run, output: Optional[Path] = typer.Option(
        None, help="HTML path (default RUN/report.html).")) -> None:
    """Write one self-contained HTML page for a run (no network, model text escaped)."""
    out.print(f"report: {report.write_report(run, out=output)}")


# -- guard ----------------------------------------------------------------------------

@command(guard_app, "train", guards.GuardConfig, out="guard.json")
def guard_train(out_dir, config) -> None:
    """Fit the guard on harmful requests (and their mutations) against benign ones; the
    threshold blocks at most --false-block of the borderline set, measured out of fold."""
    render.guard_trained(guards.train_guard(*config.prompts(), out_dir, config), out_dir)


@command(guard_app, "check", out="guard_check.jsonl", out_required=False)
def guard_check(out_dir, prompts: str = typer.Argument(..., help="Prompt file (JSONL or CSV) "
                                                       "or bundled:NAME."),
                guard: Path = Guard, unread: str = Unread, column: Optional[str] = typer.Option(
                    None, help="CSV/JSONL column holding the prompt (default: guessed).")) -> None:
    """Classify every prompt of a file: blocked or passed, with the guard's score."""
    render.guard_checked(guards.check_prompts(guards.Guard.load(guard, unread),
                                              resolve_prompts(prompts, column=column), out_dir),
                         out_dir)


@command(guard_app, "serve", roles=("model",), ray=False, constitution_file=True)
def guard_serve(model, constitution, guard: Path = Guard, unread: str = Unread,
                log: Path = typer.Option(Path("guard-log.jsonl"), help="Every decision, one "
                                         "JSON line (appended)."),
                host: str = Host, port: int = typer.Option(8000)) -> None:
    """An OpenAI-compatible proxy (/v1/chat/completions) in front of --model: a blocked
    request gets an explained refusal from the constitution and never reaches the model."""
    import uvicorn

    g = guards.Guard.load(guard, unread)
    render.line(f"guard {g.source} (threshold {g.threshold:.3f}) in front of {model.spec}: "
                f"http://{host}:{port}/v1, decisions in {log}")
    uvicorn.run(guards.create_app(g, model.backend(), constitution, guards.DecisionLog(log)),
                host=host, port=port, log_level="warning")


# -- audit ----------------------------------------------------------------------------

@command(audit_app, "sample", audit_sampling.SampleConfig)
def audit_sample(config, run: Path = typer.Argument(..., help="Run folder (from `cai run`)."),
                 db: Path = Db, output: Optional[Path] = typer.Option(
                     None, "--output", "-o", help="Also write the sample as JSONL.")) -> None:
    """Draw a stratified sample (kind × category × principle × confidence band) of a run's
    AI judgments, low-confidence ones oversampled, and add it to the audit database."""
    render.audit_sample(audit_sampling.sample_run(run, **config.dump(), db=db, output=output), db)


@audit_app.command("serve")
def audit_serve(db: Path = Db, reviewer: list[str] = typer.Option(
        ..., "--reviewer", "-r", help="A reviewer's name; repeat for several. Each gets a link "
        "with a new token."), host: str = Host, port: int = typer.Option(8765)) -> None:
    """Serve the review app. Keys: a agree, d disagree, 1/2 choose, s save, n note, j/k
    next/previous."""
    import uvicorn

    from ..audit.app import create_app

    for name, token in AuditDB.existing(db).new_tokens(reviewer):
        render.line(f"{name}: http://{host}:{port}/?token={token}")
    uvicorn.run(create_app(db), host=host, port=port, log_level="warning")


@audit_app.command("import")
def audit_import(file: Path = typer.Argument(..., help="JSONL: item_id, reviewer, label[, note, "
                                             "created_at]."), db: Path = Db) -> None:
    """Import human labels (checked in full before anything is written)."""
    out.print(f"imported {AuditDB.existing(db).import_reviews(file)} reviews into {db}")


@audit_app.command("export")
def audit_export(file: Path = typer.Argument(..., help="Output JSONL."), db: Path = Db) -> None:
    """Export every review with its item's kind, source and AI label."""
    out.print(f"exported {AuditDB.existing(db).export(file)} reviews to {file}")


@command(audit_app, "relabel", roles=("feedback",), ray=False)
@constitution(required=True)
def audit_relabel(feedback, constitution, db: Path = Db) -> None:
    """Judge the audited label and harm items again under another constitution version,
    for the drift table of `cai audit report`."""
    said("audit relabel", audit_agreement.relabel(AuditDB(db), feedback.backend(), constitution,
                                                  feedback.batch_size), db)


@audit_app.command("report")
def audit_report(db: Path = Db, seed: int = typer.Option(0, help="Seeds the bootstrap."),
                 output: Optional[Path] = typer.Option(None, "--output", "-o",
                                                       help="Write the figures as JSON.")) -> None:
    """AI–human agreement (accuracy, Cohen's kappa, 95% intervals) per kind, principle and
    category; human–human agreement; drift across constitution versions."""
    r = audit_agreement.agreement(AuditDB.existing(db), seed)
    if output:
        write_json(output, r)
    render.audit_report(r)


renamed(app, "build-sft", "sft-data", build_sft)
renamed(app, "sample-pairs", "pairs", sample_pairs)
renamed(train_app, "train rl", "train rloo", train_rl)
renamed(eval_app, "eval labeler", "eval feedback", eval_feedback)


def main() -> None:
    from ..backends.handle import release

    try:
        app()
    except CaiError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))
    except OSError as e:  # the run folder is full, read-only, gone: say which file and why
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    finally:  # stop vLLM's engine processes now, not in the interpreter's teardown
        try:
            release()
        except Exception:  # an engine already gone: there is nothing left to stop
            pass
