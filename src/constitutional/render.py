"""What the commands print: every Rich table and summary line. The command line parses and
calls the library; what it shows of the result is here."""

from __future__ import annotations

import json
from typing import Any, Iterable

from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console()


def fmt(x: Any, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def ci(v: Any, digits: int = 2) -> str:
    return "–" if v is None else f"{v[0]:.{digits}f}–{v[1]:.{digits}f}"


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]], **kw: Any) -> None:
    t = Table(title=title, **kw)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*(str(x) for x in row))
    out.print(t)


def line(text: str) -> None:
    """Model or file text: printed as is, never read as Rich markup."""
    out.print(text, markup=False, highlight=False)


# One summary line per command whose result is a manifest: a format string over ``m`` (the
# result), ``at`` (the output folder), ``loss`` (a trainer's last) and ``last`` (RLOO's last
# batch).
SAID = {
    "generate": "{m[records]} records in {at}/generate.jsonl",
    "pairs": "{m[records]} pairs in {at}/pairs.jsonl",
    "critique": "{m[records]} trajectories in {at}/critique.jsonl ({m[revisions]} revisions, "
                "{m[skipped]} skipped)",
    "sft-data": "{m[rows]} rows ({m[harmless]} harmless, {m[helpful]} helpful) in {m[sft]}; "
                "{m[preference_pairs]} pairs in {m[preferences]}",
    "label": "{m[records]} labelled pairs in {at}/labels.jsonl; mean p(first shown) "
             "{m[position_bias][mean_p_first_shown]:.3f}, order flip rate "
             "{m[position_bias][flip_rate]:.3f}",
    "train sft": "trained {m[steps]} steps, last loss {loss:.4f}; model in {at} (use "
                 "--model hf:{at})",
    "train pm": "trained {m[steps]} steps on {m[provenance][config][rows]} comparisons, last "
                "loss {loss:.4f}; preference model in {at}",
    "train dpo": "trained {m[steps]} steps on {m[provenance][config][rows]} pairs "
                 "({m[provenance][config][dropped]} dropped as unsure), last loss "
                 "{loss:.4f}; model in {at}",
    "train rl": "trained {m[steps]} steps; last batch: reward {last[reward_raw]:.3f}, "
                  "boilerplate {last[boilerplate_rate]:.2f}, distinct-2 {last[distinct_2]:.2f}; "
                  "model in {at}",
    "eval harm": "violation rate {m[violation][all][rate]:.3f} [{m[violation][all][ci95][0]:.3f}, "
                 "{m[violation][all][ci95][1]:.3f}] on {m[violation][all][n]}; evasive "
                 "{m[evasive_on_harmful][rate]:.3f}; metrics in {at}/metrics.json",
    "audit relabel": "relabelled {m[label]} labels and {m[harm]} verdicts ({m[skipped]} critique "
                     "items cannot be relabelled without regenerating)",
}


def said(kind: str, m: dict[str, Any], at: Any) -> None:
    """A command's summary line (``SAID``), after the warnings its stage recorded."""
    warnings(m)
    last = {"reward_raw": 0, "boilerplate_rate": 0, "distinct_2": 0,
            **((m.get("monitor") or [{}])[-1] if kind == "train rl" else {})}
    loss = (m.get("losses") or [float("nan")])[-1]
    line(SAID[kind].format(m=m, at=at, last=last, loss=loss))
    if kind == "critique":
        revision_quality(m.get("quality") or [])
    if kind == "sft-data" and "dropped" in m:
        reasons = ", ".join(f"{k} {v}" for k, v in m["dropped_by_reason"].items()) or "none"
        line(f"dropped {m['dropped']} harmlessness rows ({m['drop_rate']:.0%}) whose revision "
             f"failed the checks ({reasons})")


def metrics_in(path: Any) -> None:
    line(f"metrics in {path}")


def validated(file: str, c: Any) -> None:
    line(f"ok: {file}: {len(c.principles)} principles, {len(c.categories())} categories, "
         f"hash {c.hash}")
    if c.overdue():
        out.print(f"[yellow]warning:[/yellow] {escape(c.overdue())}")


def constitution(c: Any, full: bool) -> None:
    cols = ["id", "name", "priority", "categories", "locales"] + (
        ["critique", "revision", "comparison"] if full else [])
    table(f"{c.name} v{c.version} ({c.hash})", cols,
          ([p.id, p.name, p.priority, ", ".join(p.categories), ", ".join(p.locales) or "–"]
           + ([p.critique, p.revision, p.comparison] if full else []) for p in c.principles),
          show_lines=full)
    if c.owners or c.reviewed:
        due = c.review_due()
        line(f"owners: {', '.join(c.owners) or 'none named'}; reviewed {c.reviewed or 'never'}"
             + (f", next review due {due}" if due else ""))


