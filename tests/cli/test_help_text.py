"""`alignkit --help` and every command's help read as a newcomer needs them: whole one-line summaries, and
placeholders (PATH, N, RECIPE) where typer would print Python types (<list[Path]>, <str>, {adapter})."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from alignkit.cli import app


def _paths(command, prefix: list[str]):
    for name, sub in getattr(command, "commands", {}).items():
        yield prefix + [name]
        yield from _paths(sub, prefix + [name])


COMMANDS = list(_paths(typer.main.get_command(app), []))


def _help(args: list[str], columns: int = 80) -> str:
    res = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": str(columns)})
    assert res.exit_code == 0, (args, res.output)
    return res.output


@pytest.mark.parametrize("columns", [80, 120])
def test_top_level_help_lists_every_command_whole(columns):
    text = _help([], columns)
    listed = text.split("Commands:")[1]
    rows = [line.strip() for line in listed.splitlines() if line.strip()]
    assert len(rows) == len(app.registered_commands) + len(app.registered_groups)
    for row in rows:
        assert not row.endswith("..."), row  # typer cuts a summary that does not fit
        assert row.endswith("."), row


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_help_shows_placeholders_not_python_types(args):
    text = _help(args, 200)
    usage = text.splitlines()[0]
    assert not re.search(r"\{[a-z_]+\}", usage), usage  # {adapter}: typer's name for a required argument
    options = text.split("Options:")[1] if "Options:" in text else ""
    for line in options.splitlines():
        assert not re.search(r"<(str|int|float|path|list\[[A-Za-z]+\]|[a-z]+ range)>", line), (args, line)


def test_placeholders_say_what_goes_there():
    text = _help(["sft"], 200)
    for want in ("--recipe RECIPE", "--config FILE", "--num-nodes N"):
        assert want in text, want
    assert "Usage: alignkit merge [OPTIONS] {ADAPTER}" in _help(["merge"], 200)
    assert "--gpu-mem-gb NUM" in _help(["plan"], 200)
