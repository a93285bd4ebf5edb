"""Capability kept? Multiple-choice benchmarks through lm-evaluation-harness, on local data.

    cai eval capability smollm2 sl=hf:runs/demo/models/sft --limit 300
    evaluate_capability({"base": base.backend(), "sl-cai": sft.backend()}, "runs/x/eval/capability",
                        CapabilityConfig(tasks=("arc_easy",), limit=300))

The harness (``lm-eval``) builds each task's requests and computes its metrics; the model
behind it is ours: :class:`BackendLM` answers the harness's log-likelihood requests with a
:class:`~..backends.Backend`, so a capability check runs on whichever engine the model
handle picked (our transformers loop, vLLM, a Ray fan-out) and shares the loaded model with
the rest of the evaluation. A question's choices share one request, so its context is
computed once.

Tasks come from a folder of lm-eval task YAMLs that reach no hub:
* ``arc_easy`` is declared here over a local ARC-Easy JSONL (``arc_file``; the allenai
  ``ai2_arc`` layout), scored like the harness's own ``arc_easy`` task: each choice's
  log-likelihood after ``Question: …\\nAnswer:``; ``acc`` takes the likeliest choice,
  ``acc_norm`` the likeliest per character.
* ``include_path``: a folder of the user's own task YAMLs (``output_type:
  multiple_choice``; their data local, e.g. ``dataset_path: json``).

Per model it writes ``<name>.jsonl`` (one row per question: the choice picked, right or
not), once the model is done; a rerun with the same settings and model reads it back. Then
``capability.json``: accuracy with a 95 % Wilson interval per task and model, and McNemar's
exact test on the same questions for every pair of models. Never train on these sets.
"""

from __future__ import annotations

import functools
import logging
import os
from itertools import combinations
from pathlib import Path
from typing import Any

from typing import Literal

from pydantic import Field

from ..backends import Backend, ChoiceRequest
from ..backends.spec import parse_spec
from ..config import Names, StageConfig
from ..errors import CaiError
from ..hashing import content_hash
from ..jsonio import read_json, read_jsonl, write_json, write_jsonl
from ..progress import progress
from .metrics import mcnemar, wilson

log = logging.getLogger(__name__)

CAPABILITY = "capability.json"
ARC_FILE = "../shared/data/arc/ARC-Easy-test.jsonl"
METRICS = ("acc", "acc_norm")


class CapabilityConfig(StageConfig):
    """Capability benchmarks (multiple choice, by log-likelihood) through lm-eval."""

    tasks: Names = Field(("arc_easy",), description="lm-eval tasks: arc_easy (declared over "
                         "--arc-file) or a task of --include-path.")
    limit: int = Field(300, ge=0, description="The first N questions of each task (0: all); "
                       "the same N for every model, so they pair.")
    arc_file: str = Field(ARC_FILE, description="ARC-Easy as JSONL (allenai ai2_arc layout: "
                          "id, question, choices{text,label}, answerKey).")
    include_path: str | None = Field(None, description="A folder of your own lm-eval task "
                                     "YAMLs (multiple_choice, local data).")
    batch_size: int = Field(32, ge=1, description="Questions per call to the model.")
    engine: Literal["model", "hf", "vllm"] = Field(
        "model", description="In cai run: score on each model's own engine ([models] engine), "
        "or on this one. On a CPU our transformers loop (hf) scores faster than vLLM "
        "(benchmarks/README.md, capability).")


def arc_task(arc_file: str | Path) -> dict[str, Any]:
    """The ``arc_easy`` task over a local file, in lm-eval's task YAML schema."""
    path = Path(arc_file).expanduser()
    if not path.is_file():
        raise CaiError(f"capability task arc_easy: {path} not found; give ARC-Easy's test split "
                       "as JSONL with --arc-file (or arc_file in [eval.capability])")
    return {
        "task": "arc_easy",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(path.resolve())}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_target": "{{choices.label.index(answerKey)}}",
        "doc_to_choice": "{{choices.text}}",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                        for m in METRICS],
        "metadata": {"version": 1.0, "source": str(path)},
    }


