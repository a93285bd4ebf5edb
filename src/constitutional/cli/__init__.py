"""`cai` — the command line. It parses arguments, calls the library and hands the result
to ``render``; no logic here.

A stage command's options are made from the stage's config (``options``), the model and
prompt options from shared groups (``models``, ``prompt_source``), so each default lives
in one place and ``cai run`` uses the same one. Every input problem is one line on stderr
and exit status 2, never a traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from .. import __version__
from ..backends import DEFAULT_MODEL, ModelConfig
from ..critique import CritiqueConfig
from ..errors import CaiError
from ..evaluation.capability import CapabilityConfig
from ..evaluation.self_preference import SelfPreferenceConfig
from ..evaluation.suite import EvalConfig
from ..feedback import LabelConfig
from ..generate import GenerateConfig, PairsConfig
from ..guard import GuardConfig
from ..prompts import Prompt
from ..redteam import RedteamConfig
from ..sft_data import SFTDataConfig
from ..train.config import DPOTrainConfig, PMTrainConfig, RLTrainConfig, SFTTrainConfig
from . import render
from .options import models, options, prompt_source
from .render import out


def _typer(help: str) -> typer.Typer:
    return typer.Typer(help=help, no_args_is_help=True)


app = typer.Typer(
    help="Constitutional AI end to end: write a constitution, then critique and revise "
    "(SL-CAI), label with AI feedback (RLAIF), train, evaluate and audit.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
constitution_app = _typer("Validate, show, hash and diff constitution files.")
train_app = _typer("Train with TRL: sft, pm (preference model), dpo, rloo (RL against the "
                   "preference model).")
eval_app = _typer("Evaluate: harm, refusals, compare (Elo), pm (preference model), labeler (AI "
                  "labels vs humans), robustness, regress, overtraining, refusal-classifier, "
                  "capability, self-preference, locales (refusals across languages).")
guard_app = _typer("A prompt guard learned from red-team findings: train it, check prompt "
                   "files with it, serve it as an OpenAI-compatible proxy in front of a model.")
audit_app = _typer("Human audit of AI judgments: sample a run, review in a browser (serve), "
                   "import/export human labels, and report agreement and drift.")
for sub, name in ((constitution_app, "constitution"), (train_app, "train"), (eval_app, "eval"),
                  (guard_app, "guard"), (audit_app, "audit")):
    app.add_typer(sub, name=name)

Out = lambda what, required=True: typer.Option(... if required else None, "--out", "-o",  # noqa: E731
                                               help=f"Folder for {what}.")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace records made with other settings.")
ConstitutionOpt = typer.Option("default", "--constitution", "-c",
                               help="Constitution TOML ('default': the packaged one).")
ChunkOpt = lambda n, what: typer.Option(n, "--chunk-size", min=1, help=f"{what} per flush to disk.")  # noqa: E731
DataOpt = typer.Option(..., help="Comparisons: our labels/preferences JSONL, HH-RLHF (.jsonl or "
                       ".jsonl.gz), or a BIG-bench HHH task.json.")
FormatOpt = typer.Option("auto", "--format", help="auto, ours, hh or hhh.")
DbOpt = typer.Option(Path("audit.db"), "--db", help="The audit database (SQLite).")


def _load(path: str):
    from .. import constitution

    return constitution.load(None if path == "default" else path)


def _version(value: bool) -> None:
    if value:
        print(f"cai {__version__}")
        raise typer.Exit()


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit."),
          device: Optional[str] = typer.Option(None, "--device", help="Where every model runs: "
                                               "auto (a CUDA GPU if there is one), cpu, cuda, "
                                               "cuda:N. Default: CAI_DEVICE, else auto."),
          dtype: Optional[str] = typer.Option(None, "--dtype", help="auto (bf16 on a GPU or a CPU "
                                              "with native bf16, else float32), float32 or "
                                              "bfloat16. Default: CAI_DTYPE, else auto."),
          engine: Optional[str] = typer.Option(None, "--engine", help="What generates and "
                                               "scores: auto (vLLM where installed and the "
                                               "model is supported, else hf), vllm or hf. "
                                               "Default: CAI_ENGINE, else auto.")) -> None:
    from ..devices import configure
    from ..progress import quiet_libraries

    configure(device, dtype, engine)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    quiet_libraries(verbose)


# -- constitution -------------------------------------------------------------------

FileArg = typer.Argument(..., help="Constitution TOML file ('default' for the packaged one).")


@constitution_app.command("validate")
def constitution_validate(file: str = FileArg) -> None:
    """Check a constitution file; exit 2 with file:line and field on the first problem."""
    c = _load(file)
    out.print(f"ok: {file}: {len(c.principles)} principles, {len(c.categories())} categories, "
              f"hash {c.hash}")
    if c.overdue():
        out.print(f"[yellow]warning:[/yellow] {c.overdue()}", markup=True)


@constitution_app.command("show")
def constitution_show(file: str = FileArg,
                      full: bool = typer.Option(False, help="Print every request in full.")) -> None:
    """Print the principles as a table."""
    render.constitution(_load(file), full)


@constitution_app.command("hash")
def constitution_hash(file: str = FileArg) -> None:
    """Print the content hash stamped on every artifact made with this constitution."""
    print(_load(file).hash)


@constitution_app.command("diff")
def constitution_diff(a: str = typer.Argument(..., help="Old constitution."),
                      b: str = typer.Argument(..., help="New constitution."),
                      as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """What changed between two constitutions, by principle id."""
    import json

    from .. import constitution

    d = constitution.diff(_load(a), _load(b))
    print(json.dumps(d, indent=2)) if as_json else render.constitution_diff(d)


# -- generation and SL-CAI ----------------------------------------------------------------

@app.command()
@options(GenerateConfig)
@models("model")
@prompt_source(None, help="JSONL or CSV prompt file.")
def generate(out_dir: Path = Out("generate.jsonl"), overwrite: bool = OverwriteOpt,
             model: ModelConfig = None, prompts: list[Prompt] = None,
             config: GenerateConfig = None) -> None:
    """Generate responses for a prompt file, batched and resumable (rerun to resume)."""
    from ..generate import generate as run

    if not prompts:
        raise CaiError("--prompts: give a JSONL or CSV prompt file")
    m = run(model.backend(), prompts, out_dir, config, batch_size=model.batch_size,
            overwrite=overwrite)
    render.warnings(m)
    out.print(f"{m['records']} records in {out_dir / 'generate.jsonl'}")


@app.command()
@options(RedteamConfig)
@models("model", ray=False)
@prompt_source()
def redteam(out_dir: Path = Out("redteam.jsonl"), model: ModelConfig = None,
            prompts: list[Prompt] = None, config: RedteamConfig = None) -> None:
    """Grow a red-team prompt set: generate, mutate, dedup; print the category coverage."""
    from ..redteam import build_redteam

    render.coverage(build_redteam(prompts, out_dir, config, backend=model.backend()))
    out.print(f"wrote {out_dir / 'redteam.jsonl'} and {out_dir / 'coverage.json'}")


@app.command()
@options(CritiqueConfig)
@models("model")
@prompt_source()
def critique(out_dir: Path = Out("critique.jsonl"), constitution_file: str = ConstitutionOpt,
             chunk_size: int = ChunkOpt(64, "Prompts"), overwrite: bool = OverwriteOpt,
             model: ModelConfig = None, prompts: list[Prompt] = None,
             config: CritiqueConfig = None) -> None:
    """SL-CAI: draft answers, then critique and revise them under sampled principles."""
    from ..critique import run_critique

    m = run_critique(model.backend(), prompts, _load(constitution_file), out_dir, config,
                     chunk_size=chunk_size, overwrite=overwrite)
    render.warnings(m)
    out.print(f"{m['records']} trajectories in {out_dir / 'critique.jsonl'} "
              f"({m['revisions']} revisions, {m['skipped']} skipped)")
    render.revision_quality(m.get("quality") or [])


@app.command("sft-data")
@options(SFTDataConfig)
def build_sft(trajectories: Path = typer.Option(..., help="critique.jsonl from cai critique."),
              out_dir: Path = Out("sft.jsonl"),
              helpful: Optional[Path] = typer.Option(None, help="generate.jsonl of helpful prompts."),
              config: SFTDataConfig = None) -> None:
    """Turn trajectories into an SFT set ({"messages": [...]}) plus a preference view."""
    from ..sft_data import build_sft as run

    s = run(trajectories, out_dir, config, helpful=helpful)
    out.print(f"{s['rows']} rows ({s['harmless']} harmless, {s['helpful']} helpful) in "
              f"{s['sft']}; {s['preference_pairs']} pairs in {s['preferences']}")
    if "dropped" in s:
        reasons = ", ".join(f"{k} {v}" for k, v in s["dropped_by_reason"].items()) or "none"
        out.print(f"dropped {s['dropped']} harmlessness rows ({s['drop_rate']:.0%}) whose revision "
                  f"failed the checks ({reasons})")


# -- RLAIF ----------------------------------------------------------------------------

@app.command("pairs")
@options(PairsConfig)
@models("model")
@prompt_source()
def sample_pairs(out_dir: Path = Out("pairs.jsonl"), overwrite: bool = OverwriteOpt,
                 model: ModelConfig = None, prompts: list[Prompt] = None,
                 config: PairsConfig = None) -> None:
    """RLAIF step 1: two sampled responses per prompt from the policy."""
    from ..generate import generate as run

    m = run(model.backend(), prompts, out_dir, config, batch_size=model.batch_size,
            overwrite=overwrite, stage_name="pairs")
    render.warnings(m)
    out.print(f"{m['records']} pairs in {out_dir / 'pairs.jsonl'}")


@app.command()
@options(LabelConfig)
@models("model")
def label(pairs: Path = typer.Option(..., help="pairs.jsonl from cai pairs."),
          out_dir: Path = Out("labels.jsonl"), constitution_file: str = ConstitutionOpt,
          chunk_size: int = ChunkOpt(32, "Pairs"), overwrite: bool = OverwriteOpt,
          model: ModelConfig = None, config: LabelConfig = None) -> None:
    """RLAIF step 2: the feedback model picks (A) or (B); soft labels from log-probs."""
    from ..feedback import pairs_from_file, run_label

    m = run_label(model.backend(), pairs_from_file(pairs),
                  _load(constitution_file), out_dir, config, chunk_size=chunk_size,
                  overwrite=overwrite)
    bias = m["position_bias"]
    out.print(f"{m['records']} labelled pairs in {out_dir / 'labels.jsonl'}; mean p(first shown) "
              f"{bias['mean_p_first_shown']:.3f}, order flip rate {bias['flip_rate']:.3f}")


# -- training -------------------------------------------------------------------------

StartOpt = lambda help: typer.Option(..., "--model", "-m", help=help)  # noqa: E731
BaseOpt = typer.Option(DEFAULT_MODEL, "--model", "-m", help=f"Starting model: {DEFAULT_MODEL} "
                       "or hf:DIR.")


def _where(model: str) -> tuple[Path, dict[str, str]]:
    """A trainer's starting directory and the device and dtype to train on."""
    m = ModelConfig(spec=model)
    return m.model_dir(), {"device": m.device, "dtype": m.dtype}


