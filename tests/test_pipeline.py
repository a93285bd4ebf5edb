"""pipeline.py and stages.py: the config, stage fingerprints, status; then the real end-to-end `cai run` with SIGKILL."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from constitutional.errors import CaiError
from constitutional.pipeline import STAGES, Run, load_config, packaged_config, status

from .conftest import SHARED, cai


def test_packaged_demo_config_is_valid():
    c = load_config(packaged_config("demo"))
    assert c.name == "demo" and c.rl.method == "dpo" and c.critique.rounds == 2


@pytest.mark.parametrize("text,expected", [
    ("name = 'x'\n[sft]\nlearnin_rate = 1\n", r"bad.toml:3: field 'sft.learnin_rate': unknown key"),
    ("[critique]\nrounds = 'four'\n", r"bad.toml:2: field 'critique.rounds'"),
    ("[rl]\n\nmethod = 'ppo'\n", r"bad.toml:3: field 'rl.method'"),
    ("name = [1\n", r"bad.toml: TOML syntax error"),
    ("[rl.dpo]\nbeta = 'x'\n", r"bad.toml:2: field 'rl.dpo.beta'"),
    ("colour = 'red'\n", r"bad.toml:1: field 'colour': unknown key"),
    ("name = 'x'\n\n[critque]\nrounds = 2\n",
     r"bad.toml:3: field 'critque': unknown key \(did you mean 'critique'\?\)"),
    ("name = 'x'\n[eval.capabilty]\nlimit = 2\n",
     r"bad.toml:2: field 'eval.capabilty': unknown key \(did you mean 'capability'\?\)"),
    ("model = 'scripted'\n", r"bad.toml:1: field 'model': unknown key \(did you mean 'models'\?\)"),
    ("name = 'x'\n[models]\npolicy = 'gpt'\n", r"bad.toml:3: field 'models.policy': 'gpt': unknown spec"),
])
def test_config_errors_name_the_file_line_and_field(tmp_path, text, expected):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(CaiError, match=expected):
        load_config(f)


def test_overrides_parse_values_and_beat_the_file(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text("[sft]\nmax_steps = 10\n")
    c = load_config(f, ["sft.max_steps=3", "models.policy=hf:/tmp/m", "rl.dpo.lora=true"])
    assert c.sft.max_steps == 3 and c.models.policy == "hf:/tmp/m" and c.rl.dpo.lora is True
    with pytest.raises(CaiError, match="--set 'nonsense'"):
        load_config(f, ["nonsense"])
    r = cai("run", f, "--set", "sft.bogus=1", "--out", tmp_path / "r")
    assert r.returncode == 2 and "--set sft.bogus=1: field 'sft.bogus': unknown key" in r.stderr
    # a bad value from --set is blamed on the --set, not on a line of the file
    f.write_text("[sft]\nmax_steps = 'ten'\n")
    with pytest.raises(CaiError, match=r"--set sft.max_steps=x: field 'sft.max_steps'"):
        load_config(f, ["sft.max_steps=x"])
    with pytest.raises(CaiError, match=r"p.toml:2: field 'sft.max_steps'"):
        load_config(f, ["critique.rounds=1"])
    with pytest.raises(CaiError, match=r"--set critque.rounds=1: field 'critque': unknown key "
                       r"\(did you mean 'critique'\?\)"):
        load_config(f, ["sft.max_steps=2", "critque.rounds=1"])


def test_changing_a_setting_changes_exactly_the_downstream_fingerprints(tmp_path):
    def keys(overrides):
        run = Run(load_config(None, overrides), tmp_path)
        for s in STAGES:
            run.fingerprints[s] = run.fingerprint(s)
        return run.fingerprints

    a, b = keys([]), keys(["pm.learning_rate=0.001"])
    changed = {s for s in STAGES if a[s] != b[s]}
    assert changed == {"pm", "report"}
    c = keys(["critique.rounds=1"])
    changed = {s for s in STAGES if a[s] != c[s]}
    assert changed == {"critique", "sft-data", "sft", "pairs", "label", "pm", "rl", "eval", "report"}


def test_status_of_an_empty_run_lists_every_stage_pending(tmp_path):
    rows = status(tmp_path)
    assert [r["stage"] for r in rows] == STAGES and {r["state"] for r in rows} == {"pending"}
    (tmp_path / ".cai" / "stages").mkdir(parents=True)
    (tmp_path / ".cai" / "stages" / "prompts.json").write_text(json.dumps(
        {"state": "done", "seconds": 1.5, "summary": {"prompts": 40}}))
    (tmp_path / ".cai" / "stages" / "critique.json").write_text(json.dumps({"state": "running"}))
    (tmp_path / "prompts").mkdir()  # what the prompts stage leaves
    rows = {r["stage"]: r for r in status(tmp_path)}
    assert rows["prompts"]["state"] == "done" and rows["prompts"]["records"] == "40 prompts"
    assert rows["critique"]["state"] == "incomplete"
    with pytest.raises(CaiError, match="no such run folder"):
        status(tmp_path / "missing")


def test_rl_reads_the_preference_model_only_when_it_is_rloo(tmp_path):
    def changed(method):
        keys = []
        for lr in ("0.001", "0.002"):
            run = Run(load_config(None, [f"rl.method={method!r}".replace("'", '"'),
                                         f"pm.learning_rate={lr}"]), tmp_path)
            for s in STAGES:
                run.fingerprints[s] = run.fingerprint(s)
            keys.append(run.fingerprints)
        return {s for s in STAGES if keys[0][s] != keys[1][s]}

    assert changed("dpo") == {"pm", "report"}
    assert changed("rloo") == {"pm", "rl", "eval", "report"}


# -- the stage table ------------------------------------------------------------------

# Which stage writes each run-folder path (RunLayout's attributes and models).
WRITES = {"prompts": "prompts", "grown": "prompts", "prompt_set": "prompts",
          "judge_check": "judge", "critique": "critique", "critique_dir": "critique",
          "helpful": "helpful", "helpful_dir": "helpful", "sft": "sft-data", "sft_dir": "sft-data",
          "pairs": "pairs", "labels": "label", "labels_manifest": "label", "pm_train": "pm",
          "pm_eval": "pm", "pm_metrics": "pm", "eval": "eval", "metrics": "eval",
          "verdicts": "eval", "by_round": "eval", "model:sft": "sft", "model:pm": "pm",
          "model:rl": "rl", "root": None, "robustness": None, "provenance": None,
          "config": None, "markers": None, "report": "report"}


def _opened(source: str) -> set[str]:
    """The run-folder paths a stage's source opens: layout attributes, trained models,
    prompt sets (by the stages that write them)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name, args = node.func.attr, node.args
            on_layout = ast.unparse(node.func.value).endswith("layout")
            if name == "model" and not on_layout:  # ctx.model("policy"): a role, not a file
                continue
            if name in ("model", "trained", "training_manifest") and args:
                if isinstance(args[0], ast.Constant):
                    found.add(f"model:{args[0].value}")
                elif name != "model":  # a loop over the trained models (the report)
                    found |= {"model:sft", "model:pm", "model:rl"}
            elif name == "prompt_set":
                found.add("prompt_set")
        if isinstance(node, ast.Attribute) and node.attr in WRITES:
            base = ast.unparse(node.value)
            if base.endswith("layout") or base.startswith("RunLayout("):
                found.add(node.attr)
    return found


