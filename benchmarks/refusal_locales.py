"""How well the refusal measure reads answers in French, German, Spanish and Russian.

    .venv/bin/python benchmarks/refusal_locales.py [--out benchmarks/out/refusal_locales.json]

The answers are ours (``src/constitutional/data/refusal_locales.jsonl``), written and
labelled in rounds: ``dev-1`` to ``dev-6`` (the measure was chosen and fitted on them) and
``held-out`` (written after the last change and never fitted to). Only the held-out figure
is a fair measure; ``cai eval locales`` counts a language only where it reaches 90 %.
Printed per language and round: agreement on the three classes and on refused-or-not, with
the held-out answers the measure got wrong. ``benchmarks/README.md`` tells the rounds' story.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    from constitutional.evaluation.locales import claims
    from constitutional.evaluation.multilingual import locale_agreement

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/out/refusal_locales.json")
    args = ap.parse_args()
    result = {written: locale_agreement(written=written)
              for written in ("dev-1", "dev-2", "dev-3", "dev-4", "dev-5", "dev-6", "held-out")}
    print(f"{'language':<9}{'set':<10}{'n':>4}{'3 classes':>11}{'refused?':>10}")
    for written, by in result.items():
        for lang, a in by.items():
            print(f"{lang:<9}{written:<10}{a['n']:>4}{a['agreement']:>11.2f}"
                  f"{a['refused_agreement']:>10.2f}")
    for lang, a in result["held-out"].items():
        for e in a["errors"]:
            print(f"  held-out {lang}: labelled {e['label']}, read {e['got']}: {e['response'][:80]}")
    result["claims"] = claims()
    print("claimed (held-out agreement >= 0.9):",
          {lang: {k: c[k] for k in ("classes", "refused")} for lang, c in result["claims"].items()})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