@train_app.command("sft")
@options(SFTTrainConfig)
def train_sft(data: Path = typer.Option(..., help="sft.jsonl from cai sft-data."),
              out_dir: Path = Out("the trained model"), model: str = BaseOpt,
              config: SFTTrainConfig = None) -> None:
    """Fine-tune with TRL's SFTTrainer; saves a directory that --model hf:DIR loads."""
    from ..train.sft import train_sft as run

    start, where = _where(model)
    m = run(data, out_dir, start, config, **where)
    out.print(f"trained {m['steps']} steps, last loss {m['losses'][-1]:.4f}; "
              f"model in {out_dir} (use --model hf:{out_dir})")


@train_app.command("pm")
@options(PMTrainConfig)
def train_pm(data: Path = typer.Option(..., help="labels.jsonl from cai label (or any "
                                       "comparison file)."),
             out_dir: Path = Out("the preference model"), model: str = BaseOpt,
             mix: Optional[Path] = typer.Option(None, help="Other comparison data to mix in "
                                                "(ours, HH-RLHF or BIG-bench HHH format)."),
             config: PMTrainConfig = None) -> None:
    """Train a preference model with the soft-label Bradley-Terry loss (TRL RewardTrainer)."""
    from ..train.pm import train_pm as run

    start, where = _where(model)
    m = run(data, out_dir, start, config, mix_data=mix, **where)
    out.print(f"trained {m['steps']} steps on {m['provenance']['config']['rows']} comparisons, "
              f"last loss {m['losses'][-1]:.4f}; preference model in {out_dir}")