def _lm_class():
    """lm-eval's model base class, imported on first use (the harness is heavy to import)."""
    try:
        from lm_eval.api.model import LM
    except ImportError as e:  # pragma: no cover - a dependency
        raise CaiError("capability needs lm-evaluation-harness: pip install lm-eval") from e
    return LM


def backend_lm(backend: Backend, batch_size: int = 32, label: str = "capability"):
    """An lm-eval ``LM`` whose log-likelihoods come from ``backend`` (see :class:`BackendLM`)."""

    class BackendLM(_lm_class()):
        """Answers lm-eval's ``loglikelihood`` requests with ``backend.score``: the choices
        that follow one context form one :class:`ChoiceRequest`. Only multiple-choice tasks
        are served: ``is_greedy`` is not computed (those tasks do not read it)."""

        def __init__(self) -> None:
            super().__init__()
            self.backend = backend

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            by_context: dict[str, list[str]] = {}
            for r in requests:
                context, continuation = r.args
                if not context:
                    raise CaiError("capability: a request with an empty context; only tasks "
                                   "with a question before each choice are supported")
                by_context.setdefault(context, [])
                if continuation not in by_context[context]:
                    by_context[context].append(continuation)
            contexts = list(by_context)
            scores: dict[str, dict[str, float]] = {}
            with progress(f"{label}: {len(contexts)} questions", len(contexts)) as advance:
                for start in range(0, len(contexts), batch_size):
                    chunk = contexts[start:start + batch_size]
                    out = self.backend.score([ChoiceRequest(prefix=c, options=tuple(by_context[c]))
                                              for c in chunk])
                    scores.update(zip(chunk, out))
                    advance(len(chunk))
            return [(float(scores[r.args[0]][r.args[1]]), False) for r in requests]

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            raise CaiError("capability: perplexity tasks (loglikelihood_rolling) are not "
                           "supported; use multiple-choice tasks")

        def generate_until(self, requests, disable_tqdm: bool = False):
            raise CaiError("capability: generative tasks (generate_until) are not supported; "
                           "use multiple-choice tasks")

    return BackendLM()


def _task_manager(folder: Path, config: CapabilityConfig):
    """Our task YAMLs written to ``folder/tasks`` (what ran, kept with the results), plus the
    user's folder; lm-eval's own catalogue is not indexed (its tasks fetch from a hub)."""
    import yaml
    from lm_eval.tasks import TaskManager

    arc = (arc_task(config.arc_file) if "arc_easy" in config.tasks
           or Path(config.arc_file).expanduser().is_file() else None)  # a missing file: before mkdir
    tasks = folder / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    if arc is not None:
        (tasks / "arc_easy.yaml").write_text(yaml.safe_dump(arc, sort_keys=False))
    paths = [str(tasks)]
    if config.include_path:  # later paths win: the user's task of the same name wins
        if not Path(config.include_path).is_dir():
            raise CaiError(f"capability: --include-path {config.include_path}: not a folder")
        paths.append(str(Path(config.include_path).resolve()))
    manager = TaskManager(include_path=paths, include_defaults=False)
    missing = [t for t in config.tasks if t not in manager.all_tasks]
    if missing:
        raise CaiError(f"capability: unknown task(s) {', '.join(missing)}; offline tasks here: "
                       f"{', '.join(sorted(manager.all_tasks)) or 'none'}")
    return manager


def _stamp(spec: str) -> list[Any]:
    """A local model directory's file times, so a retrained model is evaluated afresh."""
    try:
        parsed = parse_spec(spec)
    except CaiError:  # a backend of the caller's own making
        return []
    if parsed.kind == "hf" and parsed.path is not None and parsed.path.is_dir():
        return sorted((p.name, p.stat().st_mtime_ns) for p in parsed.path.iterdir()
                      if p.suffix in (".json", ".safetensors"))
    return []


