"""`cai run`: the whole method from one TOML config, resumable stage by stage.

    cai run pipeline.toml --out runs/demo [--set sft.max_steps=4]
    cai status runs/demo

Stages, in order (each writes under the run folder):

    prompts   train/eval split of the prompt sets; optional red-team growth   prompts/
    critique  SL-CAI critique → revision trajectories (the policy model)       critique/
    helpful   policy answers to helpfulness prompts, mixed into SFT            helpful/
    sft-data  the SFT set and its preference view                              sft/
    sft       fine-tune the policy → the SL-CAI model                          models/sft/
    pairs     two samples per prompt from the SL-CAI model                     rlaif/pairs.jsonl
    label     AI feedback soft labels (the feedback model)                     rlaif/labels.jsonl
    pm        preference model on 80% of the labels, evaluated on the rest     models/pm/, pm-eval/
    rl        DPO from the SL-CAI model on the labels → the RL-CAI model       models/rl/
    eval      base vs SL-CAI vs RL-CAI: harm, refusals, evasiveness, Elo        eval/
    report    one self-contained HTML page                                     report.html

A stage is skipped when its marker (``.cai/stages/NAME.json``) holds the same fingerprint:
a hash of its own settings and the fingerprints of the stages it reads (the word a stage's
record file uses for what its records depend on), and its output is still
there (delete a stage's output and the next run makes it again). A stage killed midway
resumes: generation stages keep every batch already written (the run store skips their
ids); training stages start over. Change a setting and exactly the stages downstream
of it run again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from . import stages as stage_table
from .backends import handle
from .errors import CaiError
from .hashing import content_hash
from .jsonio import now, read_json, write_json
from .layout import RunLayout
from .lock import lock_folder
from .provenance import provenance
from .runconfig import PipelineConfig, load_config, packaged_config, resolve_config  # noqa: F401
from .stages import RunContext
from .store import warning_lines


# -- the runner -----------------------------------------------------------------------

STAGES = stage_table.NAMES  # the order they run in; each declared once in stages.STAGES


class Run:
    def __init__(self, config: PipelineConfig, root: str | Path):
        from . import constitution as constitution_mod

        self.config, self.root = config, Path(root)
        self.constitution = constitution_mod.load(
            None if config.constitution == "default" else config.constitution)
        self.layout = RunLayout(self.root)
        self.markers = self.layout.markers
        self.fingerprints: dict[str, str] = {}

    def fingerprint(self, stage: str) -> str:
        """A hash of the stage's own settings, the models' settings, the constitution and
        the fingerprints of the stages it reads: change one and exactly what depends on it
        reruns."""
        c, s = self.config, stage_table.BY_NAME[stage]
        own = {name: getattr(c, name).model_dump(mode="json") for name in s.sections}
        # The engine is left out, as [ray] is: a run resumes under another engine, and
        # each stage's marker records which engine made its records.
        models = c.models.model_dump(mode="json", exclude={"engine"})
        upstream = [self.fingerprints[u] for u in s.upstream(c)]
        return content_hash([stage, own, models, self.constitution.hash, upstream])

    def marker(self, stage: str) -> dict[str, Any] | None:
        path = self.markers / f"{stage}.json"
        if not path.is_file():
            return None
        m = read_json(path)
        if "key" in m and "fingerprint" not in m:  # a marker written before the rename
            m["fingerprint"] = m.pop("key")
        return m

    def _write_marker(self, stage: str, data: dict[str, Any]) -> None:
        write_json(self.markers / f"{stage}.json", data)

    def context(self, overwrite: bool = True) -> RunContext:
        from .devices import chosen

        # The user's device and dtype (command line, environment) over the config's.
        return RunContext(self.config, self.layout, self.constitution, overwrite,
                          device=chosen("device"), dtype=chosen("dtype"),
                          engine=chosen("engine"))

    def run(self, only: list[str] | None = None, echo: Callable[[str], None] = print) -> dict[str, Any]:
        bad = [s for s in only or () if s not in STAGES]
        if bad:
            raise CaiError(f"--only {bad[0]!r}: no such stage (stages: {', '.join(STAGES)})")
        self.root.mkdir(parents=True, exist_ok=True)
        lock_folder(self.root)  # one writer per run; a second `cai run` here stops at once
        write_json(self.layout.config, self.config.model_dump(mode="json"))
        write_json(self.layout.provenance, self.provenance())
        results = {}
        for stage in stage_table.STAGES:
            name = stage.name
            self.fingerprints[name] = self.fingerprint(name)
            if only and name not in only:
                continue
            m = self.marker(name)
            same = bool(m and m.get("fingerprint") == self.fingerprints[name])
            done = same and m.get("state") == "done"
            if done and stage.output_gone(m, self.layout):
                echo(f"[{name}] done before, but its output is gone: running it again")
                done = False
            if done:
                echo(f"[{name}] up to date ({m.get('seconds', 0):.0f} s when run)")
                results[name] = m
                if name == "judge" and m.get("summary", {}).get("line"):
                    echo(f"[judge] {m['summary']['line']}")
                continue
            # The same fingerprint as an interrupted attempt: resume. A new one: replace the
            # old records.
            resume = same
            echo(f"[{name}] {'resuming' if resume else 'running'}")
            t0 = time.time()
            self._write_marker(name, {"stage": name, "fingerprint": self.fingerprints[name],
                                      "state": "running", "started_at": now()})
            if stage.trains:
                handle.release(engines=False)  # free this process's models for training
            loaded = len(handle.LOADS)
            summary = stage.run(self.context(overwrite=not resume))
            marker = {"stage": name, "fingerprint": self.fingerprints[name], "state": "done",
                      "started_at": m.get("started_at") if resume and m else None,
                      "finished_at": now(), "seconds": round(time.time() - t0, 1),
                      "models_loaded": handle.LOADS[loaded:], "summary": summary}
            self._write_marker(name, marker)
            results[name] = marker
            for text in warning_lines(summary):  # truncations: once per stage, with the count
                echo(f"[{name}] warning: {text}")
            if name == "judge" and summary.get("line"):
                echo(f"[judge] {summary['line']}")
        return results

    def provenance(self) -> dict[str, Any]:
        ctx = self.context()
        return provenance(config=self.config.model_dump(mode="json"),
                          constitution_hash=self.constitution.hash,
                          constitution=self.constitution.name,
                          constitution_ownership=self.constitution.ownership(),
                          models={"policy": self.config.models.policy,
                                  "feedback": self.config.models.feedback,
                                  "sl-cai": ctx.trained("sft").spec,
                                  "rl-cai": ctx.trained("rl").spec if ctx.has_rl else None})


def status(root: str | Path) -> list[dict[str, Any]]:
    """Each stage's state as recorded in the run folder (no config needed)."""
    root = Path(root)
    if not root.is_dir():
        raise CaiError(f"{root}: no such run folder")
    rows = []
    for stage in STAGES:
        path = RunLayout(root).markers / f"{stage}.json"
        m = read_json(path) if path.is_file() else {}
        state = m.get("state", "pending")
        if state == "running":
            state = "incomplete"  # running now, or stopped midway (rerun cai run to resume)
        elif state == "done" and stage_table.BY_NAME[stage].output_gone(m, RunLayout(root)):
            state = "output missing"  # deleted by hand: the next cai run makes it again
        rows.append({"stage": stage, "state": state, "seconds": m.get("seconds"),
                     "records": _count(m.get("summary") or {}), "finished_at": m.get("finished_at")})
    return rows


def _count(summary: dict[str, Any]) -> Any:
    for k in ("records", "rows", "prompts", "steps"):
        if k in summary:
            return f"{summary[k]} {k}"
    return ""