@train_app.command("dpo")
@options(DPOTrainConfig)
def train_dpo(data: Path = typer.Option(..., help="labels.jsonl from cai label (or any "
                                        "comparison file)."),
              out_dir: Path = Out("the trained policy"),
              model: str = StartOpt("Starting policy, also the DPO reference (usually "
                                    "hf:runs/x/models/sft)."),
              config: DPOTrainConfig = None) -> None:
    """DPO on AI-labelled pairs (TRL DPOTrainer). Soft labels: confidence filter, and
    optionally label smoothing."""
    from ..train.dpo import train_dpo as run

    start, where = _where(model)
    m = run(data, out_dir, start, config, **where)
    c = m["provenance"]["config"]
    out.print(f"trained {m['steps']} steps on {c['rows']} pairs ({c['dropped']} dropped as "
              f"unsure), last loss {m['losses'][-1]:.4f}; model in {out_dir}")


@train_app.command("rloo")
@options(RLTrainConfig)
@models("feedback", batch_size=None, ray=False)
@prompt_source(limit=32)
def train_rl(out_dir: Path = Out("the trained policy"),
             model: str = StartOpt("Starting policy and KL reference (usually "
                                   "hf:runs/x/models/sft)."),
             pm: Optional[Path] = typer.Option(None, help="Preference model from cai train pm."),
             helpful: Optional[str] = typer.Option("bundled:helpful", help="Helpfulness prompts "
                                                   "to mix in."),
             constitution_file: str = ConstitutionOpt, feedback: ModelConfig = None,
             prompts: list[Prompt] = None, config: RLTrainConfig = None) -> None:
    """RL-CAI with TRL's RLOOTrainer: preference-model reward, KL penalty to the reference,
    the over-training monitor logged every step."""
    from ..redteam import resolve_prompts
    from ..train.rl import build_prompts, hold_out_probe, train_rl as run

    helps = resolve_prompts(helpful) if helpful else []
    prompts, helps, probe = hold_out_probe(prompts, helps) if config.probe_every else (prompts, helps, [])
    start, where = _where(model)
    m = run(build_prompts(prompts, helps, config.helpful_ratio, config.seed), out_dir, start,
            config, pm=pm, feedback=feedback, constitution=_load(constitution_file), probe=probe,
            **where)
    last = m["monitor"][-1] if m["monitor"] else {}
    out.print(f"trained {m['steps']} steps; last batch: reward {last.get('reward_raw', 0):.3f}, "
              f"boilerplate {last.get('boilerplate_rate', 0):.2f}, distinct-2 "
              f"{last.get('distinct_2', 0):.2f}; model in {out_dir}")


