"""One config per stage: `cai run` and each stage command run the same step the same way.

The records test runs the real commands on the scripted backend; the defaults test reads
every stage command's options back and compares them with the config models."""

import inspect
import json

import pytest
import typer

from constitutional import cli
from constitutional.cli.options import options
from constitutional.config import StageConfig
from constitutional.pipeline import PipelineConfig

from .conftest import cai

def cli_defaults(command) -> dict:
    """The default each option of a command shows in its --help."""
    return {p.name: getattr(p.default, "default", p.default)
            for p in inspect.signature(command).parameters.values()}


STAGE_COMMANDS = {
    "generate": cli.generate, "pairs": cli.sample_pairs, "redteam": cli.redteam,
    "critique": cli.critique, "sft-data": cli.build_sft, "label": cli.label,
    "train sft": cli.train_sft, "train pm": cli.train_pm, "train dpo": cli.train_dpo,
    "train rl": cli.train_rl, "eval harm": cli.eval_harm, "eval refusals": cli.eval_refusals,
    "eval compare": cli.eval_compare, "eval capability": cli.eval_capability,
}


@pytest.mark.parametrize("name", sorted(STAGE_COMMANDS))
def test_every_command_line_default_is_its_config_default(name):
    command = STAGE_COMMANDS[name]
    model = command.config_model
    shown = cli_defaults(command)
    for field, info in model.model_fields.items():
        if field not in shown:  # a field the command fixes itself (eval harm: compare)
            continue
        default = info.get_default(call_default_factory=True)
        norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v
        assert norm(shown[field]) == norm(default), (name, field, shown[field], default)
    # fixed by the command, a nested [eval.capability] table, the root --engine
    assert set(model.model_fields) - set(shown) <= {"judge", "compare", "judge_principles",
                                                    "capability", "engine"}, name


def test_the_pipeline_sections_are_the_stage_configs():
    """Each pipeline section *is* the stage's config model, so its defaults are the same
    objects the commands show."""
    c = PipelineConfig()
    pairs = {"critique": cli.critique, "helpful": cli.generate, "sft_data": cli.build_sft,
             "sft": cli.train_sft, "pairs": cli.sample_pairs, "label": cli.label,
             "redteam": cli.redteam, "eval": cli.eval_harm}
    for section, command in pairs.items():
        assert type(getattr(c, section)) is command.config_model, section
        assert getattr(c, section) == command.config_model(), section
    assert type(c.rl.dpo) is cli.train_dpo.config_model and c.rl.dpo == cli.train_dpo.config_model()
    assert type(c.rl.rloo) is cli.train_rl.config_model and c.rl.rloo == cli.train_rl.config_model()
    assert c.pm.training() == cli.train_pm.config_model()


def test_options_validates_and_names_the_option():
    class Toy(StageConfig):
        rounds: int = 3

    app = typer.Typer()
    seen = {}

    @app.command()
    @options(Toy)
    def toy(config: Toy = None) -> None:
        seen["config"] = config

    from typer.testing import CliRunner

    assert CliRunner().invoke(app, ["--rounds", "5"]).exit_code == 0 and seen["config"].rounds == 5
    assert cli_defaults(toy)["rounds"] == 3


def _rows(path):
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    return sorted(rows, key=lambda r: r.get("id") or json.dumps(r, sort_keys=True))


def test_cai_run_and_the_single_commands_write_identical_records(tmp_path):
    run = tmp_path / "run"
    config = tmp_path / "p.toml"
    config.write_text("""name = "same"
[models]
policy = "scripted"
feedback = "scripted"
batch_size = 4
[prompts]
train_redteam = 6
train_helpful = 4
eval_harmful = 2
eval_borderline = 0
eval_helpful = 0
[critique]
rounds = 2
[sft_data]
helpful_ratio = 1.0
""")
    cai("run", config, "--out", run, "--only", "prompts", "--only", "critique", "--only", "helpful",
        "--only", "sft-data", check=True)
    red, helpful = run / "prompts" / "train_redteam.jsonl", run / "prompts" / "train_helpful.jsonl"
    one = tmp_path / "one"
    cai("critique", "-p", red, "-o", one / "critique", "-m", "scripted", "--rounds", 2, check=True)
    cai("generate", "-p", helpful, "-o", one / "helpful", "-m", "scripted", check=True)
    cai("sft-data", "--trajectories", one / "critique" / "critique.jsonl", "--helpful",
        one / "helpful" / "generate.jsonl", "-o", one / "sft", "--helpful-ratio", 1.0, check=True)
    assert _rows(run / "critique" / "critique.jsonl") == _rows(one / "critique" / "critique.jsonl")
    assert _rows(run / "helpful" / "generate.jsonl") == _rows(one / "helpful" / "generate.jsonl")
    assert _rows(run / "sft" / "sft.jsonl") == _rows(one / "sft" / "sft.jsonl")
    # Labels: the same pairs file labelled by the pipeline's stage and by `cai label`.
    cai("pairs", "-p", red, "-o", run / "rlaif", "-m", "scripted", check=True)
    cai("run", config, "--out", run, "--only", "label", check=True)
    cai("label", "--pairs", run / "rlaif" / "pairs.jsonl", "-o", one / "rlaif", "-m", "scripted",
        check=True)
    assert len(_rows(run / "rlaif" / "labels.jsonl")) == 6
    assert _rows(run / "rlaif" / "labels.jsonl") == _rows(one / "rlaif" / "labels.jsonl")


def _help_commands(command, path=()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            yield from _help_commands(sub, (*path, name))


def test_every_help_page_shows_its_text_whole():
    """`--help` of every command, wide and in a terminal 80 columns wide: the summary and
    each option's help read as written, every option's name stands whole (a table once cut
    them short, "--few-shot-exa…"), and each command's list gives every summary whole."""
    import re

    from typer.main import get_command
    from typer.testing import CliRunner

    def flat(text: str) -> str:  # a word wrapped at its hyphen ("highest-\n  priority") joined
        return " ".join(re.sub(r"-\n\s+", "-", text.replace("`", "")).split())

    root = get_command(cli.app)
    runner = CliRunner()
    checked = rows_checked = 0
    for path, command in _help_commands(root):
        summary = inspect.cleandoc(command.help or "").split("\n\n")[0]
        for columns in ("250", "80"):
            page = runner.invoke(cli.app, [*path, "--help"], env={"COLUMNS": columns})
            assert page.exit_code == 0, (path, page.output)
            assert max(map(len, page.output.splitlines())) <= int(columns), (path, columns)
            words = set(re.split(r"[\s,/]+", page.output))
            for param in command.params:
                if param.param_type_name == "option" and not param.hidden:
                    assert {*param.opts, *param.secondary_opts} <= words, (path, columns,
                                                                           param.opts)
            shown = flat(page.output)
            assert flat(summary) in shown, (path, summary)
            if columns == "250":
                for param in command.params:
                    if getattr(param, "help", None) and not param.hidden:
                        assert flat(param.help) in shown, (path, param.name, param.help)
                        checked += 1
            if path:  # the parent's list of commands
                parent = runner.invoke(cli.app, [*path[:-1], "--help"], env={"COLUMNS": columns})
                listed = flat(parent.output.split("Commands:")[1])
                assert f"{path[-1]} {flat(summary)}" in listed, (path, columns)
                rows_checked += 1
    assert checked > 100 and rows_checked > 60
