"""`cai` — the command line. It parses arguments and calls the library; no logic here.

A stage command's options are made from the stage's config (``config.options``), so each
default lives in the stage's module and ``cai run`` uses the same one.

Every input problem is one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .config import options
from .critique import CritiqueConfig
from .errors import CaiError
from .evaluation.suite import EvalConfig
from .feedback import LabelConfig
from .generate import GenerateConfig, PairsConfig
from .redteam import RedteamConfig
from .sft_data import SFTDataConfig
from .train.config import DPOTrainConfig, PMTrainConfig, RLTrainConfig, SFTTrainConfig

app = typer.Typer(
    help="Constitutional AI end to end: write a constitution, then critique and revise "
    "(SL-CAI), label with AI feedback (RLAIF), train, evaluate and audit.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
constitution_app = typer.Typer(help="Validate, show, hash and diff constitution files.",
                               no_args_is_help=True)
app.add_typer(constitution_app, name="constitution")
train_app = typer.Typer(help="Train with TRL: sft (and, as they land, pm, rl, dpo).",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")
eval_app = typer.Typer(help="Evaluate: harm, refusals, compare (Elo), pm (preference model), "
                       "labeler (AI labels vs humans).",
                       no_args_is_help=True)
app.add_typer(eval_app, name="eval")
audit_app = typer.Typer(help="Human audit of AI judgments: sample a run, review in a browser "
                        "(serve), import/export human labels, and report agreement and drift.",
                        no_args_is_help=True)
app.add_typer(audit_app, name="audit")

out = Console()

BatchOpt = typer.Option(32, "--batch-size", min=1, help="Sequences per batched model call.")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace records made with other settings.")
ConstitutionOpt = typer.Option("default", "--constitution", "-c",
                               help="Constitution TOML ('default': the packaged one).")

ModelOpt = typer.Option("smollm2", "--model", "-m",
                        help="Model spec: smollm2 (packaged default), hf:DIR, or scripted.")
FeedbackOpt = typer.Option("smollm2", "--feedback", "-f", help="The judge (feedback model).")
RayOpt = typer.Option(0, "--ray", min=0, help="Spread each batch over N Ray workers, each "
                      "holding the model (0: no Ray).")
RayAddressOpt = typer.Option(None, "--ray-address",
                             help="Join a running Ray cluster (e.g. ray://head:10001) instead of "
                             "starting a local instance.")


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
                                               "cuda:N. Also CAI_DEVICE."),
          dtype: Optional[str] = typer.Option(None, "--dtype", help="auto (bf16 on a GPU or a CPU "
                                              "with native bf16, else float32), float32 or "
                                              "bfloat16. Also CAI_DTYPE.")) -> None:
    from .devices import configure

    configure(device, dtype)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


# -- constitution -------------------------------------------------------------------

FileArg = typer.Argument(..., help="Constitution TOML file ('default' for the packaged one).")


def _load(path: str):
    from . import constitution

    return constitution.load(None if path == "default" else path)


@constitution_app.command("validate")
def constitution_validate(file: str = FileArg) -> None:
    """Check a constitution file; exit 2 with file:line and field on the first problem."""
    c = _load(file)
    out.print(f"ok: {file}: {len(c.principles)} principles, "
              f"{len(c.categories())} categories, hash {c.hash}")


@constitution_app.command("show")
def constitution_show(file: str = FileArg,
                      full: bool = typer.Option(False, help="Print every request in full.")) -> None:
    """Print the principles as a table."""
    c = _load(file)
    table = Table(title=f"{c.name} v{c.version} ({c.hash})", show_lines=full)
    for col in ("id", "name", "priority", "categories"):
        table.add_column(col)
    if full:
        for col in ("critique", "revision", "comparison"):
            table.add_column(col)
    for p in c.principles:
        row = [p.id, p.name, str(p.priority), ", ".join(p.categories)]
        if full:
            row += [p.critique, p.revision, p.comparison]
        table.add_row(*row)
    out.print(table)


@constitution_app.command("hash")
def constitution_hash(file: str = FileArg) -> None:
    """Print the content hash stamped on every artifact made with this constitution."""
    print(_load(file).hash)


@constitution_app.command("diff")
def constitution_diff(a: str = typer.Argument(..., help="Old constitution."),
                      b: str = typer.Argument(..., help="New constitution."),
                      as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """What changed between two constitutions, by principle id."""
    from . import constitution

    d = constitution.diff(_load(a), _load(b))
    if as_json:
        print(json.dumps(d, indent=2))
        return
    for pid in d["added"]:
        out.print(f"[green]+ {pid}[/green] added")
    for pid in d["removed"]:
        out.print(f"[red]- {pid}[/red] removed")
    for pid, fields in d["changed"].items():
        out.print(f"[yellow]~ {pid}[/yellow] changed: {', '.join(fields)}")
    if d["metadata"]:
        out.print(f"~ metadata changed: {', '.join(d['metadata'])}")
    if not (d["added"] or d["removed"] or d["changed"] or d["metadata"]):
        out.print("no changes")


# -- generate -----------------------------------------------------------------------

@app.command()
@options(GenerateConfig)
def generate(
    prompts: Path = typer.Option(..., "--prompts", "-p", help="JSONL or CSV prompt file."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Run folder to write into."),
    model: str = ModelOpt,
    column: Optional[str] = typer.Option(None, help="Text column (default: prompt/text/goal)."),
    limit: Optional[int] = typer.Option(None, help="Use only the first N prompts."),
    batch_size: int = BatchOpt,
    overwrite: bool = OverwriteOpt,
    ray: int = RayOpt,
    ray_address: Optional[str] = RayAddressOpt,
    config: GenerateConfig = None,
) -> None:
    """Generate responses for a prompt file, batched and resumable (rerun to resume)."""
    from .backends import LazyBackend
    from .generate import generate as run
    from .prompts import load_prompts

    rows = load_prompts(prompts, column=column, limit=limit)
    manifest = run(LazyBackend(model, batch_size, ray, ray_address), rows, out_dir, config,
                   batch_size=batch_size, overwrite=overwrite,
                   extra={"prompts": str(prompts), "column": column, "limit": limit})
    out.print(f"{manifest['records']} records in {out_dir / 'generate.jsonl'}")


# -- SL-CAI --------------------------------------------------------------------------

PromptsOpt = typer.Option("bundled:redteam", "--prompts", "-p",
                          help="bundled:redteam|helpful|borderline, or a JSONL/CSV file.")


@app.command()
@options(RedteamConfig)
def redteam(
    out_dir: Path = typer.Option(..., "--out", "-o", help="Run folder for redteam.jsonl."),
    seeds: str = PromptsOpt,
    column: Optional[str] = typer.Option(None, help="Text column of a CSV/JSONL seed file."),
    model: str = ModelOpt,
    config: RedteamConfig = None,
) -> None:
    """Grow a red-team prompt set: generate, mutate, dedup; print the category coverage."""
    from .backends import LazyBackend
    from .redteam import build_redteam, resolve_prompts

    summary = build_redteam(resolve_prompts(seeds, column), out_dir, config,
                            backend=LazyBackend(model))
    origins = sorted({k for row in summary["coverage"].values() for k in row} - {"total"})
    table = Table(title=f"{summary['prompts']} prompts "
                        f"({summary['dropped_duplicates']} duplicates dropped)")
    for col in ["category", *origins, "total"]:
        table.add_column(col, justify="left" if col == "category" else "right")
    for cat, row in summary["coverage"].items():
        table.add_row(cat, *(str(row.get(o, 0)) for o in [*origins, "total"]))
    out.print(table)
    out.print(f"wrote {out_dir / 'redteam.jsonl'} and {out_dir / 'coverage.json'}")


@app.command()
@options(CritiqueConfig)
def critique(
    out_dir: Path = typer.Option(..., "--out", "-o", help="Run folder for critique.jsonl."),
    prompts: str = PromptsOpt,
    column: Optional[str] = typer.Option(None, help="Text column of a CSV/JSONL file."),
    limit: Optional[int] = typer.Option(None, help="Use only the first N prompts."),
    model: str = ModelOpt,
    constitution_file: str = ConstitutionOpt,
    batch_size: int = BatchOpt,
    chunk_size: int = typer.Option(64, min=1, help="Prompts per flush to disk (each step of a "
                                   "chunk is one batched call)."),
    overwrite: bool = OverwriteOpt,
    ray: int = RayOpt,
    ray_address: Optional[str] = RayAddressOpt,
    config: CritiqueConfig = None,
) -> None:
    """SL-CAI: draft answers, then critique and revise them under sampled principles."""
    from .backends import LazyBackend
    from .critique import run_critique
    from .redteam import resolve_prompts

    manifest = run_critique(LazyBackend(model, batch_size, ray, ray_address),
                            resolve_prompts(prompts, column, limit), _load(constitution_file),
                            out_dir, config, chunk_size=chunk_size, overwrite=overwrite)
    out.print(f"{manifest['records']} trajectories in {out_dir / 'critique.jsonl'} "
              f"({manifest['revisions']} revisions, {manifest['skipped']} skipped)")
    from .evaluation.revisions import format_table

    out.print("What the revisions would teach, by round (0 = the drafts; echo: repeats its "
              "critique; meta: talks about the answer instead of answering):")
    for line in format_table(manifest.get("quality") or []):
        out.print(line, markup=False, highlight=False)


@app.command("build-sft")
@options(SFTDataConfig)
def build_sft(
    trajectories: Path = typer.Option(..., help="critique.jsonl from cai critique."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for sft.jsonl."),
    helpful: Optional[Path] = typer.Option(None, help="generate.jsonl of helpful prompts."),
    config: SFTDataConfig = None,
) -> None:
    """Turn trajectories into an SFT set ({"messages": [...]}) plus a preference view."""
    from .sft_data import build_sft as run

    s = run(trajectories, out_dir, config, helpful=helpful)
    out.print(f"{s['rows']} rows ({s['harmless']} harmless, {s['helpful']} helpful) in "
              f"{s['sft']}; {s['preference_pairs']} pairs in {s['preferences']}")
    if "dropped" in s:
        reasons = ", ".join(f"{k} {v}" for k, v in s["dropped_by_reason"].items()) or "none"
        out.print(f"dropped {s['dropped']} harmlessness rows ({s['drop_rate']:.0%}) whose revision "
                  f"failed the checks ({reasons})")


@train_app.command("sft")
@options(SFTTrainConfig)
def train_sft(
    data: Path = typer.Option(..., help="sft.jsonl from cai build-sft."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for the trained model."),
    model: str = ModelOpt,
    config: SFTTrainConfig = None,
) -> None:
    """Fine-tune with TRL's SFTTrainer; saves a directory that --model hf:DIR loads."""
    from .train.sft import train_sft as run

    m = run(data, out_dir, model, config)
    out.print(f"trained {m['steps']} steps, last loss {m['losses'][-1]:.4f}; "
              f"model in {out_dir} (use --model hf:{out_dir})")


