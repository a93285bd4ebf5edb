import json

import pytest

from constitutional.errors import CaiError
from constitutional.hashing import canonical_json, content_hash
from constitutional.records import RunStore, provenance


def test_content_hash_is_canonical():
    assert content_hash({"b": 1, "a": [1, "é"]}) == content_hash({"a": [1, "é"], "b": 1})
    assert canonical_json({"b": 1, "a": 2}) == '{"a":2,"b":1}'
    assert content_hash({"a": 1}) != content_hash({"a": 2})


def test_append_skips_ids_already_written(tmp_path):
    stage = RunStore(tmp_path).stage("s")
    assert stage.append([{"id": "a", "x": 1}, {"id": "b", "x": 2}]) == 2
    assert stage.append([{"id": "b", "x": 3}, {"id": "c", "x": 4}]) == 1
    reopened = RunStore(tmp_path).stage("s")
    assert [r["id"] for r in reopened.records()] == ["a", "b", "c"]
    assert reopened.count() == 3


def test_torn_last_line_is_dropped(tmp_path):
    stage = RunStore(tmp_path).stage("s")
    stage.append([{"id": "a"}, {"id": "b"}])
    with open(stage.path, "a") as f:
        f.write('{"id": "c", "half')  # a crash in the middle of a write
    reopened = RunStore(tmp_path).stage("s")
    assert reopened.ids() == {"a", "b"}
    reopened.append([{"id": "c"}])
    lines = stage.path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "b", "c"]


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    stage = RunStore(tmp_path).stage("s")
    stage.path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(CaiError, match=r"s\.jsonl:2: not a JSON record"):
        stage.ids()


def test_manifest_provenance_and_refusal_to_mix(tmp_path):
    stage = RunStore(tmp_path).stage("s")
    stage.start(fingerprint={"model": "m1"}, provenance=provenance(model="m1"))
    stage.append([{"id": "a"}])
    m = stage.finish(new_tokens=5)
    assert m["status"] == "complete" and m["records"] == 1 and m["new_tokens"] == 5
    for key in ("package_version", "git_commit", "torch", "transformers", "model"):
        assert key in m["provenance"]
    again = RunStore(tmp_path).stage("s")
    again.start(fingerprint={"model": "m1"}, provenance={})  # same inputs: resume is fine
    with pytest.raises(CaiError, match="other settings"):
        RunStore(tmp_path).stage("s").start(fingerprint={"model": "m2"}, provenance={})
    fresh = RunStore(tmp_path).stage("s")
    fresh.start(fingerprint={"model": "m2"}, provenance={}, overwrite=True)
    assert fresh.count() == 0


def test_read_only_folder_is_a_clear_error(tmp_path):
    import os

    if os.geteuid() == 0:
        # root ignores permissions; a file where the folder should be fails the same way
        (tmp_path / "run").write_text("")
        with pytest.raises(CaiError, match="not a folder"):
            RunStore(tmp_path / "run")
        return
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(CaiError, match="cannot write"):
            RunStore(tmp_path).stage("s").append([{"id": "a"}])
    finally:
        tmp_path.chmod(0o700)