# -- evaluation -----------------------------------------------------------------------

@eval_app.command("robustness")
@models("model", "feedback", ray=False)
@prompt_source(limit=24)
def eval_robustness(out_dir: Path = Out("robustness.json/.jsonl"),
                    mutations: str = typer.Option("paraphrase,roleplay,multiturn", help="Comma-"
                                                  "separated: paraphrase, roleplay, fiction, "
                                                  "hypothetical, obfuscate, multiturn."),
                    judge_principles: int = typer.Option(1, min=1),
                    max_new_tokens: int = typer.Option(128), constitution_file: str = ConstitutionOpt,
                    seed: int = typer.Option(0), model: ModelConfig = None,
                    feedback: ModelConfig = None, prompts: list[Prompt] = None) -> None:
    """Violation rate of the same harmful prompts, plain and under each mutation."""
    from ..backends.base import Sampling
    from ..evaluation.robustness import robustness

    m = robustness(model.backend(), feedback.backend(), prompts,
                   [x.strip() for x in mutations.split(",") if x.strip()], _load(constitution_file),
                   out_dir, Sampling(max_new_tokens=max_new_tokens, temperature=0),
                   judge_principles, seed)
    render.violation_by_mutation(f"violation rate by mutation: {model.spec}", m["per_mutation"])


@eval_app.command("regress")
@models("feedback", ray=False)
def eval_regress(out_dir: Path = Out("regress.json/.jsonl"),
                 model_a: str = typer.Option(..., "--a", help="Model A (the baseline)."),
                 model_b: Optional[str] = typer.Option(None, "--b", help="Model B (default: A "
                                                       "again, under --constitution-b)."),
                 cases: Optional[Path] = typer.Option(None, help="Cases JSONL: prompt, principles, "
                                                      "expect (default: our bundled suite)."),
                 constitution_a: str = typer.Option("default", help="Constitution for A's judging."),
                 constitution_b: Optional[str] = typer.Option(None, help="Constitution for B "
                                                              "(default: A's)."),
                 max_new_tokens: int = typer.Option(128), feedback: ModelConfig = None) -> None:
    """Regression suite tied to principle ids: which principles regressed from A to B
    (two models, or one model judged under two constitution versions)."""
    from ..evaluation.robustness import regress

    ca = _load(constitution_a)
    a = feedback.using(model_a)
    render.regressions(regress(a.backend(), a.using(model_b or model_a).backend(), ca,
                               _load(constitution_b) if constitution_b else ca, out_dir,
                               judge=feedback.backend(), cases=cases,
                               max_new_tokens=max_new_tokens))


@eval_app.command("refusal-classifier")
def eval_refusal_classifier(
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Labelled answers: XSTest's "
                                        "completions CSV (completion, final_label) or our JSONL "
                                        "(response, label, optional kind full/partial). Default: "
                                        "the held-back part of our own models' labelled answers "
                                        "(data/refusal_ours.jsonl)."),
    split: Optional[str] = typer.Option(None, "--split", help="Only rows of this split (our "
                                        "labelled file has 'fit' and 'held'); default: held for "
                                        "the default file, all rows otherwise."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Write agreement.json and "
                                           "errors-NAME.jsonl (every disagreement) here."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Also measure the model "
                                        "judge with this model."),
) -> None:
    """Agreement of the refusal classifier (and optionally the model judge) with people's
    labels: accuracy, Cohen's kappa, per-class precision and recall, confusion table.
    XSTest files count a full or partial refusal as a refusal, as XSTest does."""
    from ..evaluation.refusal import measure_agreement

    judges = {model: ModelConfig(spec=model).backend()} if model else {}
    for name, a in measure_agreement(data, judges, split, out_dir).items():
        render.agreement(name, a)
    if out_dir:
        out.print(f"wrote {out_dir / 'agreement.json'} and the errors beside it")


@eval_app.command("overtraining")
def eval_overtraining(
    responses: Path = typer.Argument(..., help="A generate/pairs JSONL (or verdicts.jsonl)."),
    out_dir: Optional[Path] = Out("overtraining.json", required=False),
    reference: Optional[str] = typer.Option(None, "--reference", help="A model spec (the "
                                            "starting model): adds the responses' mean "
                                            "per-token NLL under it (fluency)."),
) -> None:
    """Boilerplate (stock phrases, and phrases shared by answers to many prompts), distinct-1/2,
    length, refusal rate and degeneration inside each response, with warnings where a figure
    crosses its threshold; with --reference, fluency under the starting model."""
    from ..evaluation.overtraining import measure_file

    ref = ModelConfig(spec=reference, engine="hf").load() if reference else None
    stats, warn = measure_file(responses, out_dir, ref)
    for k, v in stats.items():
        out.print(f"{k:18} {v:.3f}" if isinstance(v, float) else f"{k:18} {v}")
    for w in warn:
        out.print(f"[yellow]warning:[/yellow] {w}")


