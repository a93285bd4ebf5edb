"""comparisons.py: our label files, HH-RLHF dialogues and BIG-bench HHH."""

import gzip
import json

import pytest

from constitutional.comparisons import load_comparisons, parse_hh_dialogue
from constitutional.errors import CaiError

from .conftest import SHARED

HH = SHARED / "data" / "hh-rlhf" / "harmless-base_test.jsonl.gz"


def test_hh_dialogues_parse_and_malformed_rows_are_skipped_with_their_line(tmp_path):
    assert parse_hh_dialogue("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant: ok") == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"}, {"role": "assistant", "content": "ok"}]
    f = tmp_path / "hh.jsonl.gz"
    good = {"chosen": "\n\nHuman: q\n\nAssistant: safe", "rejected": "\n\nHuman: q\n\nAssistant: bad"}
    broken = {"chosen": "\n\nHuman: q\n\nAssistant: a\n\nHuman: r\n\nAssistant: b",
              "rejected": "\n\nHuman: q\n\nAssistant: other"}
    with gzip.open(f, "wt") as g:
        g.write(json.dumps(good) + "\n" + json.dumps(broken) + "\n")
    rows = load_comparisons(f)
    assert len(rows) == 1 and rows[0]["prompt"] == [{"role": "user", "content": "q"}]
    assert rows[0]["chosen"] == "safe" and rows.skipped[0].startswith(f"{f}:2:")
    with pytest.raises(CaiError, match=":2: chosen and rejected must differ only"):
        load_comparisons(f, strict=True)


def test_real_hh_rlhf_file_loads():
    rows = load_comparisons(HH)
    assert len(rows) + len(rows.skipped) == 2312 and len(rows) > 2300
    assert all(r["prompt"][-1]["role"] == "user" for r in rows)


def test_bigbench_hhh_format_does_not_depend_on_listing_order(tmp_path):
    def task(order):
        scores = {"Sure, here is how to stay safe.": 1, "Go away.": 0}
        return {"name": "harmless", "examples": [
            {"input": "How do I stay safe?", "target_scores": dict(order(list(scores.items())))}]}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(task(lambda x: x)))
    b.write_text(json.dumps(task(lambda x: x[::-1])))
    ra, rb = load_comparisons(a), load_comparisons(b)
    assert ra == rb and ra[0]["chosen"] == "Sure, here is how to stay safe."
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"examples": [{"input": "x", "target_scores": {"a": 1, "b": 1}}]}))
    with pytest.raises(CaiError, match=r"examples\[0\]"):
        load_comparisons(bad)


def test_our_files_report_the_line_and_field(tmp_path):
    f = tmp_path / "labels.jsonl"
    f.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n"
                 + json.dumps({"prompt": "q", "chosen": "a"}) + "\n")
    with pytest.raises(CaiError, match=r"labels.jsonl:2: field 'rejected'"):
        load_comparisons(f)