# -- RLAIF --------------------------------------------------------------------------

@app.command("sample-pairs")
@options(PairsConfig)
def sample_pairs(
    out_dir: Path = typer.Option(..., "--out", "-o", help="Run folder for pairs.jsonl."),
    prompts: str = PromptsOpt,
    column: Optional[str] = typer.Option(None, help="Text column of a CSV/JSONL file."),
    limit: Optional[int] = typer.Option(None, help="Use only the first N prompts."),
    model: str = ModelOpt,
    batch_size: int = BatchOpt,
    overwrite: bool = OverwriteOpt,
    ray: int = RayOpt,
    ray_address: Optional[str] = RayAddressOpt,
    config: PairsConfig = None,
) -> None:
    """RLAIF step 1: two sampled responses per prompt from the policy."""
    from .backends import LazyBackend
    from .generate import generate as run
    from .redteam import resolve_prompts

    m = run(LazyBackend(model, batch_size, ray, ray_address), resolve_prompts(prompts, column, limit),
            out_dir, config, batch_size=batch_size, overwrite=overwrite, stage_name="pairs")
    out.print(f"{m['records']} pairs in {out_dir / 'pairs.jsonl'}")


@app.command()
@options(LabelConfig)
def label(
    pairs: Path = typer.Option(..., help="pairs.jsonl from cai sample-pairs."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Run folder for labels.jsonl."),
    model: str = ModelOpt,
    constitution_file: str = ConstitutionOpt,
    batch_size: int = BatchOpt,
    chunk_size: int = typer.Option(32, min=1, help="Pairs per flush to disk."),
    overwrite: bool = OverwriteOpt,
    ray: int = RayOpt,
    ray_address: Optional[str] = RayAddressOpt,
    config: LabelConfig = None,
) -> None:
    """RLAIF step 2: the feedback model picks (A) or (B); soft labels from log-probs."""
    from .backends import LazyBackend
    from .feedback import pairs_from_generations, run_label
    from .records import read_jsonl

    m = run_label(LazyBackend(model, batch_size, ray, ray_address),
                  pairs_from_generations(read_jsonl(pairs)), _load(constitution_file), out_dir,
                  config, chunk_size=chunk_size, overwrite=overwrite)
    bias = m["position_bias"]
    out.print(f"{m['records']} labelled pairs in {out_dir / 'labels.jsonl'}; "
              f"mean p(first shown) {bias['mean_p_first_shown']:.3f}, "
              f"order flip rate {bias['flip_rate']:.3f}")


@train_app.command("pm")
@options(PMTrainConfig)
def train_pm(
    data: Path = typer.Option(..., help="labels.jsonl from cai label (or any comparison file)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for the preference model."),
    model: str = ModelOpt,
    mix: Optional[Path] = typer.Option(None, help="Other comparison data to mix in "
                                       "(ours, HH-RLHF or BIG-bench HHH format)."),
    config: PMTrainConfig = None,
) -> None:
    """Train a preference model with the soft-label Bradley-Terry loss (TRL RewardTrainer)."""
    from .train.pm import train_pm as run

    m = run(data, out_dir, model, config, mix_data=mix)
    out.print(f"trained {m['steps']} steps on {m['provenance']['config']['rows']} comparisons, "
              f"last loss {m['losses'][-1]:.4f}; preference model in {out_dir}")


@train_app.command("dpo")
@options(DPOTrainConfig)
def train_dpo(
    data: Path = typer.Option(..., help="labels.jsonl from cai label (or any comparison file)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for the trained policy."),
    model: str = typer.Option(..., "--model", "-m", help="Starting policy, also the DPO "
                              "reference (usually hf:runs/x/sft-model)."),
    config: DPOTrainConfig = None,
) -> None:
    """DPO on AI-labelled pairs (TRL DPOTrainer). Soft labels: confidence filter, and
    optionally label smoothing."""
    from .train.dpo import train_dpo as run

    m = run(data, out_dir, model, config)
    c = m["provenance"]["config"]
    out.print(f"trained {m['steps']} steps on {c['rows']} pairs ({c['dropped']} dropped as "
              f"unsure), last loss {m['losses'][-1]:.4f}; model in {out_dir}")


@train_app.command("rl")
@options(RLTrainConfig)
def train_rl(
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for the trained policy."),
    model: str = typer.Option(..., "--model", "-m", help="Starting policy and KL reference "
                              "(usually hf:runs/x/sft-model)."),
    pm: Optional[Path] = typer.Option(None, help="Preference model from cai train pm."),
    feedback: str = typer.Option("smollm2", help="Feedback model for direct and constrained."),
    prompts: str = typer.Option("bundled:redteam", "--prompts", "-p"),
    helpful: Optional[str] = typer.Option("bundled:helpful", help="Helpfulness prompts to mix in."),
    limit: Optional[int] = typer.Option(32, help="Red-team prompts to use."),
    constitution_file: str = ConstitutionOpt,
    config: RLTrainConfig = None,
) -> None:
    """RL-CAI with TRL's RLOOTrainer: preference-model reward, KL penalty to the reference,
    the over-training monitor logged every step."""
    from .redteam import resolve_prompts
    from .train.rl import build_prompts, train_rl as run

    red = resolve_prompts(prompts, None, limit)
    helps = resolve_prompts(helpful, None, None) if helpful else []
    m = run(build_prompts(red, helps, config.helpful_ratio, config.seed), out_dir, model, config,
            pm=pm, feedback=feedback, constitution=_load(constitution_file))
    last = m["monitor"][-1] if m["monitor"] else {}
    out.print(f"trained {m['steps']} steps; last batch: reward {last.get('reward_raw', 0):.3f}, "
              f"boilerplate {last.get('boilerplate_rate', 0):.2f}, distinct-2 "
              f"{last.get('distinct_2', 0):.2f}; model in {out_dir}")


@eval_app.command("robustness")
def eval_robustness(
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for robustness.json/.jsonl."),
    model: str = ModelOpt,
    feedback: str = FeedbackOpt,
    prompts: str = typer.Option("bundled:redteam", "--prompts", "-p"),
    column: Optional[str] = typer.Option(None),
    limit: Optional[int] = typer.Option(24),
    mutations: str = typer.Option("paraphrase,roleplay,multiturn",
                                  help="Comma-separated: paraphrase, roleplay, fiction, "
                                  "hypothetical, obfuscate, multiturn."),
    judge_principles: int = typer.Option(1, min=1),
    max_new_tokens: int = typer.Option(128),
    constitution_file: str = typer.Option("default", "--constitution", "-c"),
    seed: int = typer.Option(0),
    batch_size: int = typer.Option(32),
) -> None:
    """Violation rate of the same harmful prompts, plain and under each mutation."""
    from .backends.base import Sampling
    from .evaluation.robustness import robustness
    from .redteam import resolve_prompts

    m = robustness(model, feedback, resolve_prompts(prompts, column, limit),
                   [x.strip() for x in mutations.split(",") if x.strip()],
                   _load(constitution_file), out_dir,
                   Sampling(max_new_tokens=max_new_tokens, temperature=0), judge_principles,
                   seed, batch_size)
    table = Table(title=f"violation rate by mutation: {model}")
    for col in ("mutation", "rate", "95% CI", "n"):
        table.add_column(col)
    for op, v in m["per_mutation"].items():
        table.add_row(op, f"{v['rate']:.3f}", f"{v['ci95'][0]:.2f}–{v['ci95'][1]:.2f}", str(v["n"]))
    out.print(table)


@eval_app.command("regress")
def eval_regress(
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for regress.json/.jsonl."),
    model_a: str = typer.Option(..., "--a", help="Model A (the baseline)."),
    model_b: Optional[str] = typer.Option(None, "--b", help="Model B (default: A again, "
                                          "under --constitution-b)."),
    cases: Optional[Path] = typer.Option(None, help="Cases JSONL: prompt, principles, expect "
                                         "(default: our bundled suite)."),
    constitution_a: str = typer.Option("default", help="Constitution for A's judging."),
    constitution_b: Optional[str] = typer.Option(None, help="Constitution for B (default: A's)."),
    feedback: str = FeedbackOpt,
    max_new_tokens: int = typer.Option(128),
    batch_size: int = typer.Option(32),
) -> None:
    """Regression suite tied to principle ids: which principles regressed from A to B
    (two models, or one model judged under two constitution versions)."""
    from .evaluation.robustness import regress

    ca = _load(constitution_a)
    result = regress(model_a, model_b or model_a, ca, _load(constitution_b) if constitution_b else ca,
                     out_dir, cases=cases, feedback=feedback, max_new_tokens=max_new_tokens,
                     batch_size=batch_size)
    table = Table(title="pass rate by principle (A → B)")
    for col in ("principle", "A", "B", "cases", "regressed"):
        table.add_column(col)
    for pid, v in result["principles"].items():
        table.add_row(pid, f"{v['pass_rate_a']:.2f}", f"{v['pass_rate_b']:.2f}", str(v["cases"]),
                      ", ".join(v["regressed_cases"]))
    out.print(table)
    out.print("regressed: " + (", ".join(result["regressed"]) or "none"))


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
                                           "errors.jsonl (every disagreement) here."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Also measure the model "
                                        "judge with this model."),
) -> None:
    """Agreement of the refusal classifier (and optionally the model judge) with people's
    labels: accuracy, Cohen's kappa, per-class precision and recall, confusion table.
    XSTest files count a full or partial refusal as a refusal, as XSTest does."""
    from .backends import load_backend
    from .evaluation.refusal import agreement
    from .records import write_jsonl

    runs = [("classifier", None)] + ([(f"judge {model}", load_backend(model))] if model else [])
    report = {}
    for name, backend in runs:
        a = agreement(data, backend, split=split)
        report[name] = {k: v for k, v in a.items() if k != "errors"}
        out.print(f"{name}: accuracy {a['accuracy']:.3f} (95% CI {a['ci95'][0]:.3f}–{a['ci95'][1]:.3f}), "
                  f"kappa {a['kappa']:.3f} on {a['n']} answers; {len(a['errors'])} errors")
        table = Table(title=f"{name}: label (rows) × predicted (columns)")
        classes = list(a["confusion"])
        for col in ["label", *classes, "precision", "recall"]:
            table.add_column(col)
        for c in classes:
            pc = a["per_class"][c]
            table.add_row(c, *(str(a["confusion"][c][d]) for d in classes),
                          _fmt(pc["precision"]), _fmt(pc["recall"]))
        out.print(table)
        if "three_way" in a:
            t = a["three_way"]
            out.print(f"  three ways (complied / full / partial): accuracy {t['accuracy']:.3f}, "
                      f"partial precision {_fmt(t['per_class']['partial']['precision'])}, "
                      f"recall {_fmt(t['per_class']['partial']['recall'])}")
        if "partial_recall" in a:
            out.print(f"  partial refusals counted as refusals: {a['partial_recall']['recall']:.3f} "
                      f"of {a['partial_recall']['n']}")
        if out_dir:
            slug = name.split()[0]
            write_jsonl(out_dir / f"errors-{slug}.jsonl", a["errors"])
    if out_dir:
        (out_dir / "agreement.json").write_text(json.dumps(report, indent=2) + "\n")
        out.print(f"wrote {out_dir / 'agreement.json'} and the errors beside it")