@eval_app.command("pm")
def eval_pm(pm: Path = typer.Option(..., help="Preference model folder from cai train pm."),
            data: Path = DataOpt, out_dir: Path = Out("eval_pm.json/.jsonl"),
            fmt: str = FormatOpt,
            limit: Optional[int] = typer.Option(None, help="Use only the first N comparisons."),
            batch_size: int = typer.Option(8, min=1)) -> None:
    """Preference-model accuracy and calibration (ECE, reliability bins) on comparisons."""
    from ..comparisons import load_comparisons
    from ..evaluation.preference import eval_pm as run
    from ..pm import PreferenceModel

    rows = load_comparisons(data, fmt, limit)  # type: ignore[arg-type]
    m = run(PreferenceModel.load(pm, batch_size=batch_size), rows, out_dir, source=str(data))
    render.calibration(f"preference model on {m['n_comparisons']} comparisons", m)
    out.print(f"metrics in {out_dir / 'eval_pm.json'}")


@eval_app.command("labeler")
@models("model", batch_size=16, ray=False)
def eval_labeler(data: Path = DataOpt, out_dir: Path = Out("eval_labeler.json/.jsonl"),
                 constitution_file: str = ConstitutionOpt, fmt: str = FormatOpt,
                 limit: Optional[int] = typer.Option(100, help="Use only the first N comparisons."),
                 cot: bool = typer.Option(True, help="Also measure the chain-of-thought labeler."),
                 seed: int = typer.Option(0), model: ModelConfig = None) -> None:
    """The AI labeler's agreement with the file's labels (humans' for HH-RLHF): with and
    without order averaging, with and without chain of thought."""
    from ..comparisons import load_comparisons
    from ..evaluation.preference import eval_labeler as run

    rows = load_comparisons(data, fmt, limit)  # type: ignore[arg-type]
    m = run(model.backend(), rows, _load(constitution_file), out_dir,
            cot=(False, True) if cot else (False,), seed=seed, source=str(data))
    for key in ("direct", "cot"):
        if key in m:
            render.calibration(f"{key}, one order", m[key]["one_order"])
            render.calibration(f"{key}, both orders averaged", m[key]["averaged"])
    out.print(f"metrics in {out_dir / 'eval_labeler.json'}")


def _evaluate(named: dict[str, ModelConfig], harmful, borderline, helpful, out_dir, config,
              judge: ModelConfig, constitution_file: str = "default"):
    from ..evaluation.suite import evaluate_models

    return evaluate_models({k: m.backend() for k, m in named.items()}, harmful, borderline,
                           helpful, out_dir, config, judge=judge.backend(),
                           constitution=_load(constitution_file), batch_size=judge.batch_size)


@eval_app.command("harm")
@options(EvalConfig, skip=("judge", "compare"))
@models("model", "feedback")
@prompt_source(filters=True, help="Harmful prompts: bundled:redteam, or a file (AdvBench: "
               "--column goal).")
def eval_harm(out_dir: Path = Out("metrics.json, verdicts.jsonl"),
              constitution_file: str = ConstitutionOpt, model: ModelConfig = None,
              feedback: ModelConfig = None, prompts: list[Prompt] = None,
              config: EvalConfig = None) -> None:
    """Violation rate per harm category (Wilson intervals), judged by the feedback model
    under the constitution, naming the violated principle; plus refusal classes."""
    full = _evaluate({"model": model}, prompts, [], [], out_dir, config.only("harm"), feedback,
                     constitution_file)
    m = full["per_model"]["model"]
    render.temperature_sweep(full.get("temperature"))
    v = m["violation"]["all"]
    out.print(f"violation rate {v['rate']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}] on "
              f"{v['n']}; evasive {m['evasive_on_harmful']['rate']:.3f}; "
              f"metrics in {out_dir / 'metrics.json'}")


@eval_app.command("refusals")
@options(EvalConfig, skip=("judge", "compare", "judge_principles"))
@models("model")
@prompt_source("bundled:borderline", flag="--benign", filters=True, keep_limit=True,
               help="Benign look-alikes: bundled:borderline or a file (XSTest: --where label=safe).")
def eval_refusals(out_dir: Path = Out("metrics.json, verdicts.jsonl"),
                  harmful: Optional[str] = typer.Option("bundled:redteam", help="Harmful prompts, "
                                                        "for the evasive-refusal rate ('' to skip)."),
                  model: ModelConfig = None, prompts: list[Prompt] = None,
                  limit: Optional[int] = None, config: EvalConfig = None) -> None:
    """False-refusal rate on benign look-alikes and evasive-refusal rate on harmful prompts
    (``--limit``: at most N prompts from each set)."""
    from ..redteam import resolve_prompts

    h = resolve_prompts(harmful, None, limit) if harmful else []
    full = _evaluate({"model": model}, h, prompts, [], out_dir, config.only("refusals"), model)
    m = full["per_model"]["model"]
    render.temperature_sweep(full.get("temperature"))
    out.print(f"false-refusal rate {m['false_refusal']['rate']:.3f} on {m['false_refusal']['n']}"
              + (f"; evasive on harmful {m['evasive_on_harmful']['rate']:.3f}" if h else "")
              + f"; metrics in {out_dir / 'metrics.json'}")