def test_each_stage_reads_what_its_row_declares():
    import inspect

    from constitutional import report, stages

    for stage in stages.STAGES:
        source = inspect.getsource(stage.run)
        if stage.name == "report":  # it hands the folder to the report, which reads it
            source += inspect.getsource(report)
        opened = {WRITES[k] for k in _opened(source)} - {None, stage.name}
        assert opened == set(stage.reads), (stage.name, sorted(opened), stage.reads)
    names = [s.name for s in stages.STAGES]
    for stage in stages.STAGES:  # a stage reads only stages that run before it
        assert all(names.index(r) < names.index(stage.name) for r in stage.reads), stage.name


def _scripted_run(tmp_path, monkeypatch, overrides=()):
    """A run whose every model is scripted: the trained models too (so no training)."""
    from constitutional.backends import handle
    from constitutional.stages import RunContext

    trained = {"sft": "scripted:delay=0", "rl": "scripted:delay=0.0"}
    monkeypatch.setattr(RunContext, "trained",
                        lambda self, name: self.model("policy").using(trained[name]))
    handle.release()
    cfg = load_config(None, ["models.policy=scripted", "models.feedback=scripted:prefer=shorter",
                             "models.batch_size=4", "prompts.train_redteam=3",
                             "prompts.train_helpful=2", "prompts.eval_harmful=3",
                             "prompts.eval_borderline=2", "prompts.eval_helpful=2",
                             "critique.rounds=1", "eval.judge_principles=2", *overrides])
    return Run(cfg, tmp_path / "run")


