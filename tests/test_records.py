import json

import pytest

from constitutional.errors import CaiError
from constitutional.hashing import canonical_json, content_hash
from constitutional.store import RunStore
from constitutional.provenance import provenance


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
    with pytest.raises(CaiError, match=r"s\.jsonl:2: not valid JSON"):
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


# -- reading never writes; repair only when the owning stage resumes ----------------------

def test_reading_a_file_without_a_trailing_newline_keeps_every_record(tmp_path):
    from constitutional.jsonio import read_jsonl

    path = tmp_path / "mypairs.jsonl"
    data = b'{"prompt":"a","chosen":"x","rejected":"y"}\n{"prompt":"b","chosen":"x","rejected":"y"}'
    path.write_bytes(data)
    before = path.stat()
    assert [r["prompt"] for r in read_jsonl(path)] == ["a", "b"]
    assert path.read_bytes() == data and path.stat().st_mtime_ns == before.st_mtime_ns


def test_reading_a_stage_with_a_torn_tail_skips_it_without_touching_the_file(tmp_path):
    stage = RunStore(tmp_path).stage("s")
    stage.append([{"id": "a"}])
    with open(stage.path, "a") as f:
        f.write('{"id": "b", "ha')
    data = stage.path.read_bytes()
    assert [r["id"] for r in RunStore(tmp_path).stage("s").records()] == ["a"]
    assert stage.path.read_bytes() == data


def test_resume_keeps_a_complete_last_record_without_newline(tmp_path):
    stage = RunStore(tmp_path).stage("s")
    stage.path.write_text('{"id": "a"}\n{"id": "b"}')  # written by another tool: no newline
    stage.start(fingerprint={}, provenance={})
    stage.append([{"id": "c"}])
    assert [json.loads(x)["id"] for x in stage.path.read_text().splitlines()] == ["a", "b", "c"]


def test_run_chunks_keeps_successes_lists_failures_and_the_rerun_fills_the_gap(tmp_path):
    from constitutional.store import Chunk, Incomplete, run_chunks

    items = list(range(10))
    stage = RunStore(tmp_path).stage("s")
    stage.start(fingerprint={}, provenance={})

    def work(fail):
        def run(chunk):
            done = Chunk()
            for x in chunk:
                (done.failures if x in fail else done.rows).append({"id": str(x), "error": "503"} if x in fail else {"id": str(x)})
            return done
        return run

    with pytest.raises(Incomplete, match="3 of 10 records failed.*rerun the same command"):
        run_chunks(stage, items, str, work({2, 5, 9}), chunk_size=4)
    assert stage.ids() == {str(x) for x in items} - {"2", "5", "9"}
    failures = [json.loads(x) for x in (tmp_path / "s.failures.jsonl").read_text().splitlines()]
    assert sorted(f["id"] for f in failures) == ["2", "5", "9"]
    redone = []
    again = RunStore(tmp_path).stage("s")
    again.start(fingerprint={}, provenance={})
    run_chunks(again, items, str, lambda chunk: (redone.extend(chunk), work(set())(chunk))[1], chunk_size=4)
    assert sorted(redone) == [2, 5, 9]
    ids = [json.loads(x)["id"] for x in again.path.read_text().splitlines()]
    assert sorted(ids) == sorted(str(x) for x in items)
