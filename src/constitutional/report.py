"""`cai report RUN`: one self-contained HTML page from a run folder — no network, no
scripts. Plots are inline SVG drawn here; every piece of model text is escaped.

Sections appear when their data exists: summary, violations by category, refusals,
the harmlessness-versus-helpfulness Elo frontier, harm against capability (lm-eval),
harmlessness by revision round,
preference-model calibration, the feedback model's position bias, training curves, examples, and
provenance (constitution hash, models, config, package version, commit).
"""

from __future__ import annotations

import functools
import json
from html import escape
from pathlib import Path
from typing import Any, Sequence

from .errors import CaiError
from .layout import RunLayout
from .jsonio import jsonl_objects, write_json, write_text

COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
W, H, PAD = 560, 260, 44


def _e(x: Any) -> str:
    return escape(str(x), quote=True)


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return _e(x)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def _reads(name: str):
    """A report section drawn from one file of the run (``RunLayout``'s ``name``): given
    its contents, and left out where the run has none."""
    def wrap(section):
        @functools.wraps(section)
        def drawn(run: Path) -> list[str]:
            data = _read(getattr(RunLayout(run), name))
            return section(data) if data else []
        return drawn
    return wrap


def _jsonl(path: Path) -> list[dict[str, Any]]:
    """A run's records; a stage still writing (or killed mid-write) may leave a torn last
    line, which is skipped. The report never fails on what it reads."""
    if not path.is_file():
        return []
    try:
        return [row for _, row in jsonl_objects(path, torn_tail_ok=True)]
    except CaiError:
        return []


# -- SVG ------------------------------------------------------------------------------

def _frame(name: str, title: str, body: str, ylabel: str = "") -> str:
    return (f'<figure><svg class="plot" data-plot="{_e(name)}" viewBox="0 0 {W} {H}" '
            f'width="{W}" height="{H}" role="img" aria-label="{_e(title)}">'
            f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#333"/>'
            f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{H - PAD}" stroke="#333"/>'
            f'<text x="12" y="{H / 2}" transform="rotate(-90 12 {H / 2})" font-size="11" '
            f'text-anchor="middle">{_e(ylabel)}</text>{body}</svg>'
            f'<figcaption>{_e(title)}</figcaption></figure>')


def _y(v: float, lo: float, hi: float) -> float:
    return H - PAD - (v - lo) / ((hi - lo) or 1) * (H - PAD - 10)


def _x(v: float, lo: float, hi: float) -> float:
    return PAD + (v - lo) / ((hi - lo) or 1) * (W - PAD - 20)


def hbars(name: str, title: str, groups: Sequence[str], series: dict[str, Sequence[float | None]],
          top: float = 1.0) -> str:
    """Horizontal bars: one row per group (label on the left, never overlapping), one bar
    per series; the value is written at the end of each bar."""
    k = max(1, len(series))
    row = 8 + 12 * k
    left, width = 170, W - 170 - 60
    height = 30 + row * len(groups) + 14 * k
    body = []
    for gi, g in enumerate(groups):
        y0 = 20 + gi * row
        body.append(f'<text x="{left - 6}" y="{y0 + row / 2:.1f}" font-size="11" '
                    f'text-anchor="end" dominant-baseline="middle">{_e(_label(g))}</text>')
        for si, (sname, values) in enumerate(series.items()):
            v = values[gi]
            if v is None:
                continue
            w = max(0.0, min(v, top)) / top * width
            y = y0 + 4 + si * 12
            body.append(f'<rect class="bar" x="{left}" y="{y:.1f}" width="{w:.1f}" height="10" '
                        f'fill="{COLOURS[si % 6]}"><title>{_e(sname)}, {_e(_label(g))}: '
                        f'{v:.3f}</title></rect><text x="{left + w + 4:.1f}" y="{y + 9:.1f}" '
                        f'font-size="10">{v:.0%}</text>')
    legend = "".join(f'<rect x="{left + 110 * i}" y="{height - 14}" width="10" height="10" '
                     f'fill="{COLOURS[i % 6]}"/><text x="{left + 14 + 110 * i}" y="{height - 5}" '
                     f'font-size="11">{_e(n)}</text>' for i, n in enumerate(series))
    return (f'<figure><svg class="plot" data-plot="{_e(name)}" viewBox="0 0 {W} {height}" '
            f'width="{W}" height="{height}" role="img" aria-label="{_e(title)}">'
            f'<line x1="{left}" y1="14" x2="{left}" y2="{height - 22}" stroke="#333"/>'
            f'{"".join(body)}{legend}</svg><figcaption>{_e(title)}</figcaption></figure>')


def _label(key: str) -> str:
    """A record key as words: ``refused_explained`` → ``explained refusal``."""
    return LABELS.get(key, key.replace("_", " "))


LABELS = {"complied": "complied", "refused_explained": "explained refusal",
          "refused_evasive": "evasive refusal", "refused": "refused (either kind)",
          "words": "answer length (words)", "sl-cai": "SL-CAI", "rl-cai": "RL-CAI"}


def _legend(names: Sequence[str]) -> str:
    return "".join(f'<rect x="{W - 130}" y="{14 + 14 * i}" width="10" height="10" '
                   f'fill="{COLOURS[i % 6]}"/><text x="{W - 116}" y="{23 + 14 * i}" '
                   f'font-size="10">{_e(n)}</text>' for i, n in enumerate(names))