@eval_app.command("overtraining")
def eval_overtraining(
    responses: Path = typer.Argument(..., help="A generate/pairs JSONL (or verdicts.jsonl)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Write overtraining.json."),
) -> None:
    """Boilerplate rate, distinct-1/2, length and refusal rate of a set of responses, with
    warnings where a figure crosses its threshold."""
    from .evaluation.overtraining import measure_file

    stats, warn = measure_file(responses, out_dir)
    for k, v in stats.items():
        out.print(f"{k:18} {v:.3f}" if isinstance(v, float) else f"{k:18} {v}")
    for w in warn:
        out.print(f"[yellow]warning:[/yellow] {w}")


DataOpt = typer.Option(..., help="Comparisons: our labels/preferences JSONL, HH-RLHF "
                       "(.jsonl or .jsonl.gz), or a BIG-bench HHH task.json.")
FormatOpt = typer.Option("auto", "--format", help="auto, ours, hh or hhh.")


def _print_summary(title: str, summary: dict) -> None:
    acc = summary["accuracy"]
    lo, hi = summary["ci95"]
    acc_s = "n/a" if acc is None else f"{acc:.3f} [{lo:.3f}, {hi:.3f}]"
    ece = "n/a" if summary["ece"] is None else f"{summary['ece']:.3f}"
    out.print(f"{title}: accuracy {acc_s} on {summary['n']}, ECE {ece}")


