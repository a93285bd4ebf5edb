"""Capability through lm-evaluation-harness: our adapter, the task over local data, the
paired comparison, the errors a user meets, and the real model against lm-eval's own."""

import json
import os

import pytest

from constitutional.backends import ChoiceRequest
from constitutional.errors import CaiError
from constitutional.evaluation.capability import CapabilityConfig, evaluate_capability
from constitutional.evaluation.suite import EvalConfig
from tests.conftest import SHARED, cai

ARC = SHARED / "data" / "arc" / "ARC-Easy-test.jsonl"

# Questions we wrote, in ARC's layout: labels as letters and as digits, 3 to 5 choices.
QUESTIONS = [
    {"id": "w1", "question": "Which of these is a liquid at room temperature?",
     "choices": {"text": ["ice cube", "water", "iron nail"], "label": ["A", "B", "C"]},
     "answerKey": "B"},
    {"id": "w2", "question": "How many legs does a spider have?",
     "choices": {"text": ["six legs", "ten legs", "eight", "four legs"],
                 "label": ["A", "B", "C", "D"]}, "answerKey": "C"},
    {"id": "w3", "question": "What do plants take from the air to make sugar?",
     "choices": {"text": ["oxygen gas", "carbon dioxide", "helium", "nitrogen gas"],
                 "label": ["1", "2", "3", "4"]}, "answerKey": "2"},
    {"id": "w4", "question": "Which tool measures temperature?",
     "choices": {"text": ["ruler", "a thermometer", "a balance", "a stopwatch", "a compass"],
                 "label": ["A", "B", "C", "D", "E"]}, "answerKey": "B"},
]


class Shortest:
    """A model that prefers the shortest choice: log-likelihood −(characters)²."""

    spec = "shortest"

    def __init__(self):
        self.requests: list[ChoiceRequest] = []

    def generate(self, requests):
        raise AssertionError("capability must not generate")

    def score(self, requests):
        self.requests += requests
        return [{o: -float(len(o)) ** 2 for o in r.options} for r in requests]


@pytest.fixture
def mini(tmp_path):
    path = tmp_path / "mini.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return path


def _expected(q):
    texts = q["choices"]["text"]
    pick = min(range(len(texts)), key=lambda i: len(texts[i]))
    return q["choices"]["label"][pick] == q["answerKey"]