def lines(name: str, title: str, series: dict[str, Sequence[tuple[float, float]]],
          ylabel: str = "", xlabel: str = "", diagonal: bool = False,
          bounds: tuple[float, float, float, float] | None = None,
          marks: Sequence[tuple[float, str]] = ()) -> str:
    """A line chart; ``marks``: (x, what happened) drawn as dashed verticals."""
    pts = [p for s in series.values() for p in s]
    if not pts:
        return ""
    x0, x1, y0, y1 = bounds or (min(p[0] for p in pts), max(p[0] for p in pts),
                                min(p[1] for p in pts), max(p[1] for p in pts))
    body = [f'<line class="mark" x1="{_x(a, x0, x1):.1f}" y1="{_y(y1, y0, y1):.1f}" '
            f'x2="{_x(a, x0, x1):.1f}" y2="{_y(y0, y0, y1):.1f}" stroke="#c00" stroke-dasharray="3">'
            f'<title>{_e(f"{xlabel} {a:g}: {what}")}</title></line>' for a, what in marks]
    if diagonal:
        body.append(f'<line x1="{_x(x0, x0, x1)}" y1="{_y(y0, y0, y1)}" x2="{_x(x1, x0, x1)}" '
                    f'y2="{_y(y1, y0, y1)}" stroke="#aaa" stroke-dasharray="4"/>')
    for i, (s, ps) in enumerate(series.items()):
        coords = " ".join(f"{_x(a, x0, x1):.1f},{_y(b, y0, y1):.1f}" for a, b in ps)
        body.append(f'<polyline class="line" points="{coords}" fill="none" '
                    f'stroke="{COLOURS[i % 6]}" stroke-width="2"/>')
        body.extend(f'<circle cx="{_x(a, x0, x1):.1f}" cy="{_y(b, y0, y1):.1f}" r="3" '
                    f'fill="{COLOURS[i % 6]}"><title>{_e(s)}: ({a:.3g}, {b:.3g})</title></circle>'
                    for a, b in ps)
    body.append(f'<text x="{PAD}" y="{H - 8}" font-size="10">{_e(xlabel)} {x0:.3g} … {x1:.3g}</text>')
    body.append(f'<text x="{PAD + 4}" y="20" font-size="10">{y1:.3g}</text>'
                f'<text x="{PAD + 4}" y="{H - PAD - 4}" font-size="10">{y0:.3g}</text>')
    body.append(_legend(list(series)))
    return _frame(name, title, "".join(body), ylabel)


def scatter(name: str, title: str, points: dict[str, tuple[float, float]], xlabel: str,
            ylabel: str) -> str:
    if not points:
        return ""
    xs = [p[0] for p in points.values()]
    ys = [p[1] for p in points.values()]
    x0, x1 = min(xs) - 50, max(xs) + 50
    y0, y1 = min(ys) - 50, max(ys) + 50
    body = [f'<text x="{PAD}" y="{H - 8}" font-size="10">{_e(xlabel)} {x0:.0f} … {x1:.0f}</text>',
            f'<text x="{PAD + 4}" y="20" font-size="10">{y1:.0f}</text>']
    for i, (label, (a, b)) in enumerate(points.items()):
        cx, cy = _x(a, x0, x1), _y(b, y0, y1)
        body.append(f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="6" '
                    f'fill="{COLOURS[i % 6]}"><title>{_e(label)}</title></circle>'
                    f'<text x="{cx + 8:.1f}" y="{cy + 4:.1f}" font-size="11">{_e(label)}</text>')
    return _frame(name, title, "".join(body), ylabel)


def pareto(name: str, title: str, points: dict[str, dict[str, Any]], xlabel: str) -> str:
    """Each model at (capability, rate) for every rate series, with 95% intervals as
    whiskers both ways: up and to the right is what training should not trade away."""
    series = sorted({k for p in points.values() for k in p["rates"]})
    if not points or not series:
        return ""
    xs = [v for p in points.values() for v in p["x_ci"]]
    x0, x1 = max(0.0, min(xs) - 0.02), min(1.0, max(xs) + 0.02)
    y0, y1 = 0.0, min(1.0, max(v for p in points.values() for r in p["rates"].values()
                               for v in r["ci95"]) + 0.05)
    body = [f'<text x="{PAD}" y="{H - 8}" font-size="10">{_e(xlabel)} {x0:.0%} … {x1:.0%}</text>',
            f'<text x="{PAD + 4}" y="20" font-size="10">{y1:.0%}</text>']
    for si, key in enumerate(series):
        colour = COLOURS[si % 6]
        for mi, (model, p) in enumerate(points.items()):
            r = p["rates"].get(key)
            if r is None or r["rate"] is None:
                continue
            cx, cy = _x(p["x"], x0, x1), _y(r["rate"], y0, y1)
            (lx, hx), (ly, hy) = ((_x(v, x0, x1) for v in p["x_ci"]),
                                  (_y(v, y0, y1) for v in r["ci95"]))
            body.append(f'<line x1="{lx:.1f}" y1="{cy:.1f}" x2="{hx:.1f}" y2="{cy:.1f}" '
                        f'stroke="{colour}" stroke-opacity="0.5"/><line x1="{cx:.1f}" '
                        f'y1="{ly:.1f}" x2="{cx:.1f}" y2="{hy:.1f}" stroke="{colour}" '
                        f'stroke-opacity="0.5"/><circle class="point" cx="{cx:.1f}" '
                        f'cy="{cy:.1f}" r="5" fill="{colour}"><title>{_e(_label(model))}, '
                        f'{_e(key)}: {r["rate"]:.0%} at {p["x"]:.0%}</title></circle>'
                        f'<text x="{cx + 7:.1f}" y="{cy - 5 + 13 * (mi % 2):.1f}" '
                        f'font-size="10">{_e(_label(model))}</text>')  # neighbours: above, below
    body.append(_legend(series))
    return _frame(name, title, "".join(body), "share of answers")


# -- sections ---------------------------------------------------------------------------

def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(sid: str, title: str, content: str, note: str = "") -> str:
    n = f'<p class="note">{_e(note)}</p>' if note else ""
    return f'<section id="{_e(sid)}"><h2>{_e(title)}</h2>{n}{content}</section>'


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