@eval_app.command("pm")
def eval_pm(
    pm: Path = typer.Option(..., help="Preference model folder from cai train pm."),
    data: Path = DataOpt,
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for eval_pm.json/.jsonl."),
    fmt: str = FormatOpt,
    limit: Optional[int] = typer.Option(None, help="Use only the first N comparisons."),
    batch_size: int = typer.Option(8),
) -> None:
    """Preference-model accuracy and calibration (ECE, reliability bins) on comparisons."""
    from .comparisons import load_comparisons
    from .evaluation.preference import eval_pm as run
    from .pm import PreferenceModel

    rows = load_comparisons(data, fmt, limit)  # type: ignore[arg-type]
    m = run(PreferenceModel.load(pm, batch_size=batch_size), rows, out_dir, source=str(data))
    _print_summary(f"preference model on {m['n_comparisons']} comparisons", m)
    out.print(f"metrics in {out_dir / 'eval_pm.json'}")


@eval_app.command("labeler")
def eval_labeler(
    data: Path = DataOpt,
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for eval_labeler.json/.jsonl."),
    model: str = ModelOpt,
    constitution_file: str = typer.Option("default", "--constitution", "-c"),
    fmt: str = FormatOpt,
    limit: Optional[int] = typer.Option(100, help="Use only the first N comparisons."),
    cot: bool = typer.Option(True, help="Also measure the chain-of-thought labeler."),
    seed: int = typer.Option(0),
    batch_size: int = typer.Option(16),
) -> None:
    """The AI labeler's agreement with the file's labels (humans' for HH-RLHF): with and
    without order averaging, with and without chain of thought."""
    from .backends import LazyBackend
    from .comparisons import load_comparisons
    from .evaluation.preference import eval_labeler as run

    rows = load_comparisons(data, fmt, limit)  # type: ignore[arg-type]
    m = run(LazyBackend(model, batch_size=batch_size), rows, _load(constitution_file), out_dir,
            cot=(False, True) if cot else (False,), seed=seed, source=str(data))
    for key in ("direct", "cot"):
        if key in m:
            _print_summary(f"{key}, one order", m[key]["one_order"])
            _print_summary(f"{key}, both orders averaged", m[key]["averaged"])
    out.print(f"metrics in {out_dir / 'eval_labeler.json'}")