@eval_app.command("locales")
@models("model")
def eval_locales(
    others: Optional[list[str]] = typer.Argument(None, help="More models on the same prompts: "
                                                 "NAME=SPEC or SPEC."),
    locales: list[str] = typer.Option(["fr", "de", "es", "ru"], "--locales", "-l",
                                      help="Languages, comma-separated or repeated."),
    harmful: str = typer.Option("bundled:redteam", help="Harmful prompts with translations: "
                                "bundled:redteam, or a file whose rows carry locale and original."),
    benign: str = typer.Option("bundled:borderline", help="Benign look-alikes, likewise ('' to skip)."),
    max_new_tokens: int = typer.Option(128, min=1, help="Tokens per answer (greedy)."),
    out_dir: Path = Out("locales.json, verdicts.jsonl"), model: ModelConfig = None,
) -> None:
    """Refusals in each language against English on the same prompts: the share of answers
    in the prompt's language, refusal rates with 95% intervals and McNemar's test against
    English. A figure in a language the refusal measure does not read says so."""
    from ..evaluation.locales import evaluate_locales, translated_sets
    from ..evaluation.suite import EvalConfig

    from pydantic import ValidationError

    try:
        config = EvalConfig(locales=tuple(locales))
    except ValidationError as e:
        raise CaiError(f"option --locales: {e.errors()[0]['msg']}") from None
    named = {"model": model, **_named(others or [], model)}
    sets = translated_sets({"harmful": harmful, "borderline": benign}, list(config.locales))
    result = evaluate_locales({k: m.backend() for k, m in named.items()}, sets, out_dir,
                              max_new_tokens, model.batch_size)
    render.locales(result)
    out.print(f"metrics in {out_dir / 'locales.json'}")


def _named(specs: list[str], like: ModelConfig) -> dict[str, ModelConfig]:
    """``NAME=SPEC`` (or a bare spec, named after itself) → that model, with ``like``'s settings."""
    named = {}
    for s in specs:
        name, _, spec = s.partition("=") if "=" in s and not s.startswith("hf:") else (s, "", s)
        named[name] = like.using(spec)
    return named


@eval_app.command("capability")
@options(CapabilityConfig, skip=("engine",))
@models("model", batch_size=None)
def eval_capability(
    others: Optional[list[str]] = typer.Argument(None, help="More models, compared with --model "
                                                 "on the same questions: NAME=SPEC or SPEC."),
    out_dir: Path = Out("capability.json, <model>.jsonl"), model: ModelConfig = None,
    config: CapabilityConfig = None,
) -> None:
    """Capability kept? Multiple-choice benchmarks (ARC-Easy by default) through
    lm-evaluation-harness on local data: accuracy with 95% intervals, each question's result
    kept, and every pair of models compared on the same questions (McNemar). Uses the
    engine --engine picks. Never train on these sets."""
    from ..evaluation.capability import evaluate_capability

    model = model.model_copy(update={"batch_size": config.batch_size})
    named = {model.spec: model, **_named(others or [], model)}
    render.capability(evaluate_capability({k: m.backend() for k, m in named.items()}, out_dir,
                                          config))
    out.print(f"metrics in {out_dir / 'capability.json'}")


@eval_app.command("self-preference")
@options(SelfPreferenceConfig)
@models("judge")
@prompt_source("bundled:helpful", limit=40)
def eval_self_preference(
    other: str = typer.Option(..., "--other", help="The model whose answers the judge's own "
                              "are compared with: a model spec."),
    reference: Optional[str] = typer.Option(None, "--reference", help="A reference judge on the "
                                            "same pairs: self-preference is the judge's excess."),
    out_dir: Path = Out("self_preference.json, pairs.jsonl"),
    constitution_file: str = ConstitutionOpt, judge: ModelConfig = None,
    prompts: list[Prompt] = None, config: SelfPreferenceConfig = None,
) -> None:
    """Does the judge prefer its own answers? It compares them with --other's on the same
    prompts, both orders, as it labels RLAIF pairs; against --reference on the same pairs."""
    from ..evaluation.self_preference import self_preference

    r = self_preference(judge.backend(), judge.using(other).backend(), prompts, out_dir,
                        constitution=_load(constitution_file),
                        reference=judge.using(reference).backend() if reference else None,
                        config=config)
    render.self_preference(r)
    out.print(f"metrics in {out_dir / 'self_preference.json'}")


@eval_app.command("compare")
@options(EvalConfig, skip=("judge", "compare", "judge_principles"))
@models("feedback")
def eval_compare(
    specs: list[str] = typer.Argument(..., help="Two or more models: NAME=SPEC or SPEC."),
    out_dir: Path = Out("metrics.json"),
    harmful: str = typer.Option("bundled:redteam", help="Prompts for harmlessness."),
    helpful: str = typer.Option("bundled:helpful", help="Prompts for helpfulness."),
    limit: int = typer.Option(24, help="Prompts from each set."),
    constitution_file: str = ConstitutionOpt, feedback: ModelConfig = None,
    config: EvalConfig = None,
) -> None:
    """Pairwise comparisons by the feedback model (both orders): win rates and Elo with
    bootstrap intervals, for harmlessness and helpfulness separately."""
    from ..redteam import resolve_prompts

    named = _named(specs, feedback)
    if len(named) < 2:
        raise CaiError("cai eval compare needs at least two models")
    m = _evaluate(named, resolve_prompts(harmful, None, limit), [],
                  resolve_prompts(helpful, None, limit), out_dir, config.only("compare"),
                  feedback, constitution_file)
    render.elo(m["per_model"])


