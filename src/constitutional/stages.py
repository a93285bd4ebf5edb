"""The pipeline's stages: each takes the ``Run`` and returns a summary for its marker.

They call the same library functions the single-stage commands call, with the run's
paths and config; ``overwrite`` is False when resuming an interrupted attempt of the
same stage (keep its records) and True when the inputs changed (replace them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backends import LazyBackend
from .errors import CaiError
from .hashing import content_hash
from .prompts import Prompt, load_prompts
from .records import read_jsonl, write_jsonl

if TYPE_CHECKING:
    from .pipeline import Run

SETS = ("train_redteam", "train_helpful", "eval_harmful", "eval_borderline", "eval_helpful")


def _ray(c) -> tuple[int, str | None]:
    return c.ray.workers, c.ray.address or None


def _split(prompts: list[Prompt], n_eval: int, n_train: int, seed: int):
    """Held-out evaluation prompts first, by a seeded hash order; never in training."""
    order = sorted(prompts, key=lambda p: content_hash([seed, p.id, "split"]))
    return order[n_eval : n_eval + n_train], order[:n_eval]


def _write_prompts(path, prompts: list[Prompt]) -> int:
    return write_jsonl(path, [{"messages": [m.model_dump() for m in p.messages],
                               "category": p.category, "source": p.source} for p in prompts])


def load_set(run: "Run", name: str) -> list[Prompt]:
    path = run.layout.prompt_set(name)
    if not path.is_file() or not path.read_text().strip():
        return []
    return load_prompts(path)


def prompts(run: "Run", overwrite: bool) -> dict[str, Any]:
    from .redteam import build_redteam, resolve_prompts

    c, cp = run.config, run.config.prompts
    red = resolve_prompts(cp.redteam)
    train_red, eval_harm = _split(red, cp.eval_harmful, cp.train_redteam, cp.seed)
    helpful = resolve_prompts(cp.helpful) if cp.train_helpful + cp.eval_helpful else []
    train_help, eval_help = _split(helpful, cp.eval_helpful, cp.train_helpful, cp.seed)
    border = resolve_prompts(cp.borderline)[: cp.eval_borderline] if cp.eval_borderline else []
    grow = c.redteam.generate_per_category or c.redteam.mutations
    if grow:
        summary = build_redteam(train_red, run.layout.grown, c.redteam,
                                backend=_backend(run, c.models.policy))
        train_red = load_prompts(run.layout.grown / "redteam.jsonl")
    counts = {}
    for name, rows in zip(SETS, (train_red, train_help, eval_harm, border, eval_help)):
        counts[name] = _write_prompts(run.layout.prompt_set(name), rows)
    return {"prompts": sum(counts.values()), **counts, **({"grown": summary} if grow else {})}


def _backend(run: "Run", spec: str) -> LazyBackend:
    c = run.config
    return LazyBackend(spec, c.models.batch_size, *_ray(c))


def judge(run: "Run", overwrite: bool) -> dict[str, Any]:
    """The feedback model on the bundled clear-cut cases, before any of its verdicts is used."""
    import json

    from .evaluation.judge_check import check_judge, one_line

    check = check_judge(_backend(run, run.config.models.feedback), run.constitution)
    path = run.layout.judge_check
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(check, indent=2) + "\n")
    tmp.replace(path)
    return {"line": one_line(check),
            **{role: {k: check[role][k] for k in ("accuracy", "ci95", "flip_rate", "informative", "n")}
               for role in ("preference", "harm")}}


def critique(run: "Run", overwrite: bool) -> dict[str, Any]:
    from .critique import run_critique

    c = run.config
    return run_critique(_backend(run, c.models.policy), load_set(run, "train_redteam"),
                        run.constitution, run.layout.critique_dir, c.critique,
                        chunk_size=c.models.batch_size, overwrite=overwrite)


def helpful(run: "Run", overwrite: bool) -> dict[str, Any]:
    from .generate import generate

    c = run.config
    rows = load_set(run, "train_helpful")
    if not rows:
        return {"records": 0}
    return generate(_backend(run, c.models.policy), rows, run.layout.helpful_dir, c.helpful,
                    batch_size=c.models.batch_size, overwrite=overwrite)


def sft_data(run: "Run", overwrite: bool) -> dict[str, Any]:
    from .sft_data import build_sft

    help_file = run.layout.helpful
    return build_sft(run.layout.critique, run.layout.sft_dir, run.config.sft_data,
                     helpful=help_file if help_file.is_file() else None)


def sft(run: "Run", overwrite: bool) -> dict[str, Any]:
    from .train.sft import train_sft

    c = run.config
    m = train_sft(run.layout.sft, run.layout.model("sft"), c.models.policy, c.sft)
    return {"steps": m["steps"], "losses": m["losses"]}


def pairs(run: "Run", overwrite: bool) -> dict[str, Any]:
    from .generate import generate

    c = run.config
    prompts = load_set(run, "train_redteam") + load_set(run, "train_helpful")
    return generate(_backend(run, run.sft_spec), prompts, run.layout.rlaif, c.pairs,
                    batch_size=c.models.batch_size, overwrite=overwrite, stage_name="pairs")


def label(run: "Run", overwrite: bool) -> dict[str, Any]:
    from .feedback import pairs_from_generations, run_label

    c = run.config
    return run_label(_backend(run, c.models.feedback),
                     pairs_from_generations(read_jsonl(run.layout.pairs)),
                     run.constitution, run.layout.rlaif, c.label,
                     chunk_size=c.models.batch_size, overwrite=overwrite)


def pm(run: "Run", overwrite: bool) -> dict[str, Any]:
    from .comparisons import load_comparisons
    from .evaluation.preference import eval_pm
    from .pm import PreferenceModel
    from .train.pm import train_pm

    c, pc = run.config, run.config.pm
    if not pc.enabled:
        return {"skipped": "pm.enabled = false"}
    rows = load_comparisons(run.layout.labels)
    held = {r["id"] for r in rows
            if int(content_hash([pc.seed, r["id"], "holdout"])[:8], 16) / 16**8 < pc.holdout}
    train = [r for r in rows if r["id"] not in held] or rows
    test = [r for r in rows if r["id"] in held]
    write_jsonl(run.layout.pm_train, train)
    m = train_pm(run.layout.pm_train, run.layout.model("pm"), c.models.policy,
                 pc.training())
    summary: dict[str, Any] = {"steps": m["steps"], "losses": m["losses"], "train": len(train),
                               "held_out": len(test)}
    if test:
        metrics = eval_pm(PreferenceModel.load(run.layout.model("pm")), test, run.layout.pm_eval,
                          source="held-out AI labels")
        summary["eval"] = {k: metrics[k] for k in ("accuracy", "ece", "n")}
    return summary


def rl(run: "Run", overwrite: bool) -> dict[str, Any]:
    from .train.dpo import train_dpo

    c, r = run.config, run.config.rl
    if r.method == "none":
        return {"skipped": "rl.method = none"}
    if r.method == "rloo":
        from .train.rl import build_prompts, train_rl

        if not c.pm.enabled:
            raise CaiError("rl.method = 'rloo' needs the preference model (pm.enabled = true)")
        prompts = build_prompts(load_set(run, "train_redteam"), load_set(run, "train_helpful"),
                                r.rloo.helpful_ratio, r.rloo.seed)
        m = train_rl(prompts, run.layout.model("rl"), run.sft_spec, r.rloo,
                     pm=run.layout.model("pm"), feedback=c.models.feedback,
                     constitution=run.constitution)
        return {"steps": m["steps"], "losses": m["losses"], "method": "rloo",
                "monitor_last": m["monitor"][-1] if m["monitor"] else None}
    m = train_dpo(run.layout.labels, run.layout.model("rl"), run.sft_spec, r.dpo)
    return {"steps": m["steps"], "losses": m["losses"], "method": r.method,
            "rows": m["provenance"]["config"]["rows"]}


def eval(run: "Run", overwrite: bool) -> dict[str, Any]:
    from .evaluation.suite import evaluate_models, harm_by_round

    c = run.config
    models = {"base": c.models.policy, "sl-cai": run.sft_spec}
    if run.rl_spec:
        models["rl-cai"] = run.rl_spec
    if overwrite:
        import shutil

        shutil.rmtree(run.layout.eval, ignore_errors=True)  # models changed: answer afresh
    metrics = evaluate_models(models, load_set(run, "eval_harmful"), load_set(run, "eval_borderline"),
                              load_set(run, "eval_helpful"), run.layout.eval, c.eval,
                              feedback=c.models.feedback, constitution=run.constitution,
                              batch_size=c.models.batch_size)
    if run.layout.critique.is_file():
        trajectories = read_jsonl(run.layout.critique)
        harm_by_round(c.models.feedback, trajectories, run.constitution, run.layout.eval,
                      1, c.models.batch_size)
    return {"models": list(models), "summary": summary_rows(metrics)}


def summary_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, m in metrics["per_model"].items():
        free = m.get("judge_free") or {}
        rows.append({"model": name,
                     "refused_harmful": (free.get("harmful") or {}).get("refused", {}).get("rate"),
                     "explained_harmful": (free.get("harmful") or {}).get(
                         "refused_explained", {}).get("rate"),
                     "mean_words": (free.get("harmful") or {}).get("mean_words"),
                     "violation_rate": m["violation"].get("all", {}).get("rate"),
                     "false_refusal_rate": m["false_refusal"]["rate"],
                     "evasive_rate": m["evasive_on_harmful"]["rate"],
                     "elo_harmless": (m.get("elo_harmless") or {}).get("elo"),
                     "elo_helpful": (m.get("elo_helpful") or {}).get("elo")})
    return rows


def report(run: "Run", overwrite: bool) -> dict[str, Any]:
    from .report import write_report

    path = write_report(run.root, provenance=run.provenance())
    return {"report": str(path)}