def _where(items: list[str]) -> dict[str, str] | None:
    out_ = {}
    for item in items:
        if "=" not in item:
            raise CaiError(f"--where {item!r}: expected COLUMN=VALUE, e.g. label=safe")
        k, v = item.split("=", 1)
        out_[k.strip()] = v.strip()
    return out_ or None


def _named(specs: list[str]) -> dict[str, str]:
    """'NAME=SPEC' or a bare spec (named after itself)."""
    models = {}
    for s_ in specs:
        name, _, spec = s_.partition("=") if "=" in s_ and not s_.startswith("hf:") else (s_, "", s_)
        models[name] = spec
    return models


WhereOpt = typer.Option([], "--where", help="Keep rows with COLUMN=VALUE (repeatable), e.g. "
                        "--where label=safe for XSTest.")


def _eval_run(models, harmful, borderline, helpful, out_dir, config, *, feedback, constitution_file,
              batch_size):
    from .evaluation.suite import evaluate_models

    return evaluate_models(models, harmful, borderline, helpful, out_dir, config,
                           feedback=feedback, constitution=_load(constitution_file),
                           batch_size=batch_size)


@eval_app.command("harm")
@options(EvalConfig, skip=("judge", "compare"))
def eval_harm(
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for metrics.json, verdicts.jsonl."),
    model: str = ModelOpt,
    feedback: str = FeedbackOpt,
    prompts: str = typer.Option("bundled:redteam", "--prompts", "-p", help="Harmful prompts: "
                                "bundled:redteam, or a file (AdvBench: --column goal)."),
    column: Optional[str] = typer.Option(None),
    category_column: str = typer.Option("category", help="Column holding the harm category."),
    where: list[str] = WhereOpt,
    limit: Optional[int] = typer.Option(None),
    constitution_file: str = ConstitutionOpt,
    batch_size: int = BatchOpt,
    config: EvalConfig = None,
) -> None:
    """Violation rate per harm category (Wilson intervals), judged by the feedback model
    under the constitution, naming the violated principle; plus refusal classes."""
    from .redteam import resolve_prompts

    rows = resolve_prompts(prompts, column, limit, _where(where), category_column)
    m = _eval_run({"model": model}, rows, [], [], out_dir, config.model_copy(update={"compare": False}),
                  feedback=feedback, constitution_file=constitution_file, batch_size=batch_size)
    v = m["per_model"]["model"]["violation"]["all"]
    out.print(f"violation rate {v['rate']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}] on "
              f"{v['n']}; evasive {m['per_model']['model']['evasive_on_harmful']['rate']:.3f}; "
              f"metrics in {out_dir / 'metrics.json'}")