def constitution_diff(d: dict[str, Any], as_json: bool = False) -> None:
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
    for field, v in d.get("ownership", {}).items():
        line(f"~ {field}: {v['a']} -> {v['b']}")
    if not (d["added"] or d["removed"] or d["changed"] or d["metadata"] or d.get("ownership")):
        out.print("no changes")


def coverage(summary: dict[str, Any], at: Any) -> None:
    origins = sorted({k for row in summary["coverage"].values() for k in row} - {"total"})
    table(f"{summary['prompts']} prompts ({summary['dropped_duplicates']} duplicates dropped)",
          ["category", *origins, "total"],
          ([cat, *(row.get(o, 0) for o in [*origins, "total"])]
           for cat, row in summary["coverage"].items()))
    line(f"wrote {at}/redteam.jsonl and {at}/coverage.json")


def revision_quality(rows: list[dict[str, Any]]) -> None:
    from .evaluation.revisions import format_table

    out.print("What the revisions would teach, by round (0 = the drafts; echo: repeats its "
              "critique; meta: talks about the answer instead of answering):")
    for text in format_table(rows):
        line(text)


def warnings(manifest: dict[str, Any]) -> None:
    """Truncations and other per-record warnings of a stage: once, with the count."""
    from .store import warning_lines

    for text in warning_lines(manifest):
        out.print(f"[yellow]warning:[/yellow] {text}", highlight=False)


def violation_by_mutation(title: str, per: dict[str, Any]) -> None:
    table(title, ("mutation", "rate", "95% CI", "n"),
          ([op, fmt(v["rate"], 3), ci(v["ci95"]), v["n"]] for op, v in per.items()))


def regressions(result: dict[str, Any]) -> None:
    table("pass rate by principle (A → B)", ("principle", "A", "B", "cases", "regressed"),
          ([pid, fmt(v["pass_rate_a"]), fmt(v["pass_rate_b"]), v["cases"],
            ", ".join(v["regressed_cases"])] for pid, v in result["principles"].items()))
    out.print("regressed: " + (", ".join(result["regressed"]) or "none"))


def agreements(results: dict[str, dict[str, Any]], at: Any) -> None:
    for name, a in results.items():
        agreement(name, a)
    if at:
        line(f"wrote {at}/agreement.json and the errors beside it")


def overtraining(stats: dict[str, Any], warned: list[str]) -> None:
    for k, v in stats.items():
        line(f"{k:18} {v:.3f}" if isinstance(v, float) else f"{k:18} {v}")
    for w in warned:
        out.print(f"[yellow]warning:[/yellow] {escape(w)}")


def feedback_agreement(m: dict[str, Any], at: Any) -> None:
    for key in ("direct", "cot"):
        if key in m:
            calibration(f"{key}, one order", m[key]["one_order"])
            calibration(f"{key}, both orders averaged", m[key]["averaged"])
    metrics_in(f"{at}/eval_feedback.json")


def refusals(m: dict[str, Any], harmful: bool, at: Any) -> None:
    line(f"false-refusal rate {m['false_refusal']['rate']:.3f} on {m['false_refusal']['n']}"
         + (f"; evasive on harmful {m['evasive_on_harmful']['rate']:.3f}" if harmful else "")
         + f"; metrics in {at}/metrics.json")


def agreement(name: str, a: dict[str, Any]) -> None:
    out.print(f"{name}: accuracy {a['accuracy']:.3f} (95% CI {ci(a['ci95'], 3)}), "
              f"kappa {a['kappa']:.3f} on {a['n']} answers; {a['n_errors']} errors")
    classes = list(a["confusion"])
    table(f"{name}: label (rows) × predicted (columns)", [*["label"], *classes, "precision", "recall"],
          ([c, *(a["confusion"][c][d] for d in classes), fmt(a["per_class"][c]["precision"]),
            fmt(a["per_class"][c]["recall"])] for c in classes))
    if "three_way" in a:
        t = a["three_way"]["per_class"]["partial"]
        out.print(f"  three ways (complied / full / partial): accuracy "
                  f"{a['three_way']['accuracy']:.3f}, partial precision {fmt(t['precision'])}, "
                  f"recall {fmt(t['recall'])}")
    if "partial_recall" in a:
        out.print(f"  partial refusals counted as refusals: {a['partial_recall']['recall']:.3f} "
                  f"of {a['partial_recall']['n']}")