def test_each_question_is_one_request_and_its_result_is_kept(mini, tmp_path):
    model = Shortest()
    m = evaluate_capability({"short": model}, tmp_path / "out",
                            CapabilityConfig(arc_file=str(mini), batch_size=3))
    # one request per question, its choices as options, ARC's prompt as the context
    assert [r.prefix for r in model.requests] == [
        f"Question: {q['question']}\nAnswer:" for q in QUESTIONS]
    assert [r.options for r in model.requests] == [
        tuple(" " + t for t in q["choices"]["text"]) for q in QUESTIONS]
    rows = [json.loads(line) for line in (tmp_path / "out" / "short.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["w1", "w2", "w3", "w4"]
    assert [r["acc"] for r in rows] == [_expected(q) for q in QUESTIONS] == [True, True, False, False]
    acc = m["per_model"]["short"]["arc_easy"]
    assert acc["n"] == 4 and acc["acc"] == 0.5
    assert acc["acc_ci95"][0] < 0.5 < acc["acc_ci95"][1]
    # −len² per character is −len: length-normalised accuracy also picks the shortest
    assert acc["acc_norm"] == 0.5
    # a rerun with the same settings reads the rows back instead of asking the model again
    asked = len(model.requests)
    evaluate_capability({"short": model}, tmp_path / "out",
                        CapabilityConfig(arc_file=str(mini), batch_size=3))
    assert len(model.requests) == asked
    evaluate_capability({"short": model}, tmp_path / "out",
                        CapabilityConfig(arc_file=str(mini), limit=2))
    assert len(model.requests) == asked + 2  # new settings: evaluated afresh


class Longest(Shortest):
    spec = "longest"

    def score(self, requests):
        return [{o: float(len(o)) for o in r.options} for r in requests]


def test_two_models_are_compared_on_the_same_questions(mini, tmp_path):
    m = evaluate_capability({"short": Shortest(), "long": Longest()}, tmp_path,
                            CapabilityConfig(arc_file=str(mini)))
    (t,) = m["paired"]
    # the shortest choice is right on w1 and w2, the longest on w3 and w4
    assert (t["a"], t["b"], t["task"], t["n"], t["a_only"], t["b_only"]) == (
        "short", "long", "arc_easy", 4, 2, 2)
    assert t["difference"] == 0 and t["p_value"] == 1
    saved = json.loads((tmp_path / "capability.json").read_text())
    assert saved["paired"] == m["paired"]


def test_the_command_reports_accuracy_and_pairs(mini, tmp_path):
    r = cai("eval", "capability", "-m", "scripted", "judge=scripted:prefer=shorter",
            "--arc-file", mini, "--limit", "3", "-o", tmp_path, check=True,
            env={**os.environ, "COLUMNS": "200"})
    assert "capability (lm-eval" in r.stdout and "scripted → judge" in r.stdout
    saved = json.loads((tmp_path / "capability.json").read_text())
    assert set(saved["per_model"]) == {"scripted", "judge"}
    assert all(v["arc_easy"]["n"] == 3 for v in saved["per_model"].values())


def test_bad_input_is_one_line_naming_what_is_wrong(mini, tmp_path):
    r = cai("eval", "capability", "-m", "scripted", "--arc-file", tmp_path / "nope.jsonl",
            "-o", tmp_path / "o")
    assert r.returncode == 2 and "nope.jsonl not found" in r.stderr and "Traceback" not in r.stderr
    assert "arc_file in [eval.capability]" in r.stderr  # the config key that exists
    assert not (tmp_path / "o").exists()  # nothing made for a run that cannot start
    r = cai("eval", "capability", "-m", "scripted", "--arc-file", mini, "--tasks", "mmlu",
            "-o", tmp_path / "o")
    assert r.returncode == 2 and "unknown task(s) mmlu" in r.stderr and "arc_easy" in r.stderr
    # a user's generative task is refused by name, not scored wrongly
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "gen.yaml").write_text(
        "task: my_gen\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {mini}\ntest_split: test\noutput_type: generate_until\n"
        "doc_to_text: '{{question}}'\ndoc_to_target: '{{answerKey}}'\n")
    with pytest.raises(CaiError, match="my_gen: output_type generate_until"):
        evaluate_capability({"s": Shortest()}, tmp_path / "o2",
                            CapabilityConfig(tasks=("my_gen",), include_path=str(tasks)))


def test_a_users_task_from_include_path(mini, tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "mine.yaml").write_text(
        "task: my_science\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {mini}\ntest_split: test\noutput_type: multiple_choice\n"
        "doc_to_text: \"Q: {{question}}\\nA:\"\ndoc_to_target: '{{choices.label.index(answerKey)}}'\n"
        "doc_to_choice: '{{choices.text}}'\nmetric_list:\n  - metric: acc\n")
    model = Shortest()
    m = evaluate_capability({"s": model}, tmp_path / "o",
                            CapabilityConfig(tasks=("my_science",), include_path=str(tasks)))
    assert m["per_model"]["s"]["my_science"]["acc"] == 0.5
    assert model.requests[0].prefix == f"Q: {QUESTIONS[0]['question']}\nA:"


def test_the_pipeline_reads_capability_as_a_list_or_a_table():
    assert EvalConfig().capability.tasks == ()
    assert EvalConfig(capability=["arc_easy"]).capability.tasks == ("arc_easy",)
    c = EvalConfig(capability={"tasks": ["arc_easy"], "limit": 50, "engine": "hf"}).capability
    assert (c.tasks, c.limit, c.engine) == (("arc_easy",), 50, "hf")


@pytest.mark.slow
def test_our_adapter_scores_arc_as_lm_evals_own_hf_model_does(smollm2, tmp_path):
    """The packaged model on ARC-Easy's first 24 questions: the log-likelihood of every
    choice through our backend equals lm-eval's HFLM on the same weights (float32)."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    from constitutional.evaluation.capability import _task_manager

    config = CapabilityConfig(arc_file=str(ARC), limit=24)
    ours = evaluate_capability({"ours": smollm2}, tmp_path, config)
    rows = [json.loads(line) for line in (tmp_path / "ours.jsonl").read_text().splitlines()]
    lm = HFLM(pretrained=smollm2.model, tokenizer=smollm2.tokenizer, batch_size=8)
    theirs = simple_evaluate(model=lm, tasks=["arc_easy"], limit=24, log_samples=True,
                             task_manager=_task_manager(tmp_path / "theirs", config),
                             bootstrap_iters=0)
    samples = {s["doc_id"]: s for s in theirs["samples"]["arc_easy"]}
    assert len(rows) == 24
    for row in rows:
        expected = [float(x[0]) for x in samples[row["doc_id"]]["filtered_resps"]]
        assert row["loglikelihoods"] == pytest.approx(expected, abs=1e-3)
        assert row["acc"] == bool(samples[row["doc_id"]]["acc"])
    assert ours["per_model"]["ours"]["arc_easy"]["acc"] == theirs["results"]["arc_easy"]["acc,none"]