@eval_app.command("refusals")
@options(EvalConfig, skip=("judge", "compare", "judge_principles"))
def eval_refusals(
    out_dir: Path = typer.Option(..., "--out", "-o"),
    model: str = ModelOpt,
    benign: str = typer.Option("bundled:borderline", help="Benign look-alikes: "
                               "bundled:borderline or a file (XSTest: --where label=safe)."),
    harmful: Optional[str] = typer.Option("bundled:redteam", help="Harmful prompts, for the "
                                          "evasive-refusal rate ('' to skip)."),
    column: Optional[str] = typer.Option(None, help="Text column of the benign file."),
    category_column: str = typer.Option("category", help="Its category column (XSTest: type)."),
    where: list[str] = WhereOpt,
    limit: Optional[int] = typer.Option(None, help="At most N prompts from each set."),
    batch_size: int = BatchOpt,
    config: EvalConfig = None,
) -> None:
    """False-refusal rate on benign look-alikes and evasive-refusal rate on harmful prompts."""
    from .redteam import resolve_prompts

    b = resolve_prompts(benign, column, limit, _where(where), category_column)
    h = resolve_prompts(harmful, None, limit) if harmful else []
    m = _eval_run({"model": model}, h, b, [], out_dir,
                  config.model_copy(update={"judge": False, "compare": False}), feedback=model,
                  constitution_file="default", batch_size=batch_size)
    pm_ = m["per_model"]["model"]
    out.print(f"false-refusal rate {pm_['false_refusal']['rate']:.3f} on {pm_['false_refusal']['n']}"
              + (f"; evasive on harmful {pm_['evasive_on_harmful']['rate']:.3f}" if h else "")
              + f"; metrics in {out_dir / 'metrics.json'}")