def _p(x: float) -> str:
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def _peq(x: float) -> str:
    return "p < 0.001" if x < 0.001 else f"p = {x:.3f}"


def _ci(ci: Sequence[float]) -> str:
    return f"{ci[0]:.0%}–{ci[1]:.0%}"


def _counts(prompts: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in prompts.items() if n)


def _judge_status(run: Path) -> dict[str, Any] | None:
    """The feedback model's check on the clear-cut cases, if the run made one."""
    return _read(RunLayout(run).judge_check)


def _marked(check: dict[str, Any] | None, role: str) -> str:
    """A warning paragraph for a section whose figures rest on a judge role at chance."""
    if not check or check.get(role, {}).get("informative", True):
        return ""
    s = check[role]
    return (f'<p class="warn"><b>Uninformative.</b> These figures are the verdicts of '
            f'{_e(check["judge"])}, which was not better than chance on the clear-cut '
            f'{"comparisons" if role == "preference" else "harm cases"} of the calibration set '
            f'({s["correct"]} of {s["n"]} right, 95% interval {_ci(s["ci95"])}, order flip rate '
            f'{_pct(s["flip_rate"])}). They are shown for completeness, not as findings.</p>')


def _judge_free_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for set_name in ("harmful", "borderline", "helpful"):
        for name, m in metrics["per_model"].items():
            j = (m.get("judge_free") or {}).get(set_name)
            if not j:
                continue
            rows.append([set_name, _label(name), j["n"], _pct(j["complied"]["rate"]),
                         _pct(j["refused_explained"]["rate"]), _pct(j["refused_evasive"]["rate"]),
                         f"{j['mean_words']:.0f}"])
    return rows


def _significant(p: float) -> str:
    return "yes (p < 0.01)" if p < 0.01 else "weak (p < 0.05)" if p < 0.05 else "no"


def _paired_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for t in metrics.get("paired") or []:
        for measure, r in t["tests"].items():
            if measure == "words":
                change = f"{r['mean_shift']:+.1f} words (median {r['median_shift']:+.1f})"
            else:
                change = f"{r['difference']:+.0%} ({r['a_only']} vs {r['b_only']} prompts)"
            rows.append([f"{_label(t['a'])} → {_label(t['b'])}", t["set"], t["n"], _label(measure),
                         change, _p(r["p_value"]), _significant(r["p_value"])])
    return rows


def _evasive_drift(metrics: dict[str, Any], alpha: float = 0.05) -> list[str]:
    """Plain words for the failure the paper warns about: a trained model that declines
    more, and without reasons, and refuses benign requests it used to answer. Findings at
    p < 0.01 are stated; at p < 0.05 they are stated as weak evidence."""
    first = next(iter(metrics.get("per_model") or {}), None)
    out: list[str] = []

    def up(test: dict[str, Any] | None) -> bool:
        return bool(test) and test["difference"] > 0 and test["p_value"] < alpha

    def strength(*tests: dict[str, Any]) -> str:
        worst = max(t["p_value"] for t in tests)
        return "" if worst < 0.01 else "Weak evidence (p < 0.05, not below 0.01): "

    for t in metrics.get("paired") or []:
        if t["a"] != first:
            continue
        a, b = _e(_label(t["a"])), _e(_label(t["b"]))
        refused, evasive = t["tests"]["refused"], t["tests"].get("refused_evasive")
        if t["set"] == "harmful" and (up(refused) or up(evasive)):
            used = [x for x in (refused, evasive) if up(x)]
            sentence = (f"{b} declines more harmful prompts than {a} "
                        f"({refused['difference']:+.0%}, {_e(_peq(refused['p_value']))})"
                        if up(refused) else f"{b} declines more harmful prompts evasively than {a}")
            if up(evasive):
                sentence += ((", and more of them evasively" if up(refused) else "")
                             + f", with no reason and no help ({evasive['difference']:+.0%} evasive "
                             f"refusals, {_e(_peq(evasive['p_value']))}): harmlessness bought with "
                             "evasiveness is the failure the method is meant to avoid, not a success")
            out.append(_e(strength(*used)) + sentence + ".")
        elif t["set"] in ("borderline", "helpful") and up(refused):
            out.append(_e(strength(refused)) + f"{b} also refuses more {_e(t['set'])} prompts that "
                       f"deserve an answer than {a} ({refused['difference']:+.0%}, "
                       f"{_e(_peq(refused['p_value']))}): false refusals went up.")
    return out


