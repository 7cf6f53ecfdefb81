"""Every task of alignkit/config/tasks.py is whole: a row in each table, its defaults layer, its trainer recipe,
its command, and its TRL config in the field snapshot. A task is a row there plus these files; one missing is a
task that validates but cannot run."""

from __future__ import annotations

import importlib.util
import json
from importlib import resources

import pytest
from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.config import recipes, tasks


@pytest.mark.parametrize("task", tasks.TASKS)
def test_a_task_has_its_row_defaults_recipe_and_command(task):
    assert task in tasks.DATA_FORMAT and tasks.data_format(task) in ("sft", "dpo", "cpt")
    assert task in tasks.TRL_CONFIG
    assert resources.files("alignkit.config").joinpath("defaults", f"{task}.yaml").is_file()
    assert importlib.util.find_spec(f"alignkit.train.{task}") is not None
    snapshot = json.loads(resources.files("alignkit.config").joinpath("trl_fields.json").read_text())
    assert tasks.trl_config(task) in snapshot["tasks"]
    res = CliRunner().invoke(app, [task, "--help"])
    assert res.exit_code == 0, res.output


def test_an_unknown_task_is_refused_naming_the_known_ones():
    from alignkit.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        recipes.check_task("ppo")
    assert "unknown task 'ppo'" in str(e.value)
    assert all(t in str(e.value) for t in tasks.TASKS)