# -- the pipeline ------------------------------------------------------------------------

@app.command("run")
def run_pipeline(
    config: str = typer.Argument(..., help="Pipeline TOML, or the name of a packaged one (demo)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o",
                                           help="Run folder (default runs/<name>)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key, e.g. "
                                   "--set sft.max_steps=4 (repeatable)."),
    only: list[str] = typer.Option([], "--only", help="Run only these stages (repeatable)."),
) -> None:
    """Run the whole method: prompts → judge check → critique → SFT → pairs → labels → PM → DPO →
    evaluation → report. Stages already done with the same inputs are skipped; after an
    interruption, the same command resumes."""
    from ..evaluation.judge_check import uninformative
    from ..pipeline import Run, load_config, resolve_config

    cfg = load_config(resolve_config(config), set_)
    results = Run(cfg, out_dir or Path("runs") / cfg.name).run(only or None, echo=render.line)
    ev = results.get("eval", {}).get("summary") or {}
    if ev.get("summary"):
        render.run_summary(ev["summary"],
                           uninformative(results.get("judge", {}).get("summary") or {}))
    if "report" in results:
        out.print(f"report: {results['report']['summary']['report']}")


@app.command("status")
def run_status(run: Path = typer.Argument(..., help="Run folder.")) -> None:
    """Each stage of a run: done, incomplete or pending, with records and time."""
    from ..pipeline import status

    render.status(run, status(run))


@app.command("report")
def report_cmd(run: Path = typer.Argument(..., help="Run folder."),
               output: Optional[Path] = typer.Option(None, "--output", help="HTML path (default "
                                                     "RUN/report.html).")) -> None:
    """Write one self-contained HTML page for a run (no network, model text escaped)."""
    from ..report import write_report

    out.print(f"report: {write_report(run, out=output)}")


# -- guard ----------------------------------------------------------------------------

GuardOpt = typer.Option(..., "--guard", "-g", help="Guard folder from cai guard train.")


@guard_app.command("train")
@options(GuardConfig)
def guard_train(out_dir: Path = Out("guard.json"),
                harmful: list[str] = typer.Option(["bundled:redteam"], help="Harmful requests: "
                                                  "bundled:redteam or a prompt file, such as a "
                                                  "run's redteam.jsonl; repeat for several."),
                helpful: str = typer.Option("bundled:helpful", help="Benign requests."),
                borderline: str = typer.Option("bundled:borderline", help="Benign look-alikes; "
                                               "the threshold is chosen on them."),
                run: Optional[Path] = typer.Option(None, "--run", help="Also a cai run folder's "
                                                   "red-team prompts (its training set, with "
                                                   "the prompts its redteam stage grew)."),
                config: GuardConfig = None) -> None:
    """Fit the guard on harmful requests (and their mutations) against benign ones; the
    threshold blocks at most --false-block of the borderline set, measured out of fold."""
    from ..guard import train_guard
    from ..layout import RunLayout
    from ..redteam import resolve_prompts

    if run is not None:
        found = RunLayout(run).prompt_set("train_redteam")
        if not found.is_file():
            raise CaiError(f"{run}: no red-team prompts ({found} is missing: run its prompts "
                           "stage first, e.g. cai run CONFIG --out RUN --only prompts)")
        harmful = [*harmful, str(found)]
    g = train_guard([p for h in harmful for p in resolve_prompts(h)], resolve_prompts(helpful),
                    resolve_prompts(borderline), out_dir, config)
    render.guard_trained(g, out_dir)


UnreadOpt = typer.Option("pass", "--unread", help="A request in a language the guard was not "
                         "trained in (it reads English only, if trained on our sets): pass it "
                         "(logged as unread) or block it.")


@guard_app.command("check")
def guard_check(prompts: str = typer.Argument(..., help="Prompt file (JSONL or CSV) or bundled:NAME."),
                guard: Path = GuardOpt, column: Optional[str] = typer.Option(
                    None, help="CSV/JSONL column holding the prompt (default: guessed)."),
                unread: str = UnreadOpt,
                out_dir: Optional[Path] = Out("guard_check.jsonl", required=False)) -> None:
    """Classify every prompt of a file: blocked or passed, with the guard's score."""
    from ..guard import Guard, check_prompts
    from ..redteam import resolve_prompts

    rows = check_prompts(Guard.load(guard, unread), resolve_prompts(prompts, column=column), out_dir)
    render.guard_checked(rows, out_dir)