def overview(run: Path) -> str:
    """One paragraph: what this run shows and what it cannot."""
    layout = RunLayout(run)
    metrics, check = _read(layout.metrics), _judge_status(run)
    parts: list[str] = []
    if check:
        pref, harm = check["preference"], check["harm"]
        bad = [r for r in ("preference", "harm") if check[r]["n"] and not check[r]["informative"]]
        parts.append(
            f"The feedback model {_e(check['judge'])} got {pref['correct']} of {pref['n']} "
            f"clear-cut comparisons right (95% {_ci(pref['ci95'])}) and {harm['correct']} of "
            f"{harm['n']} clear-cut harm verdicts ({_ci(harm['ci95'])}).")
        if bad:
            parts.append("That is not better than chance, so its " + " and its ".join(
                {"preference": "AI labels, win rates and Elo", "harm": "harm violation rates"}[r]
                for r in bad) + " below are marked <b>uninformative</b>: they are not evidence "
                "about the models' harmlessness, and training on its labels cannot have taught "
                "what the constitution asks.")
        else:
            parts.append("That is better than chance, so its verdicts below carry signal "
                         "(how much: see the intervals).")
    if metrics and metrics.get("paired"):
        sig = [t for t in metrics["paired"] for m, r in t["tests"].items()
               if m != "words" and r["p_value"] < 0.01]
        n = metrics.get("prompts", {})
        tested = ", ".join(f"{k} {v}" for k, v in n.items() if v)
        if sig:
            parts.append("Without any judge (our refusal classifier on held-out prompts: "
                         f"{tested}), these refusal differences are significant (p &lt; 0.01): "
                         + "; ".join(f"{_e(_label(t['a']))} → {_e(_label(t['b']))} on {_e(t['set'])} "
                                     f"prompts, {_e(_label(m))} {r['difference']:+.0%}"
                                     for t in sig for m, r in t["tests"].items()
                                     if m != "words" and r["p_value"] < 0.01) + ".")
        drift = _evasive_drift(metrics)
        # weak findings the drift sentences do not already state (they state rises from base)
        first = next(iter(metrics.get("per_model") or {}), None)
        weak = [(t, m, r) for t in metrics["paired"] for m, r in t["tests"].items()
                if m != "words" and 0.01 <= r["p_value"] < 0.05
                and not (t["a"] == first and r["difference"] > 0)]
        if not sig:
            parts.append("Without any judge (our refusal classifier on held-out prompts: "
                         f"{tested}), no refusal rate differs between the models at p &lt; 0.01"
                         + ("." if drift or weak else ": on this evidence the training did not "
                            "change how often they refuse."))
        parts += drift
        if weak:
            parts.append("Weak evidence (p &lt; 0.05, not below 0.01) of a change in refusals: "
                         + "; ".join(f"{_e(_label(t['a']))} → {_e(_label(t['b']))} on {_e(t['set'])} "
                                     f"prompts, {_e(_label(m))} {r['difference']:+.0%} "
                                     f"({_e(_peq(r['p_value']))})" for t, m, r in weak) + ".")
        moved = [t for t in metrics["paired"] if t["tests"]["words"]["p_value"] < 0.01]
        if moved:
            parts.append("Answer length changed significantly for " + "; ".join(
                f"{_e(_label(t['a']))} → {_e(_label(t['b']))} on {_e(t['set'])} prompts "
                f"({t['tests']['words']['mean_shift']:+.1f} words)" for t in moved) + ".")
    if metrics:
        parts += _capability_overview(metrics)
    trajectories = _jsonl(layout.critique)
    if trajectories:
        from .evaluation.revisions import quality_by_round

        last = quality_by_round(trajectories)[-1]
        sft = _read(layout.sft_dir / "sft.manifest.json") or {}
        parts.append(
            f"The SL-CAI data: of the final revisions, {last['refused_explained']:.0%} are "
            f"explained refusals and {last['meta']:.0%} talk about the answer instead of "
            "answering" + (f"; {sft['drop_rate']:.0%} of the rows were dropped for such faults"
                           if "drop_rate" in sft else "") + ".")
    if not parts:
        return ""
    return ('<section id="overview"><h2>What this run shows</h2><p class="lead">'
            + " ".join(parts) + "</p></section>")


def _judge_section(run: Path) -> list[str]:
    check = _judge_status(run)
    if not check:
        return []
    rows = [[{"preference": "comparisons (labels, win rates, Elo)",
              "harm": "harm verdicts"}[r], check[r]["n"], check[r]["correct"],
             _pct(check[r]["accuracy"]), _ci(check[r]["ci95"]), _pct(check[r]["flip_rate"]),
             "informative" if check[r]["informative"] else "uninformative (not above chance)"]
            for r in ("preference", "harm") if check[r]["n"]]
    return [_section("judge", "How far the judge can be trusted", _table(
        ["judged", "clear-cut cases", "right", "accuracy", "95% interval", "order flips",
         "verdict"], rows),
        "The bundled calibration set: a plainly harmful answer against an explained refusal, a "
        "helpful answer against a needless refusal, plainly harmful and harmless responses. "
        "Each is judged in both orders; a judge whose interval includes 50% is at chance."
        + _self_preference_line(run))]


def _self_preference_line(run: Path) -> str:
    """The judge's self-preference, where it was measured into the run; else a pointer."""
    sp = _read(RunLayout(run).self_preference)
    if not sp:
        return (" Its preference for its own answers is not measured in this run: "
                "cai eval self-preference --out RUN/judge/self-preference measures it.")
    view = sp["judge_view"]
    text = (f" Self-preference: the judge preferred its own answer over {_label(sp['other'])}'s "
            f"in {view['prefers_own']} of {view['n']} pairs ({_pct(view['share'])}, 95% "
            f"{_ci(view['ci95'])})")
    if "self_preference" in sp:
        d = sp["self_preference"]
        return text + (f"; {d['mean_difference'] * 100:+.1f} points of p(own) over the reference "
                       f"judge {_label(sp['reference'])} (95% {d['ci95'][0] * 100:+.1f} to "
                       f"{d['ci95'][1] * 100:+.1f}).")
    return text + (f"; with no reference judge this is confounded by answer quality (against a "
                   f"coin flip {_peq(sp['against_chance']['p_value'])}).")


def _quality_section(run: Path) -> list[str]:
    from .evaluation.revisions import quality_by_round

    layout = RunLayout(run)
    trajectories = _jsonl(layout.critique)
    if not trajectories:
        return []
    q = quality_by_round(trajectories)
    rows = [["draft" if r["round"] == 0 else f"revision {r['round']}", r["n"], _pct(r["complied"]),
             _pct(r["refused_explained"]), _pct(r["refused_evasive"]),
             "–" if r["round"] == 0 else _pct(r["echo"]), _pct(r["meta"]),
             "–" if r["round"] == 0 else _pct(r["skipped"])] for r in q]
    sft = _read(layout.sft_dir / "sft.manifest.json") or {}
    note = ("What the SL-CAI data would teach. Explained refusals are what the method trains "
            "towards; echo (the revision repeats its critique) and meta (it talks about the "
            "answer instead of answering) are revisions that teach the wrong thing.")
    if "dropped" in sft:
        note += (f" The SFT set dropped {sft['dropped']} such rows ({sft['drop_rate']:.0%} of the "
                 "harmlessness rows).")
    return [_section("sl-quality", "SL-CAI data quality by round", _table(
        ["round", "texts", "complied", "explained refusal", "evasive refusal", "echo", "meta",
         "skipped"], rows), note)]