@eval_app.command("compare")
@options(EvalConfig, skip=("judge", "compare", "judge_principles"))
def eval_compare(
    models: list[str] = typer.Argument(..., help="Two or more models: NAME=SPEC or SPEC."),
    out_dir: Path = typer.Option(..., "--out", "-o"),
    feedback: str = FeedbackOpt,
    harmful: str = typer.Option("bundled:redteam", help="Prompts for harmlessness."),
    helpful: str = typer.Option("bundled:helpful", help="Prompts for helpfulness."),
    limit: int = typer.Option(24, help="Prompts from each set."),
    constitution_file: str = ConstitutionOpt,
    batch_size: int = BatchOpt,
    config: EvalConfig = None,
) -> None:
    """Pairwise comparisons by the feedback model (both orders): win rates and Elo with
    bootstrap intervals, for harmlessness and helpfulness separately."""
    from .redteam import resolve_prompts

    named = _named(models)
    if len(named) < 2:
        raise CaiError("cai eval compare needs at least two models")
    m = _eval_run(named, resolve_prompts(harmful, None, limit), [],
                  resolve_prompts(helpful, None, limit), out_dir,
                  config.model_copy(update={"judge": False, "compare": True}), feedback=feedback,
                  constitution_file=constitution_file, batch_size=batch_size)
    table = Table(title="Elo (first model = 0)")
    for col in ("model", "harmlessness Elo", "95% CI", "helpfulness Elo", "95% CI"):
        table.add_column(col)
    for name, pm_ in m["per_model"].items():
        h, u = pm_["elo_harmless"], pm_["elo_helpful"]
        table.add_row(name, f"{h['elo']:.0f}", f"{h['ci95'][0]:.0f}…{h['ci95'][1]:.0f}",
                      f"{u['elo']:.0f}", f"{u['ci95'][0]:.0f}…{u['ci95'][1]:.0f}")
    out.print(table)


# -- the pipeline ------------------------------------------------------------------------

@app.command("run")
def run_pipeline(
    config: str = typer.Argument(..., help="Pipeline TOML, or the name of a packaged one "
                                 "(demo)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o",
                                           help="Run folder (default runs/<name>)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key, e.g. "
                                   "--set sft.max_steps=4 (repeatable)."),
    only: list[str] = typer.Option([], "--only", help="Run only these stages (repeatable)."),
) -> None:
    """Run the whole method: prompts → judge check → critique → SFT → pairs → labels → PM → DPO →
    evaluation → report. Stages already done with the same inputs are skipped; after an
    interruption, the same command resumes."""
    from .pipeline import Run, load_config, resolve_config

    cfg = load_config(resolve_config(config), set_)
    root = out_dir or Path("runs") / cfg.name
    results = Run(cfg, root).run(only or None, echo=lambda line: out.print(line, markup=False))
    ev = results.get("eval", {}).get("summary") or {}
    if ev.get("summary"):
        _summary_table(ev["summary"])
        judge = results.get("judge", {}).get("summary") or {}
        bad = [r for r in ("preference", "harm") if judge.get(r) and not judge[r]["informative"]]
        if bad:
            out.print("The (judge) columns are uninformative: the feedback model was not better "
                      "than chance on the clear-cut calibration cases. The report says what the "
                      "judge-free figures show.")
    if "report" in results:
        out.print(f"report: {results['report']['summary']['report']}")


def _summary_table(rows: list[dict]) -> None:
    table = Table(title="base vs SL-CAI vs RL-CAI on held-out prompts",
                  caption="On harmful prompts unless noted; * judged by the feedback model.")
    for col in ("model", "refused", "explained", "evasive", "false refusal (borderline)",
                "words", "harm*", "Elo harmless*", "Elo helpful*"):
        table.add_column(col, overflow="fold")
    f = lambda x, d=3: "–" if x is None else f"{x:.{d}f}"
    for r in rows:
        table.add_row(r["model"], f(r.get("refused_harmful")), f(r.get("explained_harmful")),
                      f(r["evasive_rate"]), f(r["false_refusal_rate"]), f(r.get("mean_words"), 1),
                      f(r["violation_rate"]), f(r["elo_harmless"], 0), f(r["elo_helpful"], 0))
    out.print(table)


@app.command("status")
def run_status(run: Path = typer.Argument(..., help="Run folder.")) -> None:
    """Each stage of a run: done, incomplete or pending, with records and time."""
    from .pipeline import status

    table = Table(title=str(run))
    for col in ("stage", "state", "records", "seconds", "finished"):
        table.add_column(col)
    for r in status(run):
        table.add_row(r["stage"], r["state"], str(r["records"] or ""),
                      "" if r["seconds"] is None else f"{r['seconds']:.0f}",
                      r["finished_at"] or "")
    out.print(table)


@app.command("report")
def report_cmd(run: Path = typer.Argument(..., help="Run folder."),
               output: Optional[Path] = typer.Option(None, "--output",
                                                     help="HTML path (default RUN/report.html).")) -> None:
    """Write one self-contained HTML page for a run (no network, model text escaped)."""
    from .report import write_report

    out.print(f"report: {write_report(run, out=output)}")


# -- audit ----------------------------------------------------------------------------

DbOpt = typer.Option(Path("audit.db"), "--db", help="The audit database (SQLite).")


