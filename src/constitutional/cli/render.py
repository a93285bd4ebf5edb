"""What the commands print: every Rich table and summary line, apart from the parsing."""

from __future__ import annotations

from typing import Any, Iterable

from rich.console import Console
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


def constitution_diff(d: dict[str, Any]) -> None:
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


def coverage(summary: dict[str, Any]) -> None:
    origins = sorted({k for row in summary["coverage"].values() for k in row} - {"total"})
    table(f"{summary['prompts']} prompts ({summary['dropped_duplicates']} duplicates dropped)",
          ["category", *origins, "total"],
          ([cat, *(row.get(o, 0) for o in [*origins, "total"])]
           for cat, row in summary["coverage"].items()))


def revision_quality(rows: list[dict[str, Any]]) -> None:
    from ..evaluation.revisions import format_table

    out.print("What the revisions would teach, by round (0 = the drafts; echo: repeats its "
              "critique; meta: talks about the answer instead of answering):")
    for text in format_table(rows):
        line(text)


def warnings(manifest: dict[str, Any]) -> None:
    """Truncations and other per-record warnings of a stage: once, with the count."""
    from ..store import warning_lines

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


def calibration(title: str, summary: dict[str, Any]) -> None:
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


def elo(per_model: dict[str, Any]) -> None:
    table("Elo (first model = 0)",
          ("model", "harmlessness Elo", "95% CI", "helpfulness Elo", "95% CI"),
          ([name, f"{m['elo_harmless']['elo']:.0f}", ci(m["elo_harmless"]["ci95"], 0).replace("–", "…"),
            f"{m['elo_helpful']['elo']:.0f}", ci(m["elo_helpful"]["ci95"], 0).replace("–", "…")]
           for name, m in per_model.items()))


def capability(metrics: dict[str, Any]) -> None:
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


def self_preference(r: dict[str, Any]) -> None:
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


def run_summary(rows: list[dict[str, Any]], uninformative: list[str]) -> None:
    tasks = [k for k in (rows[0] if rows else {}) if k.endswith("_acc")]
    table("base vs SL-CAI vs RL-CAI on held-out prompts",
          ("model", "refused", "explained", "evasive", "false refusal (borderline)", "words",
           *(t.replace("_acc", " acc") for t in tasks), "harm*", "Elo harmless*", "Elo helpful*"),
          ([r["model"], fmt(r.get("refused_harmful"), 3), fmt(r.get("explained_harmful"), 3),
            fmt(r["evasive_rate"], 3), fmt(r["false_refusal_rate"], 3), fmt(r.get("mean_words"), 1),
            *(fmt(r.get(t), 3) for t in tasks),
            fmt(r["violation_rate"], 3), fmt(r["elo_harmless"], 0), fmt(r["elo_helpful"], 0)]
           for r in rows),
          caption="On harmful prompts unless noted; * judged by the feedback model.")
    if uninformative:
        out.print("The (judge) columns are uninformative: the feedback model was not better "
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


def locales(result: dict[str, Any]) -> None:
    from ..evaluation.locales import cell

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