def _eval_sections(run: Path) -> list[str]:
    metrics = _read(RunLayout(run).metrics)
    if not metrics:
        return []
    check = _judge_status(run)
    per = metrics["per_model"]
    names = list(per)
    out = []
    free = _judge_free_rows(metrics)
    if free:
        out.append(_section("headline", "Refusals without a judge", _table(
            ["prompts", "model", "n", "complied", "explained refusal", "evasive refusal",
             "mean words"], free),
            "Our refusal classifier (no model judge) on held-out prompts. On harmful prompts an "
            "explained refusal is the goal; on borderline and helpful ones any refusal is a "
            "failure."))
    paired = _paired_rows(metrics)
    if paired:
        out.append(_section("significance", "Paired significance tests", _table(
            ["models", "prompts", "n", "measure", "change", "p-value", "significant"],
            paired), "Each model against the other on the same prompts. Refusals: McNemar's "
            "exact test on the prompts where only one of the two refused (counts in brackets: "
            "only the first, only the second). Lengths: Wilcoxon signed-rank."))
    rows = []
    for n in names:
        m = per[n]
        rows.append([n, m["violation"].get("all", {}).get("rate"), m["false_refusal"]["rate"],
                     m["evasive_on_harmful"]["rate"], m["explained_refusal_on_harmful"]["rate"],
                     (m.get("elo_harmless") or {}).get("elo"), (m.get("elo_helpful") or {}).get("elo")])
    harm_warn, pref_warn = _marked(check, "harm"), _marked(check, "preference")
    out.append(_section("summary", "Summary, with the judge's figures", harm_warn + pref_warn + _table(
        ["model", "harm violation rate (judge)", "false-refusal rate", "evasive refusals (harmful)",
         "explained refusals (harmful)", "harmlessness Elo (judge)", "helpfulness Elo (judge)"],
        [[_label(r[0]), *[_pct(x) for x in r[1:5]], *[_fmt(x, 0) for x in r[5:]]] for r in rows]),
        f"Prompts: {_counts(metrics['prompts'])}. Feedback model: {metrics['feedback_model']}. "
        "Rates are shares of responses; Elo is relative to the first model."))
    cats = sorted({c for n in names for c in per[n]["violation"] if c != "all"})
    series = {_label(n): [per[n]["violation"].get(c, {}).get("rate") for c in cats] for n in names}
    detail = _table(["model", "category", "rate", "95% CI", "n"],
                    [[_label(n), _label(c), _pct(v["rate"]), _ci(v["ci95"]), v["n"]]
                     for n in names for c, v in per[n]["violation"].items()])
    if cats:
        out.append(_section("violations", "Harm violation rate by category (judge)",
                            harm_warn + hbars("violations", "violation rate by harm category",
                                              cats, series)
                            + f"<details><summary>the rates with intervals</summary>{detail}</details>",
                            "Judged by the feedback model under the constitution; Wilson intervals."))
    kinds = ["false refusal (borderline)", "evasive (harmful)", "explained refusal (harmful)",
             "refusal (helpful)"]
    keys = ["false_refusal", "evasive_on_harmful", "explained_refusal_on_harmful",
            "refusal_on_helpful"]
    series = {_label(n): [per[n][k]["rate"] for k in keys] for n in names}
    out.append(_section("refusals", "Refusals: false, evasive and explained",
                        hbars("refusals", "refusal rates", kinds, series),
                        "A model that refuses everything is not safe but useless: false refusals "
                        "on benign look-alikes and bare (evasive) refusals are failures too."))
    pts = {n: ((per[n].get("elo_helpful") or {}).get("elo"), (per[n].get("elo_harmless") or {}).get("elo"))
           for n in names}
    pts = {n: p for n, p in pts.items() if None not in p}
    if pts:
        elo_rows = [[n, k, v.get("elo"), f"{_fmt(v['ci95'][0], 0)} – {_fmt(v['ci95'][1], 0)}",
                     v.get("win_rate"), v.get("comparisons")]
                    for n in names for k in ("harmless", "helpful")
                    for v in [per[n].get(f"elo_{k}") or {}] if v]
        out.append(_section("elo", "Harmlessness versus helpfulness (Elo, judge)",
                            pref_warn + scatter("elo", "harmlessness Elo against helpfulness Elo", pts,
                                    "helpfulness Elo", "harmlessness Elo")
                            + _table(["model", "axis", "Elo", "95% CI", "win rate", "comparisons"],
                                     elo_rows),
                            "Pairwise comparisons by the feedback model, both orders; bootstrap intervals."))
    by_round = _read(RunLayout(run).by_round)
    if by_round:
        out.append(_section("by-round", "Harmlessness by revision round (judge)", harm_warn + lines(
            "by-round", "violation rate after each critique–revision round (0 = initial draft)",
            {"violation rate": [(r["round"], r["rate"]) for r in by_round],
             "mean p(violation)": [(r["round"], r["mean_p_violation"]) for r in by_round]},
            ylabel="rate", xlabel="round", bounds=(0, max(1, len(by_round) - 1), 0, 1))
            + _table(["round", "violation rate", "95% CI", "n"],
                     [[r["round"], r["rate"], f"{r['ci95'][0]:.2f}–{r['ci95'][1]:.2f}", r["n"]]
                      for r in by_round])))
    verdicts = _jsonl(RunLayout(run).verdicts)
    if verdicts:
        by_prompt: dict[str, list[dict[str, Any]]] = {}
        for v in verdicts:
            by_prompt.setdefault(v["prompt_id"], []).append(v)
        blocks = []
        for pid in list(by_prompt)[:8]:
            vs = by_prompt[pid]
            answers = "".join(
                f'<div class="answer"><b>{_e(v["model"])}</b> '
                f'<span class="tag">{_e(v["refusal"])}</span>'
                f'{" <span class=tag>violation " + _e(v["principle_id"]) + "</span>" if v["violation"] else ""}'
                f'<pre>{_e(v["response"])}</pre></div>' for v in vs)
            blocks.append(f'<div class="example"><p class="prompt">[{_e(vs[0]["set"])}] '
                          f'{_e(vs[0]["prompt"])}</p>{answers}</div>')
        out.append(_section("examples", "Examples", "".join(blocks),
                            "Model text is shown as text; nothing in it is interpreted."))
    return out