def _rows(samples: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for task, items in samples.items():
        for s in items:
            lls = [float(r[0]) for r in s["filtered_resps"]]
            doc = s.get("doc", {})
            rows.append({"task": task, "doc_id": s["doc_id"], "id": str(doc.get("id", s["doc_id"])),
                         "target": s["target"], "pred": max(range(len(lls)), key=lls.__getitem__),
                         "loglikelihoods": lls, **{m: bool(s[m]) for m in METRICS if m in s}})
    return sorted(rows, key=lambda r: (r["task"], r["doc_id"]))


def run_model(name: str, backend: Backend, folder: Path, config: CapabilityConfig,
              manager=None) -> list[dict[str, Any]]:
    """One model through every task: per-question rows, kept in ``folder/<name>.jsonl``."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # tasks read local files
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = {"config": config.dump(), "spec": backend.spec, "model_files": _stamp(backend.spec)}
    fingerprint = content_hash(settings)
    done = folder / f"{name}.json"
    if (done.is_file() and fingerprint in (read_json(done).get(k) for k in ("fingerprint", "key"))
            and (folder / f"{name}.jsonl").is_file()):
        return read_jsonl(folder / f"{name}.jsonl")
    import lm_eval

    manager = manager or _task_manager(folder, config)
    tasks = manager.load(list(config.tasks))["tasks"]
    for task_name, task in tasks.items():
        if task.OUTPUT_TYPE != "multiple_choice":
            raise CaiError(f"capability task {task_name}: output_type {task.OUTPUT_TYPE}; only "
                           "multiple_choice tasks are supported")
    for logger in ("lm-eval", "lm_eval"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    import lm_eval.api.task as task_module

    bar = task_module.tqdm  # the harness's bar over building requests: ours shows progress
    task_module.tqdm = functools.partial(bar, disable=True)
    try:
        result = lm_eval.simple_evaluate(
            model=backend_lm(backend, config.batch_size, f"capability {name}"),
            tasks=list(tasks.values()), task_manager=manager, limit=config.limit or None,
            log_samples=True, bootstrap_iters=0)
    finally:
        task_module.tqdm = bar
    rows = _rows(result["samples"])
    write_jsonl(folder / f"{name}.jsonl", rows)
    write_json(done, {"fingerprint": fingerprint, **settings, "lm_eval": lm_eval.__version__,
                      "results": result["results"]})
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task: accuracy and length-normalised accuracy with 95 % Wilson intervals."""
    out: dict[str, Any] = {}
    for task in sorted({r["task"] for r in rows}):
        mine = [r for r in rows if r["task"] == task]
        entry: dict[str, Any] = {"n": len(mine)}
        for m in METRICS:
            if all(m in r for r in mine):
                hits = sum(r[m] for r in mine)
                entry[m] = hits / len(mine)
                entry[f"{m}_ci95"] = list(wilson(hits, len(mine)))
        out[task] = entry
    return out


def paired(per_model: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """McNemar's exact test on ``acc`` over the questions both models answered, per task."""
    tests = []
    for a, b in combinations(per_model, 2):
        ra = {(r["task"], r["doc_id"]): r for r in per_model[a]}
        rb = {(r["task"], r["doc_id"]): r for r in per_model[b]}
        for task in sorted({t for t, _ in ra}):
            keys = sorted(k for k in ra if k[0] == task and k in rb)
            if keys:
                test = mcnemar([ra[k]["acc"] for k in keys], [rb[k]["acc"] for k in keys])
                tests.append({"a": a, "b": b, "task": task, **test})
    return tests


def evaluate_capability(models: dict[str, Backend], folder: str | Path,
                        config: CapabilityConfig) -> dict[str, Any]:
    """Every model through every task, then ``capability.json`` (see the module doc)."""
    folder = Path(folder)
    manager = _task_manager(folder, config)  # makes the folder, once its inputs are there
    per_model = {name: run_model(name, backend, folder, config, manager)
                 for name, backend in models.items()}
    metrics = {"settings": config.dump(),
               "per_model": {name: summarise(rows) for name, rows in per_model.items()},
               "paired": paired(per_model)}
    write_json(folder / CAPABILITY, metrics)
    return metrics