def _loads(run, stage):
    return [(m["spec"], m["engine"]) for m in run.marker(stage)["models_loaded"]]


def test_each_model_loads_once_per_run_and_the_judge_once_per_evaluation(tmp_path, monkeypatch):
    from constitutional.backends import handle

    run = _scripted_run(tmp_path, monkeypatch)
    run.run(["prompts", "judge", "critique", "helpful", "eval"], echo=lambda _: None)
    assert _loads(run, "judge") == [("scripted:prefer=shorter", "scripted")]
    assert _loads(run, "critique") == [("scripted", "scripted")]
    assert _loads(run, "helpful") == []  # the policy critique loaded
    loads = _loads(run, "eval")  # the base model is still loaded; the judge at most once
    assert sorted(set(loads) - {("scripted:prefer=shorter", "scripted")}) == [
        ("scripted:delay=0", "scripted"), ("scripted:delay=0.0", "scripted")]
    assert len(loads) == len(set(loads)), loads
    # The evaluation alone, nothing loaded before: each model once, the judge once (it
    # rates harm, the comparisons and the by-round figure).
    handle.release()
    run = _scripted_run(tmp_path, monkeypatch, ["eval.seed=1"])
    run.run(["eval"], echo=lambda _: None)
    loads = _loads(run, "eval")
    assert sorted(loads) == sorted(set(loads)) and len(loads) == 4, loads
    by_round = json.loads((tmp_path / "run" / "eval" / "by-round" / "round-1.manifest.json")
                          .read_text())
    assert by_round["inputs"]["principles"] == 2  # [eval] judge_principles reaches it


def test_eval_locales_reach_the_pipeline_and_the_report(tmp_path, monkeypatch):
    """``[eval] locales``: every model of the run answers the translated prompts whose
    English originals it was not trained on; the report gets a section for it."""
    from constitutional.report import write_report

    run = _scripted_run(tmp_path, monkeypatch, ["eval.locales=fr,ru", "eval.judge=false",
                                                "eval.compare=false"])
    run.run(["prompts", "eval"], echo=lambda _: None)
    result = json.loads((tmp_path / "run" / "eval" / "locales" / "locales.json").read_text())
    assert set(result["models"]) == {"base", "sl-cai", "rl-cai"} and result["locales"] == ["fr", "ru"]
    trained = {json.loads(x)["messages"][0]["content"] for x in
               (tmp_path / "run" / "prompts" / "train_redteam.jsonl").read_text().splitlines()}
    answered = [json.loads(x) for x in
                (tmp_path / "run" / "eval" / "locales" / "verdicts.jsonl").read_text().splitlines()]
    assert not trained & {v["prompt"] for v in answered if v["locale"] == "en"}
    counts = result["prompts"]["harmful"]
    assert counts["en"] == counts["fr"] == counts["ru"] and 0 < counts["en"] <= 24
    assert 'id="locales"' in write_report(tmp_path / "run").read_text()


def test_ray_workers_reach_every_stage_that_calls_a_model(tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="the scale extra (Ray) is not installed")
    import ray

    from constitutional.backends import handle

    run = _scripted_run(tmp_path, monkeypatch, ["ray.workers=2"])
    try:
        run.run(["prompts", "judge", "critique", "helpful", "eval"], echo=lambda _: None)
    finally:
        handle.release()
        ray.shutdown()
    engines = {e for stage in ("judge", "critique", "eval") for _, e in _loads(run, stage)}
    assert engines == {"ray×2/scripted"}
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert set(metrics["per_model"]) == {"base", "sl-cai", "rl-cai"}


def test_the_run_writes_its_provenance_when_it_starts(tmp_path, monkeypatch):
    run = _scripted_run(tmp_path, monkeypatch)
    run.run(["prompts"], echo=lambda _: None)
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert prov["constitution_hash"] == run.constitution.hash
    assert prov["models"]["policy"] == "scripted"