def _tasks(cap: dict[str, Any] | None) -> list[str]:
    """The capability tasks any model was measured on (none without a capability result)."""
    return sorted({t for tasks in cap["per_model"].values() for t in tasks}) if cap else []


def _capability_section(run: Path) -> list[str]:
    """Harm against capability, per model: the judge-free refusal rates next to the
    benchmark accuracy, as a table, a Pareto view and the paired tests."""
    metrics = _read(RunLayout(run).metrics) or {}
    cap, out = metrics.get("capability"), []
    for task in _tasks(cap):
        points, rows = {}, []
        for model, tasks in cap["per_model"].items():
            v = tasks.get(task)
            if v is None:
                continue
            free = (metrics["per_model"].get(model) or {}).get("judge_free") or {}
            harmful = (free.get("harmful") or {}).get("refused")
            false = (metrics["per_model"].get(model) or {}).get("false_refusal")
            rates = {k: r for k, r in (("refused harmful", harmful), ("false refusals", false))
                     if r and r.get("n")}
            points[model] = {"x": v["acc"], "x_ci": v["acc_ci95"], "rates": rates}
            rows.append([_label(model), v["n"], f"{v['acc']:.1%}", _ci(v["acc_ci95"]),
                         "–" if "acc_norm" not in v else f"{v['acc_norm']:.1%}",
                         *(f"{r['rate']:.0%} ({_ci(r['ci95'])})" if r else "–"
                           for r in (harmful, false))])
        tests = [[f"{_label(t['a'])} → {_label(t['b'])}", t["n"],
                  f"{t['difference'] * 100:+.1f} points",
                  f"{t['a_only']} / {t['b_only']}", _p(t["p_value"]), _significant(t["p_value"])]
                 for t in cap["paired"] if t["task"] == task]
        out.append(_section(
            f"capability-{task}", f"Harm against capability: {task}",
            _table(["model", "questions", "accuracy", "95% interval", "length-normalised",
                    "refused harmful (judge-free)", "false refusals (judge-free)"], rows)
            + pareto(f"pareto-{task}", f"Refusal rates against {task} accuracy (95% intervals)",
                     points, f"{task} accuracy")
            + (_table(["models", "questions", "accuracy change", "only first / only second "
                       "right", "p-value", "significant"], tests) if tests else ""),
            f"Capability by lm-evaluation-harness ({task}, "
            f"{'the first ' + str(cap['settings']['limit']) if cap['settings']['limit'] else 'all'} "
            "questions, each choice scored by log-likelihood) against the refusal classifier's "
            "rates on the held-out prompts. A model should refuse more harmful prompts without "
            "losing accuracy or refusing more benign ones. Paired: McNemar's exact test on the "
            "same questions."))
    return out


@_reads("locales")
def _locale_section(result: dict[str, Any]) -> list[str]:
    """Refusals in each language beside English on the same prompts, per model."""
    from .evaluation.locales import cell

    rows = []
    for name, m in result["models"].items():
        for loc, kinds in m["by_locale"].items():
            for kind, row in kinds.items():
                test = row.get("refused", {}).get("vs_english")
                rows.append([_label(name), loc, kind, row["prompts"],
                             f"{row['answered_in_locale']['rate']:.0%}",
                             cell(row.get("refused")), cell(row.get("refused_explained")),
                             cell(row.get("refused_evasive")),
                             f"{test['difference']:+.0%} (p = {test['p_value']:.3f})" if test else "–"])
    unread = [lang for lang, c in result["claims"].items() if not c["refused"]]
    note = ("The same prompts in English and in translation, greedy answers. Refusal figures "
            "count the answers the refusal measure reads (measured / prompts): English answers "
            "by the English classifier, others by our n-gram model in the languages where it agrees "
            "with our held-out labels at least 90% of the time. Where only some answers are read "
            "(measured < prompts), a rate describes those answers, not the language's prompts: "
            "a small model that answers a French prompt in English is often off topic. The test "
            "is McNemar's exact test against English on the same prompts.")
    if unread:
        note += (f" Not measured in {', '.join(unread)}: a rate there would be a guess.")
    return [_section("locales", "Refusals by language", _table(
        ["model", "language", "set", "prompts", "answered in its language", "refused",
         "explained refusal", "evasive refusal", "refused vs English"], rows), note)]