@guard_app.command("serve")
@models("model", ray=False)
def guard_serve(guard: Path = GuardOpt, constitution_file: str = ConstitutionOpt,
                log: Path = typer.Option(Path("guard-log.jsonl"), help="Every decision, one "
                                         "JSON line (appended)."),
                host: str = typer.Option("127.0.0.1", help="Bind address (loopback by default)."),
                port: int = typer.Option(8000), unread: str = UnreadOpt,
                model: ModelConfig = None) -> None:
    """An OpenAI-compatible proxy (/v1/chat/completions) in front of --model: a blocked
    request gets an explained refusal from the constitution and never reaches the model."""
    import uvicorn

    from ..guard import DecisionLog, Guard, create_app

    g = Guard.load(guard, unread)
    render.line(f"guard {g.source} (threshold {g.threshold:.3f}) in front of {model.spec}: "
                f"http://{host}:{port}/v1, decisions in {log}")
    uvicorn.run(create_app(g, model.backend(), _load(constitution_file), DecisionLog(log)),
                host=host, port=port, log_level="warning")


# -- audit ----------------------------------------------------------------------------

@audit_app.command("sample")
def audit_sample(
    run: Path = typer.Argument(..., help="Run folder (from `cai run`)."),
    n: int = typer.Option(100, "--n", min=1, help="How many items to sample."),
    kinds: str = typer.Option("label,harm,critique", help="Which judgments: label, harm, critique."),
    low_weight: float = typer.Option(3.0, help="Oversampling weight of low-confidence strata."),
    seed: int = typer.Option(0), db: Path = DbOpt,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the sample as JSONL."),
) -> None:
    """Draw a stratified sample (kind × category × principle × confidence band) of a run's
    AI judgments, low-confidence ones oversampled, and add it to the audit database."""
    from ..audit.sample import sample_run

    render.audit_sample(sample_run(run, n, kinds, seed=seed, low_weight=low_weight, db=db,
                                   output=output), db)


@audit_app.command("serve")
def audit_serve(
    db: Path = DbOpt,
    reviewer: list[str] = typer.Option(..., "--reviewer", "-r", help="A reviewer's name; repeat "
                                       "for several. Each gets a link with a new token."),
    host: str = typer.Option("127.0.0.1", help="Bind address (loopback by default)."),
    port: int = typer.Option(8765),
) -> None:
    """Serve the review app. Keys: a agree, d disagree, 1/2 choose, s save, n note, j/k next/previous."""
    import uvicorn

    from ..audit.app import create_app
    from ..audit.db import AuditDB

    if not db.exists():
        raise CaiError(f"{db}: no audit database; run `cai audit sample RUN --db {db}` first")
    store = AuditDB(db)
    for name in reviewer:
        render.line(f"{name}: http://{host}:{port}/?token={store.new_token(name)}")
    uvicorn.run(create_app(db), host=host, port=port, log_level="warning")


@audit_app.command("import")
def audit_import(file: Path = typer.Argument(..., help="JSONL: item_id, reviewer, label[, note, "
                                             "created_at]."), db: Path = DbOpt) -> None:
    """Import human labels (checked in full before anything is written)."""
    from ..audit.db import AuditDB

    out.print(f"imported {AuditDB(db).import_reviews(file)} reviews into {db}")


@audit_app.command("export")
def audit_export(file: Path = typer.Argument(..., help="Output JSONL."), db: Path = DbOpt) -> None:
    """Export every review with its item's kind, source and AI label."""
    from ..audit.db import AuditDB

    out.print(f"exported {AuditDB(db).export(file)} reviews to {file}")


@audit_app.command("relabel")
@models("feedback", ray=False)
def audit_relabel(db: Path = DbOpt,
                  constitution_file: str = typer.Option(..., "--constitution", "-c",
                                                        help="The other constitution version."),
                  feedback: ModelConfig = None) -> None:
    """Judge the audited label and harm items again under another constitution version,
    for the drift table of `cai audit report`."""
    from ..audit.agreement import relabel
    from ..audit.db import AuditDB

    counts = relabel(AuditDB(db), feedback.backend(), _load(constitution_file), feedback.batch_size)
    out.print(f"relabelled {counts['label']} labels and {counts['harm']} verdicts "
              f"({counts['skipped']} critique items cannot be relabelled without regenerating)")


@audit_app.command("report")
def audit_report(db: Path = DbOpt, seed: int = typer.Option(0),
                 output: Optional[Path] = typer.Option(None, "--output", "-o",
                                                       help="Write the figures as JSON.")) -> None:
    """AI–human agreement (accuracy, Cohen's kappa, 95% intervals) per kind, principle and
    category; human–human agreement; drift across constitution versions."""
    from ..audit.agreement import agreement
    from ..audit.db import AuditDB
    from ..jsonio import write_json

    if not db.exists():
        raise CaiError(f"{db}: no audit database")
    r = agreement(AuditDB(db), seed)
    if output:
        write_json(output, r)
    render.audit_report(r)


def _renamed(typer_app: typer.Typer, old: str, new: str, command) -> None:
    """Keep an old command name working for now, with a one-line notice."""
    import functools

    @functools.wraps(command)
    def alias(**kwargs):
        print(f"note: `cai {old}` is now `cai {new}`; the old name still works for now",
              file=sys.stderr)
        return command(**kwargs)

    typer_app.command(old.split()[-1], hidden=True)(alias)


_renamed(app, "build-sft", "sft-data", build_sft)
_renamed(app, "sample-pairs", "pairs", sample_pairs)
_renamed(train_app, "train rl", "train rloo", train_rl)


def main() -> None:
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