def calibration(title: str, summary: dict[str, Any], at: Any = None) -> None:
    acc = summary["accuracy"]
    acc_s = "n/a" if acc is None else f"{acc:.3f} [{ci(summary['ci95'], 3).replace('–', ', ')}]"
    ece = "n/a" if summary["ece"] is None else f"{summary['ece']:.3f}"
    out.print(f"{title}: accuracy {acc_s} on {summary['n']}, ECE {ece}")
    if summary.get("by_margin"):
        table("accuracy by reward margin (Bai et al.: calibration degrades at high reward)",
              ("margin", "n", "accuracy", "95% CI", "claimed", ""),
              ([f"{b['margin'][0]:g}–{b['margin'][1]:g}".replace("inf", "∞"), str(b["n"]),
                f"{b['accuracy']:.3f}", ci(b["ci95"], 3), f"{b['claimed']:.3f}",
                "overconfident" if b["overconfident"] else ""] for b in summary["by_margin"]))
    if at:
        metrics_in(f"{at}/eval_pm.json")


def elo(per_model: dict[str, Any]) -> None:
    table("Elo (first model = 0)",
          ("model", "harmlessness Elo", "95% CI", "helpfulness Elo", "95% CI"),
          ([name, f"{m['elo_harmless']['elo']:.0f}", ci(m["elo_harmless"]["ci95"], 0).replace("–", "…"),
            f"{m['elo_helpful']['elo']:.0f}", ci(m["elo_helpful"]["ci95"], 0).replace("–", "…")]
           for name, m in per_model.items()))


def capability(metrics: dict[str, Any], at: Any) -> None:
    per = metrics["per_model"]
    table("capability (lm-eval, multiple choice)",
          ("model", "task", "n", "accuracy", "95% CI", "length-normalised", "95% CI"),
          ([name, task, v["n"], fmt(v["acc"], 3), ci(v["acc_ci95"], 3), fmt(v.get("acc_norm"), 3),
            ci(v.get("acc_norm_ci95"), 3)] for name, tasks in per.items() for task, v in tasks.items()))
    if metrics["paired"]:
        table("paired on the same questions (McNemar's exact test on accuracy)",
              ("models", "task", "n", "change", "only first right", "only second right", "p"),
              ([f"{t['a']} → {t['b']}", t["task"], t["n"], f"{t['difference']:+.3f}", t["a_only"],
                t["b_only"], f"{t['p_value']:.3g}"] for t in metrics["paired"]))
    metrics_in(f"{at}/capability.json")


def self_preference(r: dict[str, Any], at: Any) -> None:
    views = [("judge", r["judge"], r["judge_view"])]
    if "reference_view" in r:
        views.append(("reference", r["reference"], r["reference_view"]))
    table(f"own answers ({r['judge']}) against {r['other']}'s, both orders",
          ("judge", "model", "pairs", "prefers own", "share", "95% CI", "mean p(own)"),
          ([role, spec, v["n"], v["prefers_own"], fmt(v["share"], 3), ci(v["ci95"], 3),
            fmt(v["mean_p_own"], 3)] for role, spec, v in views))
    if "self_preference" in r:
        s = r["self_preference"]
        out.print(f"self-preference: p(own) {s['mean_difference']:+.3f} over the reference "
                  f"(95% CI {s['ci95'][0]:+.3f} to {s['ci95'][1]:+.3f}; Wilcoxon "
                  f"p = {s['wilcoxon']['p_value']:.3g}; McNemar p = {s['mcnemar']['p_value']:.3g})")
    else:
        out.print(f"against a coin flip: p = {r['against_chance']['p_value']:.3g} "
                  f"({r['against_chance']['note']})")
    metrics_in(f"{at}/self_preference.json")


def run_results(results: dict[str, Any]) -> None:
    """What ``cai run`` ends with: the evaluation's table and where the report is."""
    from .evaluation.judge_check import uninformative

    ev = results.get("eval", {}).get("summary") or {}
    if ev.get("summary"):
        run_summary(ev["summary"], uninformative(results.get("judge", {}).get("summary") or {}))
    if "report" in results:
        line(f"report: {results['report']['summary']['report']}")


def run_summary(rows: list[dict[str, Any]], uninformative: list[str]) -> None:
    """A row per figure and a column per model, so that three models (or more) fit a
    terminal, or a log, 80 characters wide."""
    tasks = [k for k in (rows[0] if rows else {}) if k.endswith("_acc")]
    figures = [("refused (harmful)", "refused_harmful", 3),
               ("explained refusal (harmful)", "explained_harmful", 3),
               ("evasive (harmful)", "evasive_rate", 3),
               ("false refusal (borderline)", "false_refusal_rate", 3),
               ("words per answer", "mean_words", 1),
               *((t.replace("_acc", " accuracy"), t, 3) for t in tasks),
               ("harm violation rate*", "violation_rate", 3),
               ("Elo, harmlessness*", "elo_harmless", 0), ("Elo, helpfulness*", "elo_helpful", 0)]
    table("base vs SL-CAI vs RL-CAI on held-out prompts", ("", *(r["model"] for r in rows)),
          ([name, *(fmt(r.get(key), digits) for r in rows)] for name, key, digits in figures),
          caption="* judged by the feedback model.")
    if uninformative:
        out.print("The figures marked * are uninformative: the feedback model was not better "
                  "than chance on the clear-cut calibration cases. The report says what the "
                  "judge-free figures show.")


