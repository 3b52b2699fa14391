from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from medsynth.cli import cli
from tests.helpers import minimal_doc


def _all_commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from _all_commands(cmd, (*prefix, name))


def test_every_command_has_help():
    runner = CliRunner()
    for path, cmd in _all_commands(cli):
        assert cmd.help, f"{' '.join(path)} has no help text"
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output


def test_schema_validate_good_and_bad(tmp_path: Path):
    runner = CliRunner()
    ok = runner.invoke(cli, ["schema", "validate", "general-adult"])
    assert ok.exit_code == 0 and ok.output.startswith("OK general-adult")
    doc = minimal_doc()
    doc["channels"][0]["min"] = 700
    doc["attributes"][0]["categories"] = ["female", "woman"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    result = runner.invoke(cli, ["schema", "validate", str(bad)])
    assert result.exit_code == 1
    assert str(bad) in result.output and "2 problems" in result.output
    assert "$.channels[0]" in result.output and "$.attributes[0].categories[1]" in result.output


def test_usage_error_exits_2():
    result = CliRunner().invoke(cli, ["ingest"])
    assert result.exit_code == 2


@pytest.mark.parametrize("args", [["schema", "show", "liver-panel"], ["schema", "list"]])
def test_schema_show_and_list(args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0
    assert "liver-panel" in result.output
