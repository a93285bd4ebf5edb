import pytest

from constitutional.errors import CaiError
from constitutional.prompts import load_prompts

from .conftest import SHARED


def test_jsonl_with_default_columns_and_dedup(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"prompt": "hi", "category": "benign"}\n"bare string"\n\n{"text": "hi"}\n'
                 '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", '
                 '"content": "b"}, {"role": "user", "content": "c"}]}\n')
    prompts = load_prompts(p)
    assert [x.text for x in prompts] == ["hi", "bare string", "c"]
    assert prompts[0].category == "benign"
    assert len(prompts[2].messages) == 3


def test_csv_with_column(tmp_path):
    advbench = SHARED / "data" / "advbench" / "harmful_behaviors.csv"
    prompts = load_prompts(advbench, column="goal", limit=10)
    assert len(prompts) == 10 and all(x.text for x in prompts)


@pytest.mark.parametrize("text,fragment", [
    ('{"prompt": "ok"}\n{"prompt": ', ":2: not valid JSON"),
    ('{"prompt": "ok"}\n{"body": "x"}\n', ":2: no column"),
    ('{"prompt": "   "}\n', ":1: field 'prompt': empty"),
    ('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n',
     ":1: field 'messages': must end with a user turn"),
])
def test_bad_rows_name_the_line(tmp_path, text, fragment):
    p = tmp_path / "bad.jsonl"
    p.write_text(text)
    with pytest.raises(CaiError, match=fragment):
        load_prompts(p)


def test_missing_csv_column_lists_columns(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("goal,target\nsay hi,ok\n")
    with pytest.raises(CaiError, match=r"x\.csv:2: no column 'prompt' \(columns: goal, target\)"):
        load_prompts(p, column="prompt")