# -- the real end-to-end run -----------------------------------------------------------

TINY = """
name = "tiny"
[models]
batch_size = 2
[prompts]
seed = 3
train_redteam = 4
train_helpful = 2
eval_harmful = 3
eval_borderline = 2
eval_helpful = 2
[critique]
rounds = 1
few_shot_examples = 1
max_new_tokens = 24
[helpful]
max_new_tokens = 24
[sft]
max_steps = 1
[pairs]
max_new_tokens = 24
[pm]
max_steps = 1
holdout = 0.34
[rl.dpo]
max_steps = 1
min_confidence = 0.5
[eval]
max_new_tokens = 24
judge_principles = 1
"""


def _ids(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["id"] for r in rows]


@pytest.mark.slow
def test_cai_run_every_stage_survives_sigkill_and_resumes(tmp_path):
    config = tmp_path / "tiny.toml"
    arc = SHARED / "data" / "arc" / "ARC-Easy-test.jsonl"
    config.write_text(TINY + f'[eval.capability]\ntasks = ["arc_easy"]\nlimit = 4\narc_file = "{arc}"\n')
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "constitutional", "run", str(config), "--out", str(run)]
    auto = {**os.environ, "CAI_ENGINE": "auto"}  # vLLM where installed: what users get
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, env=auto)
    pairs = run / "rlaif" / "pairs.jsonl"
    deadline = time.time() + 900  # generous: CI machines may be busy
    while time.time() < deadline and proc.poll() is None:
        if pairs.is_file() and pairs.read_text().count("\n") >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
    assert pairs.is_file(), "the pairs stage did not start within the deadline"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_with = pairs.read_text().count("\n")
    assert 1 <= killed_with < 6

    st = cai("status", run, check=True).stdout
    assert "pairs" in st and "incomplete" in st
    done_before = {s: json.loads((run / ".cai/stages" / f"{s}.json").read_text())["finished_at"]
                   for s in ("prompts", "judge", "critique", "helpful", "sft-data", "sft")}

    r = cai("run", config, "--out", run, check=True, env=auto)
    assert "[pairs] resuming" in r.stdout
    # A quiet terminal: no Python warning, no trainer's raw log dictionary, no library bars.
    both = r.stdout + r.stderr
    assert "Warning" not in both and "{'loss'" not in both and "Loading weights" not in both
    assert "step 1/1  loss" in both  # training shows one compact line per step
    for stage in done_before:
        assert f"[{stage}] up to date" in r.stdout
        marker = json.loads((run / ".cai/stages" / f"{stage}.json").read_text())
        assert marker["finished_at"] == done_before[stage]  # not redone

    # every artifact, each record once
    assert len(set(_ids(run / "critique" / "critique.jsonl"))) == 4
    pair_ids = _ids(pairs)
    assert len(pair_ids) == 6 and len(set(pair_ids)) == 6
    label_ids = _ids(run / "rlaif" / "labels.jsonl")
    assert len(label_ids) == 6 and len(set(label_ids)) == 6
    for row in map(json.loads, (run / "rlaif" / "labels.jsonl").read_text().splitlines()):
        assert 0.5 <= row["p_chosen"] <= 1
    assert (run / "sft" / "sft.jsonl").is_file()
    for model in ("sft", "pm", "rl"):
        assert (run / "models" / model / "config.json").is_file()
        assert json.loads((run / "models" / model / "cai_training.json").read_text())["steps"] == 1
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert set(metrics["per_model"]) == {"base", "sl-cai", "rl-cai"}
    for m in metrics["per_model"].values():
        assert m["violation"]["all"]["n"] == 3 and m["false_refusal"]["n"] == 2
        assert "elo" in m["elo_harmless"] and "elo" in m["elo_helpful"]
    verdicts = (run / "eval" / "verdicts.jsonl").read_text().splitlines()
    assert len(verdicts) == 3 * (3 + 2 + 2)
    by_round = json.loads((run / "eval" / "by_round.json").read_text())
    assert [r["round"] for r in by_round] == [0, 1]
    page = (run / "report.html").read_text()
    assert 'id="summary"' in page and metrics["constitution"] in page
    assert 'id="overview"' in page and 'id="judge"' in page and 'id="sl-quality"' in page
    check = json.loads((run / "judge" / "judge_check.json").read_text())
    assert check["preference"]["n"] == 24 and check["harm"]["n"] == 16
    for m in metrics["per_model"].values():
        assert m["judge_free"]["harmful"]["n"] == 3
    assert {(t["a"], t["b"]) for t in metrics["paired"]} == {
        ("base", "sl-cai"), ("base", "rl-cai"), ("sl-cai", "rl-cai")}
    assert "base vs SL-CAI vs RL-CAI" in r.stdout
    # A column per model, a row per figure: whole names in a log 80 characters wide
    heading = next(x for x in r.stdout.splitlines() if "sl-cai" in x)
    assert "base" in heading and "rl-cai" in heading
    assert any(x.startswith("│ false refusal (borderline)") for x in r.stdout.splitlines())
    # capability on the same three models, through lm-eval, paired on the same questions
    cap = metrics["capability"]
    assert {m: v["arc_easy"]["n"] for m, v in cap["per_model"].items()} == {
        "base": 4, "sl-cai": 4, "rl-cai": 4}
    assert len(cap["paired"]) == 3 and 'id="capability-arc_easy"' in page

    # The engine that made each stage's records is in its marker. With vLLM installed
    # (`make setup` installs it) every local model ran on it, and the packaged model, judge
    # of labelling and evaluation, started once in the resumed run: its engine stayed up
    # through the preference-model and DPO training stages between them.
    resumed = [json.loads((run / ".cai/stages" / f"{s}.json").read_text())
               for s in STAGES if s not in done_before]
    loads = [m for marker in resumed for m in marker["models_loaded"]]
    vllm = importlib.util.find_spec("vllm") is not None
    assert {m["engine"] for m in loads} == ({"vllm"} if vllm else {"hf"})
    # (our own loop's models are freed for training, so there it loads twice)
    again_after_training = 1 if vllm else 2
    assert sorted(m["spec"] for m in loads) == sorted(
        ["smollm2", f"hf:{run / 'models' / 'sft'}"] * again_after_training
        + [f"hf:{run / 'models' / 'rl'}"])

    # a third run has nothing to do
    again = cai("run", config, "--out", run, check=True, env=auto).stdout
    assert again.count("up to date") == 12
    assert "[judge] judge smollm2 on 40 clear-cut cases" in again