def status(run: Any, rows: list[dict[str, Any]]) -> None:
    table(str(run), ("stage", "state", "records", "seconds", "finished"),
          ([r["stage"], r["state"], r["records"] or "", fmt(r["seconds"], 0) if r["seconds"]
            is not None else "", r["finished_at"] or ""] for r in rows))


def audit_sample(result: dict[str, Any], db: Any) -> None:
    table(f"audit sample: {result['sampled']} of {result['available']} judgments",
          ("kind", "band", "sampled", "available"),
          ([r["kind"], r["band"], r["sampled"], r["available"]] for r in result["by_band"]))
    out.print(f"{result['added']} new items in {db}")


def audit_report(r: dict[str, Any]) -> None:
    out.print(f"{r['reviewed_items']} of {r['items']} items reviewed by "
              f"{', '.join(r['reviewers']) or 'nobody'}")
    if not r["reviewed_items"]:
        return
    for by in ("overall", "kind", "principle", "category"):
        table(f"AI–human agreement by {by}", (by, "n", "accuracy", "95% CI", "kappa", "95% CI"),
              ([k, v["n"], fmt(v["accuracy"]), ci(v["accuracy_interval"]), fmt(v["kappa"]),
                ci(v["kappa_interval"])] for k, v in r[by].items()))
    hh = r["human_human"]
    if hh["n"]:
        out.print(f"human–human: {hh['n']} shared judgments, kappa {fmt(hh['kappa'])} "
                  f"({ci(hh['kappa_interval'])})")
    for d in r["drift"]:
        line(f"drift {d['a_name']}@{d['a']} → {d['b_name']}@{d['b']}: {d['flips']} of "
             f"{d['items']} AI labels changed ({d['flip_rate']:.2f}, "
             f"{ci(d['flip_rate_interval'])}); agreement with humans "
             f"{fmt(d['agreement_a']['accuracy'])} → {fmt(d['agreement_b']['accuracy'])}")


def guard_trained(g: dict[str, Any], where: Any) -> None:
    table(f"guard, out of fold (threshold {g['threshold']:.3f})", ["set", "n", "blocked"],
          ([k, v["n"], f"{v['blocked']} ({v['blocked'] / max(v['n'], 1):.0%})"]
           for k, v in g["out_of_fold"].items()))
    line(f"guard in {where}")


def guard_checked(rows: list[dict[str, Any]], where: Any) -> None:
    blocked = sum(r["blocked"] for r in rows)
    unread = [r for r in rows if not r.get("read", True)]
    line(f"{blocked} of {len(rows)} prompts blocked"
         + (f"; {len(unread)} in a language the guard does not read "
            f"({', '.join(sorted({r['language'] for r in unread}))}), "
            + ("blocked" if any(r.get("reason") == "unread language" for r in unread) else "passed")
            if unread else "")
         + (f"; decisions in {where}/guard_check.jsonl" if where else ""))


def temperature_sweep(sweep: dict[str, Any] | None) -> None:
    if not sweep:
        return
    sets = ("harmful", "borderline")
    table("judge-free refusal rate by temperature", ["model", "temperature", "answers per prompt",
                                                     *(f"refused ({s})" for s in sets)],
          ([name, f"{pt['temperature']:g}", pt["samples"],
            *(fmt(pt["sets"][s]["refused"]["rate"]) if s in pt["sets"] else "–" for s in sets)]
           for name, points in sweep.items() for pt in points))


def locales(result: dict[str, Any], at: Any) -> None:
    from .evaluation.locales import cell

    for name, m in result["models"].items():
        table(f"refusals by language: {name} ({m['model']})",
              ["language", "set", "prompts", "in its language", "refused", "explained", "evasive",
               "refused vs English (p)"],
              ([loc, kind, row["prompts"], fmt(row["answered_in_locale"]["rate"]),
                cell(row.get("refused")), cell(row.get("refused_explained")),
                cell(row.get("refused_evasive")),
                (f"{row['refused']['vs_english']['difference']:+.2f} "
                 f"(p={row['refused']['vs_english']['p_value']:.3f})")
                if "vs_english" in row.get("refused", {}) else "–"]
               for loc, kinds in m["by_locale"].items() for kind, row in kinds.items()))
    unread = [lang for lang, c in result["claims"].items() if not c["refused"]]
    if unread:
        out.print(f"not measured in {', '.join(unread)}: the refusal measure agrees with our "
                  f"held-out labels in fewer than 90% of answers there")
    metrics_in(f"{at}/locales.json")
