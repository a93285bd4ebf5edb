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
                    [":12:", "principle HARM-01", "'critque'", "unknown key"]),
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