def _temperature_section(run: Path) -> list[str]:
    """How the judge-free refusal rates move with the sampling temperature, per model."""
    sweep = (_read(RunLayout(run).metrics) or {}).get("temperature")
    if not sweep:
        return []
    rows, harmful, benign = [], {}, {}
    for model, points in sweep.items():
        for pt in points:
            h, b = pt["sets"].get("harmful"), pt["sets"].get("borderline")
            rows.append([_label(model), f"{pt['temperature']:g}", pt["samples"],
                         *(f"{r[k]['rate']:.0%} ({_ci(r[k]['ci95'])})" if r else "–"
                           for r, k in ((h, "refused"), (h, "refused_evasive"),
                                        (h, "prompts_with_a_refusal"), (b, "refused")))])
            if h:
                harmful.setdefault(_label(model), []).append((pt["temperature"], h["refused"]["rate"]))
            if b:
                benign.setdefault(_label(model), []).append((pt["temperature"], b["refused"]["rate"]))
    charts = "".join(lines(f"temperature-{key}", title, series, "share of answers", "temperature",
                           bounds=(min(t for s in series.values() for t, _ in s),
                                   max(t for s in series.values() for t, _ in s), 0.0, 1.0))
                     for key, title, series in (
                         ("harmful", "Harmful prompts refused, by temperature", harmful),
                         ("borderline", "Benign look-alikes refused (false refusals), by temperature",
                          benign)) if series and len({t for s in series.values() for t, _ in s}) > 1)
    return [_section("temperature", "Refusals by sampling temperature", _table(
        ["model", "temperature", "answers per prompt", "harmful refused", "harmful evasive",
         "harmful prompts with a refusal", "false refusals"], rows) + charts,
        "Judge-free (the refusal classifier). Greedy answers at temperature 0; above it, several "
        "sampled answers per prompt. A model that refuses only when it decodes greedily refuses "
        "less once deployed with sampling. Intervals count answers as independent.")]


def _capability_overview(metrics: dict[str, Any]) -> list[str]:
    """Whether capability changed between models, by the report's convention: p < 0.01 is
    a change, p < 0.05 weak evidence of one."""
    cap, parts = metrics.get("capability"), []
    for task in _tasks(cap):
        accs = ", ".join(f"{_e(_label(m))} {tasks[task]['acc']:.1%}"
                         for m, tasks in cap["per_model"].items() if task in tasks)
        n = next(tasks[task]["n"] for tasks in cap["per_model"].values() if task in tasks)
        tests = [t for t in cap["paired"] if t["task"] == task]

        def said(ts: list[dict[str, Any]]) -> str:
            return "; ".join(f"{_e(_label(t['a']))} → {_e(_label(t['b']))} "
                             f"{'lost' if t['difference'] < 0 else 'gained'} "
                             f"{abs(t['difference']) * 100:.1f} points ({_e(_peq(t['p_value']))}, "
                             f"{t['a_only']} vs {t['b_only']} questions)" for t in ts)

        strong = [t for t in tests if t["p_value"] < 0.01]
        weak = [t for t in tests if 0.01 <= t["p_value"] < 0.05]
        head = f"Capability ({_e(task)}, {n} questions: {accs})"
        if strong:
            parts.append(f"{head} changed significantly (p &lt; 0.01): {said(strong)}.")
        if weak:
            parts.append(("Weak evidence (p &lt; 0.05, not below 0.01) of a capability "
                          f"change: {said(weak)}." if strong else
                          f"{head}: weak evidence (p &lt; 0.05, not below 0.01) of a change: "
                          f"{said(weak)}."))
        if not strong and not weak:
            parts.append(f"{head} did not change significantly between any two models "
                         "(McNemar p ≥ 0.05).")
    return parts


@_reads("pm_metrics")
def _pm_section(m: dict[str, Any]) -> list[str]:
    pts = [((b["lo"] + b["hi"]) / 2 if b["mean_predicted"] is None else b["mean_predicted"],
            b["observed"]) for b in m["reliability"] if b["count"]]
    return [_section("pm-calibration", "Preference-model calibration", lines(
        "pm-calibration", "reliability diagram: observed frequency against predicted probability",
        {"preference model": pts}, ylabel="observed", xlabel="predicted", diagonal=True,
        bounds=(0, 1, 0, 1)) + _table(["accuracy", "95% CI", "ECE", "held-out comparisons"],
                                      [[m["accuracy"], f"{m['ci95'][0]:.2f}–{m['ci95'][1]:.2f}",
                                        m["ece"], m["n"]]]),
        "Held-out AI labels; both sides of every pair are counted.")]


@_reads("robustness")
def _robustness_section(m: dict[str, Any]) -> list[str]:
    ops = list(m["per_mutation"])
    return [_section("robustness", "Robustness under red-team mutations", hbars(
        "robustness", f"violation rate by mutation ({m['model']})", ops,
        {"violation rate": [m["per_mutation"][o]["rate"] for o in ops]})
        + _table(["mutation", "rate", "95% CI", "n"],
                 [[o, v["rate"], f"{v['ci95'][0]:.2f}–{v['ci95'][1]:.2f}", v["n"]]
                  for o, v in m["per_mutation"].items()]),
        "From cai eval robustness --out RUN/robustness.")]


def _position_bias_section(run: Path) -> list[str]:
    m = _read(RunLayout(run).labels_manifest)
    if not m or "position_bias" not in m:
        return []
    b = m["position_bias"]
    return [_section("position-bias", "The feedback model's position bias", _table(
        ["mean p(response shown first)", "order flip rate", "pairs scored both ways"],
        [[b["mean_p_first_shown"], b["flip_rate"], b["pairs_with_both_orders"]]]),
        "0.5 and 0 mean no position bias; order averaging cancels what is there.")]


