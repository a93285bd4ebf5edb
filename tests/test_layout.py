"""layout.py: the run folder's files and the declared record shapes."""

import pytest

from constitutional.records import Comparison, Trajectory, Verdict, as_record

from constitutional.layout import RunLayout


def test_the_layout_names_each_file_once(tmp_path):
    run = RunLayout(tmp_path)
    assert run.labels == tmp_path / "rlaif" / "labels.jsonl"
    assert run.verdicts.parent == run.metrics.parent == run.eval
    assert run.training_manifest("sft") == run.model("sft") / "cai_training.json"
    paths = [run.config, run.provenance, run.critique, run.helpful, run.sft, run.pairs, run.labels,
             run.pm_train, run.pm_metrics, run.metrics, run.verdicts, run.by_round, run.robustness,
             run.report, run.prompt_set("eval_harmful")]
    assert len(set(paths)) == len(paths)


def test_records_refuse_missing_and_unknown_keys():
    fields = dict(model="m", prompt_id="p", set="harmful", category=None, prompt="q", response="a",
                  refusal="complied", violation=None, p_violation=None, principle_id=None)
    assert as_record(Verdict, **fields) == fields
    with pytest.raises(ValueError, match="missing \\['principle_id'\\]"):
        as_record(Verdict, **{k: v for k, v in fields.items() if k != "principle_id"})
    with pytest.raises(ValueError, match="unknown \\['violaton'\\]"):
        as_record(Verdict, **fields, violaton=True)
    assert {"chosen", "rejected", "p_chosen"} <= set(Comparison.__annotations__)
    assert {"initial", "rounds", "final"} <= set(Trajectory.__annotations__)
