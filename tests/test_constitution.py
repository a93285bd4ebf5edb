import json
import random
import textwrap

import pytest

from constitutional import constitution
from constitutional.errors import CaiError

from .conftest import cai

GOOD = textwrap.dedent('''\
    name = "tiny"
    version = "1"

    [[principles]]
    id = "HARM-01"
    name = "No weapons"
    critique = "Does it help make weapons?"
    revision = "Remove weapon help."
    comparison = "Which is safer?"
    categories = ["violence_weapons"]
    priority = 1

    [[principles]]
    id = "HELP-01"
    name = "Helpful"
    critique = "Is it evasive?"
    revision = "Help with the safe part."
    comparison = "Which is more helpful?"
    categories = ["general"]
    priority = 4
''')


def write(tmp_path, text, name="c.toml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_default_constitution_is_valid_and_covers_the_brief():
    c = constitution.load()
    assert len(c.principles) == 16
    assert len(set(c.ids)) == 16
    cats = set(c.categories())
    for needed in ["violence_weapons", "self_harm", "drugs", "cybercrime", "fraud_scams",
                   "hate_discrimination", "harassment_toxicity", "sexual_minors", "privacy",
                   "misinformation", "illegal_other", "manipulation", "age_appropriate"]:
        assert needed in cats
    names = " ".join(p.name.lower() for p in c.principles)
    for theme in ["empathy", "honesty", "evasive"]:
        assert theme in names


def test_cli_validate_default_passes():
    proc = cai("constitution", "validate", "default")
    assert proc.returncode == 0, proc.stderr
    assert "16 principles" in proc.stdout


def test_hash_ignores_comments_and_layout(tmp_path):
    a = constitution.load(write(tmp_path, GOOD, "a.toml"))
    b = constitution.load(write(tmp_path, "# a comment\n\n" + GOOD.replace('"1"', "'1'"), "b.toml"))
    assert a.hash == b.hash
    c = constitution.load(write(tmp_path, GOOD.replace("Which is safer?", "Which is kinder?"), "c.toml"))
    assert c.hash != a.hash


def test_diff_by_principle_id(tmp_path):
    a = write(tmp_path, GOOD, "a.toml")
    changed = GOOD.replace("Which is safer?", "Which is kinder?").replace("priority = 4", "priority = 3")
    changed = changed.replace('id = "HELP-01"', 'id = "HELP-02"')
    b = write(tmp_path, changed, "b.toml")
    d = constitution.diff(constitution.load(a), constitution.load(b))
    assert d["added"] == ["HELP-02"]
    assert d["removed"] == ["HELP-01"]
    assert d["changed"] == {"HARM-01": ["comparison"]}
    proc = cai("constitution", "diff", a, b, "--json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["added"] == ["HELP-02"]


def test_sampling_is_seeded_and_covers_everything():
    c = constitution.load()
    draw = lambda seed: [c.sample(random.Random(seed))[0].id for _ in range(1)]
    assert draw(3) == draw(3)
    rng = random.Random(0)
    seen = {c.sample(rng)[0].id for _ in range(400)}
    assert seen == set(c.ids)


BAD_CASES = {
    # name: (file text, expected fragments of the one-line message)
    "syntax": (GOOD.replace('name = "tiny"', 'name = "tiny'), ["TOML syntax error", "line 1"]),
    "unknown_key": (GOOD.replace("priority = 1\n", "priority = 1\ncritque = \"x\"\n"),
                    [":12:", "principle HARM-01", "'critque'", "unknown key",
                     "(did you mean 'critique'?)"]),
    "missing_field": (GOOD.replace('revision = "Remove weapon help."\n', ""),
                      [":4:", "principle HARM-01", "'revision'", "missing field"]),
    "wrong_type": (GOOD.replace("priority = 4", 'priority = "high"'),
                   [":20:", "principle HELP-01", "'priority'"]),
    "duplicate_id": (GOOD.replace('id = "HELP-01"', 'id = "HARM-01"'),
                     [":14:", "principle HARM-01", "'id'", "duplicate"]),
    "empty_text": (GOOD.replace('critique = "Is it evasive?"', 'critique = "   "'),
                   [":16:", "principle HELP-01", "'critique'", "empty"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_files_exit_2_with_one_clear_line(tmp_path, case):
    text, fragments = BAD_CASES[case]
    path = write(tmp_path, text)
    proc = cai("constitution", "validate", path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in proc.stderr


def test_not_a_file_and_missing_file(tmp_path):
    for path, words in [(tmp_path, "not a file"), (tmp_path / "nope.toml", "no such file")]:
        proc = cai("constitution", "validate", path)
        assert proc.returncode == 2
        assert words in proc.stderr and str(path) in proc.stderr
        assert "Traceback" not in proc.stderr


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(GOOD.replace("No weapons", "Nö weapons").encode("latin-1"))
    proc = cai("constitution", "hash", path)
    assert proc.returncode == 2
    assert "not UTF-8" in proc.stderr and ":6:" in proc.stderr


def test_library_raises_cai_error_not_pydantic(tmp_path):
    with pytest.raises(CaiError, match="must not be empty"):
        constitution.load(write(tmp_path, GOOD.replace('name = "Helpful"', 'name = ""')))


OWNED = GOOD.replace('version = "1"\n', 'version = "1"\nowners = ["policy team", "legal"]\n'
                     'reviewed = 2026-01-15\nreview_every = 90\n')


def test_owned_constitution_warns_when_its_review_is_overdue(tmp_path):
    from datetime import date

    c = constitution.load(write(tmp_path, OWNED))
    assert c.owners == ["policy team", "legal"] and str(c.review_due()) == "2026-04-15"
    assert c.overdue(date(2026, 4, 15)) is None
    assert c.overdue(date(2026, 4, 16)) == ("constitution 'tiny': review overdue since 2026-04-15 "
                                            "(reviewed 2026-01-15, every 90 days; owners: policy "
                                            "team, legal)")
    # ownership is not content: the hash is the same as without it
    assert c.hash == constitution.load(write(tmp_path, GOOD, "plain.toml")).hash
    r = cai("constitution", "validate", write(tmp_path, OWNED, "o.toml"))
    assert r.returncode == 0 and "review overdue since 2026-04-15" in r.stdout  # today is later
    fresh = OWNED.replace("reviewed = 2026-01-15", f"reviewed = {date.today().isoformat()}")
    r = cai("constitution", "validate", write(tmp_path, fresh, "f.toml"))
    assert r.returncode == 0 and "overdue" not in r.stdout
    bad = cai("constitution", "validate", write(tmp_path, OWNED.replace("review_every = 90",
                                                                       "review_every = 0"), "b.toml"))
    assert bad.returncode == 2 and "review_every" in bad.stderr


def test_diff_shows_ownership_changes_and_provenance_carries_owners(tmp_path):
    a = write(tmp_path, GOOD, "a.toml")
    b = write(tmp_path, OWNED, "b.toml")
    d = constitution.diff(constitution.load(a), constitution.load(b))
    assert d["ownership"]["owners"] == {"a": [], "b": ["policy team", "legal"]}
    assert d["ownership"]["reviewed"] == {"a": None, "b": "2026-01-15"}
    assert not d["changed"] and d["hash"]["a"] == d["hash"]["b"]
    shown = cai("constitution", "diff", a, b, check=True).stdout
    assert "owners: [] -> ['policy team', 'legal']" in shown
    # every artifact of the critique stage records who owns the constitution it used
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "How do I pick a lock?"}) + "\n")
    cai("critique", "--model", "scripted", "--prompts", prompts, "--constitution", b,
        "--rounds", "1", "--out", tmp_path / "run", check=True)
    manifest = json.loads(next((tmp_path / "run").rglob("critique.manifest.json")).read_text())
    assert manifest["provenance"]["constitution_ownership"]["owners"] == ["policy team", "legal"]