def _training_section(run: Path) -> list[str]:
    series: dict[str, list[tuple[float, float]]] = {}
    extra = []
    for name in ("sft", "pm", "rl"):
        m = _read(RunLayout(run).training_manifest(name))
        if not m:
            continue
        series[f"{name} loss"] = [(i + 1, x) for i, x in enumerate(m["losses"])]
        margins = [(h["step"], float(h["rewards/margins"])) for h in m["log_history"]
                   if "rewards/margins" in h]
        if margins:
            extra.append(lines("rl-margins", "DPO reward margin (chosen − rejected) by step",
                               {"margin": margins}, ylabel="margin", xlabel="step"))
        mon = m.get("monitor") or []
        if mon:  # RL: the over-training monitor, one point per batch (a step generates one)
            def over(keys):
                got = {k: [(i + 1, float(h[k])) for i, h in enumerate(mon)
                           if isinstance(h.get(k), (int, float))] for k in keys}
                return {k: v for k, v in got.items() if v}
            kl = [(h["step"], float(h["kl"])) for h in m["log_history"] if "kl" in h]
            marks = [(e["batch"], e["warning"]) for e in m.get("warning_events") or []]
            probe = {f"probe {k}": [(p["step"], float(p[k])) for p in m.get("probe") or []
                                    if isinstance(p.get(k), (int, float))]
                     for k in ("proxy", "gold", "nll_ref", "relevance")}  # the held-out probe's
            extra.append(lines("rl-reward", "reward, KL and fluency by step (dashed: a warning)",
                               {**over(("reward_raw",)), **({"kl": kl} if kl else {}),
                                **over(("nll_ref",)), **{k: v for k, v in probe.items() if v}},
                               xlabel="step", marks=marks))
            extra.append(lines("overtraining", "RL over-training monitor by step (dashed: a warning)",
                               over(("boilerplate_rate", "shared_phrase_rate", "distinct_2",
                                     "refusal_rate", "repeated_share")), xlabel="step", marks=marks))
            if marks:
                extra.append("<ul class=\"warnings\">" + "".join(
                    f"<li>step {e['batch']}: {_e(e['warning'])}"
                    + "".join(f"<br><q>{_e(x)}</q>" for x in e.get("examples", [])) + "</li>"
                    for e in m["warning_events"]) + "</ul>")
            extra.append(_probe_answers(RunLayout(run).model(name) / "probe_answers.jsonl",
                                        m.get("first_warning_batch")))
    if not series:
        return []
    return [_section("training", "Training curves", lines(
        "training", "training loss by step", series, ylabel="loss", xlabel="step") + "".join(extra),
        "Watch for the reward rising while diversity falls: the over-training signs.")]


def _probe_answers(path: Path, first_warning: int | None) -> str:
    """The probe's answers to each request at its first probe beside those at the probe that
    stood at the first warning (else the last probe), for a person to read what the
    monitor read. Nothing if the run kept no probe answers."""
    rows = _jsonl(path)
    steps = sorted({r["step"] for r in rows})
    if len(steps) < 2:
        return ""
    before = [s for s in steps[1:] if first_warning is not None and s <= first_warning]
    a, b = steps[0], (before[-1] if before else steps[-1])
    at = {(r["step"], r["prompt"]): r for r in rows}
    cell = lambda r: (f"{r['answer']} [loops]" if r.get("loops") else r["answer"]) if r else "–"  # noqa: E731
    table = _table(["request", f"step {a}", f"step {b}"],
                   [[prompt, cell(r), cell(at.get((b, prompt)))]
                    for (step, prompt), r in at.items() if step == a])
    when = f", the last probe up to the first warning (step {first_warning})" if before else ""
    return (f"<details><summary>The probe's answers: step {a} beside step {b}{_e(when)}"
            f"</summary>{table}</details>")


def _provenance_section(prov: dict[str, Any] | None, run: Path) -> str:
    prov = prov or _read(RunLayout(run).provenance) or {}
    rows = [[k, json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v]
            for k, v in sorted(prov.items()) if k != "config"]
    config = json.dumps(prov.get("config", {}), indent=2, sort_keys=True)
    return _section("provenance", "Provenance", _table(["field", "value"], rows)
                    + f"<details><summary>config</summary><pre>{_e(config)}</pre></details>")


CSS = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 12px;
color:#222;line-height:1.4}table{border-collapse:collapse;margin:.5em 0;display:block;
overflow-x:auto;max-width:100%}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;
text-align:left}th{background:#f3f3f3}pre{white-space:pre-wrap;word-break:break-word;
background:#f8f8f8;padding:6px}.note{color:#555;font-size:13px}.tag{background:#eee;
border-radius:3px;padding:0 4px;font-size:12px}.example{border-top:1px solid #ddd;margin-top:1em}
figure{margin:1em 0}svg.plot{max-width:100%;height:auto}.lead{font-size:15px;background:#f5f7fb;
border-left:4px solid #4c72b0;padding:8px 12px}.warn{background:#fff4e5;border-left:4px solid
#dd8452;padding:6px 10px;font-size:13px}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}"""


def write_report(run: str | Path, provenance: dict[str, Any] | None = None,
                 out: str | Path | None = None) -> Path:
    run = Path(run)
    if not run.is_dir():
        raise CaiError(f"{run}: no such run folder")
    if provenance is not None:
        write_json(RunLayout(run).provenance, provenance)
    sections = [*_eval_sections(run), *_temperature_section(run), *_locale_section(run),
                *_capability_section(run),
                *_judge_section(run),
                *_quality_section(run),
                *_robustness_section(run), *_pm_section(run),
                *_position_bias_section(run),
                *_training_section(run), _provenance_section(provenance, run)]
    if len(sections) == 1:
        raise CaiError(f"{run}: nothing to report yet (no evaluation, labels or models)")
    page = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'; img-src data:\">"
            f"<title>Constitutional AI run: {_e(run.name)}</title><style>{CSS}</style></head><body>"
            f"<h1>Constitutional AI run: {_e(run.name)}</h1>{overview(run)}{''.join(sections)}"
            "</body></html>")
    path = Path(out) if out else RunLayout(run).report
    write_text(path, page)
    return path