@audit_app.command("sample")
def audit_sample(
    run: Path = typer.Argument(..., help="Run folder (from `cai run`)."),
    n: int = typer.Option(100, "--n", min=1, help="How many items to sample."),
    kinds: str = typer.Option("label,harm,critique", help="Which judgments: label, harm, critique."),
    low_weight: float = typer.Option(3.0, help="Oversampling weight of low-confidence strata."),
    seed: int = typer.Option(0),
    db: Path = DbOpt,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the sample as JSONL."),
) -> None:
    """Draw a stratified sample (kind × category × principle × confidence band) of a run's
    AI judgments, low-confidence ones oversampled, and add it to the audit database."""
    from .audit.sample import sample_run

    result = sample_run(run, n, kinds, seed=seed, low_weight=low_weight, db=db, output=output)
    table = Table(title=f"audit sample: {result['sampled']} of {result['available']} judgments")
    for col in ("kind", "band", "sampled", "available"):
        table.add_column(col)
    for row in result["by_band"]:
        table.add_row(row["kind"], row["band"], str(row["sampled"]), str(row["available"]))
    added = result["added"]
    out.print(table)
    out.print(f"{added} new items in {db}")


@audit_app.command("serve")
def audit_serve(
    db: Path = DbOpt,
    reviewer: list[str] = typer.Option(..., "--reviewer", "-r",
                                       help="A reviewer's name; repeat for several. Each gets a link with a new token."),
    host: str = typer.Option("127.0.0.1", help="Bind address (loopback by default)."),
    port: int = typer.Option(8765),
) -> None:
    """Serve the review app. Keys: a agree, d disagree, 1/2 choose, s save, n note, j/k next/previous."""
    import uvicorn

    from .audit.app import create_app
    from .audit.db import AuditDB

    if not db.exists():
        raise CaiError(f"{db}: no audit database; run `cai audit sample RUN --db {db}` first")
    store = AuditDB(db)
    for name in reviewer:
        out.print(f"{name}: http://{host}:{port}/?token={store.new_token(name)}", markup=False)
    uvicorn.run(create_app(db), host=host, port=port, log_level="warning")


@audit_app.command("import")
def audit_import(file: Path = typer.Argument(..., help="JSONL: item_id, reviewer, label[, note, created_at]."),
                 db: Path = DbOpt) -> None:
    """Import human labels (checked in full before anything is written)."""
    from .audit.db import AuditDB

    out.print(f"imported {AuditDB(db).import_reviews(file)} reviews into {db}")


@audit_app.command("export")
def audit_export(file: Path = typer.Argument(..., help="Output JSONL."), db: Path = DbOpt) -> None:
    """Export every review with its item's kind, source and AI label."""
    from .audit.db import AuditDB

    out.print(f"exported {AuditDB(db).export(file)} reviews to {file}")


@audit_app.command("relabel")
def audit_relabel(
    db: Path = DbOpt,
    constitution_file: str = typer.Option(..., "--constitution", "-c",
                                          help="The other constitution version."),
    feedback: str = FeedbackOpt,
    batch_size: int = typer.Option(32),
) -> None:
    """Judge the audited label and harm items again under another constitution version,
    for the drift table of `cai audit report`."""
    from .audit.agreement import relabel
    from .audit.db import AuditDB
    from .backends import load_backend

    counts = relabel(AuditDB(db), load_backend(feedback), _load(constitution_file), batch_size)
    out.print(f"relabelled {counts['label']} labels and {counts['harm']} verdicts "
              f"({counts['skipped']} critique items cannot be relabelled without regenerating)")


def _ci(v) -> str:
    return "–" if v is None else f"{v[0]:.2f}–{v[1]:.2f}"


@audit_app.command("report")
def audit_report(db: Path = DbOpt,
                 output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the figures as JSON."),
                 seed: int = typer.Option(0)) -> None:
    """AI–human agreement (accuracy, Cohen's kappa, 95% intervals) per kind, principle and
    category; human–human agreement; drift across constitution versions."""
    from .audit.agreement import agreement
    from .audit.db import AuditDB

    if not db.exists():
        raise CaiError(f"{db}: no audit database")
    r = agreement(AuditDB(db), seed)
    if output:
        output.write_text(json.dumps(r, indent=2), encoding="utf-8")
    out.print(f"{r['reviewed_items']} of {r['items']} items reviewed by {', '.join(r['reviewers']) or 'nobody'}")
    if not r["reviewed_items"]:
        return
    for by in ("overall", "kind", "principle", "category"):
        table = Table(title=f"AI–human agreement by {by}")
        for col in (by, "n", "accuracy", "95% CI", "kappa", "95% CI"):
            table.add_column(col)
        for k, v in r[by].items():
            table.add_row(k, str(v["n"]), "–" if v["accuracy"] is None else f"{v['accuracy']:.2f}",
                          _ci(v["accuracy_interval"]), "–" if v["kappa"] is None else f"{v['kappa']:.2f}",
                          _ci(v["kappa_interval"]))
        out.print(table)
    hh = r["human_human"]
    if hh["n"]:
        out.print(f"human–human: {hh['n']} shared judgments, kappa "
                  f"{'–' if hh['kappa'] is None else format(hh['kappa'], '.2f')} ({_ci(hh['kappa_interval'])})")
    for d in r["drift"]:
        out.print(f"drift {d['a_name']}@{d['a']} → {d['b_name']}@{d['b']}: {d['flips']} of {d['items']} "
                  f"AI labels changed ({d['flip_rate']:.2f}, {_ci(d['flip_rate_interval'])}); "
                  f"agreement with humans {_fmt(d['agreement_a']['accuracy'])} → {_fmt(d['agreement_b']['accuracy'])}",
                  markup=False)


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.2f}"


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