def test_a_stage_whose_output_was_deleted_runs_again(tmp_path, monkeypatch):
    """A done marker is not enough: delete a stage's output by hand and the next run makes
    it again (and `cai status` says so), while the stages whose output is there stay done."""
    run = _scripted_run(tmp_path, monkeypatch)
    said: list[str] = []
    run.run(["prompts", "judge"], echo=said.append)
    check = tmp_path / "run" / "judge" / "judge_check.json"
    first = check.read_text()
    check.unlink()
    assert {r["stage"]: r["state"] for r in status(tmp_path / "run")}["judge"] == "output missing"
    said.clear()
    run = _scripted_run(tmp_path, monkeypatch)
    run.run(["prompts", "judge"], echo=said.append)
    assert any(s.startswith("[prompts] up to date") for s in said), said
    assert "[judge] done before, but its output is gone: running it again" in said
    assert check.read_text() == first
    assert {r["stage"]: r["state"] for r in status(tmp_path / "run")}["judge"] == "done"


def test_a_run_made_before_markers_said_fingerprint_stays_up_to_date(tmp_path, monkeypatch):
    """Markers written when the stage hash was called ``key`` still count: renaming the
    word does not rerun anyone's finished stages."""
    run = _scripted_run(tmp_path, monkeypatch)
    run.run(["prompts", "judge"], echo=lambda _: None)
    for marker in (tmp_path / "run" / ".cai" / "stages").glob("*.json"):
        m = json.loads(marker.read_text())
        m["key"] = m.pop("fingerprint")
        marker.write_text(json.dumps(m))
    said: list[str] = []
    _scripted_run(tmp_path, monkeypatch).run(["prompts", "judge"], echo=said.append)
    assert [s.split(" (")[0] for s in said if not s.startswith("[judge] judge")] == [
        "[prompts] up to date", "[judge] up to date"], said
