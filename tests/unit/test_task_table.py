"""The task table (alignkit/config/tasks.py) names every task in each of its columns, the trainers it names are
TRL's, and what `mix preview` says of them at max_length (alignkit/data/lengths.py) on hand-made counts."""

from __future__ import annotations

import importlib.util
import json
from importlib import resources

import pytest
from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.config import recipes, tasks
from alignkit.data.lengths import cpt_report, orpo_truncation, packing


def test_every_table_has_every_task():
    for table in (tasks.DATA_FORMAT, tasks.TRL_CONFIG, tasks.TRAINER):
        assert set(table) == set(tasks.TASKS)
    assert set(tasks.FORMAT_WORDS) == set(tasks.DATA_FORMAT.values())
    assert tasks.PREFERENCE == {t for t in tasks.TASKS if tasks.data_format(t) == "dpo"}
    help_text = tasks.task_choices_help()
    assert all(f"{t} ({tasks.FORMAT_WORDS[tasks.data_format(t)]})" in help_text for t in tasks.TASKS)


@pytest.mark.parametrize("task", tasks.TASKS)
def test_a_task_has_its_defaults_recipe_module_trl_fields_and_command(task):
    """A task is a row here plus these files; one missing is a task that validates but cannot run."""
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


def test_the_trainers_are_trls():
    import trl

    from alignkit.train.trl_compat import orpo

    found = {"ORPOTrainer": orpo()[1]}  # under trl.experimental in TRL 1.16
    for task in tasks.TASKS:
        name = tasks.trainer(task)
        cls = found.get(name) or getattr(trl, name)
        assert cls.__name__ == name


def test_orpo_cuts_the_answers_never_the_prompt_and_drops_nothing():
    # ((prompt, answer) of prompt+chosen, the same of prompt+rejected) per row
    rows = [((5, 5), (5, 3)), ((5, 20), (5, 3)), ((12, 4), (12, 2)), ((3, 2), (3, 9))]
    out = orpo_truncation(rows, max_length=10)
    assert (out["dropped"], out["truncated"], out["no_completion_left"]) == (0, 3, 1)
    assert out["truncated_pct"] == 75.0 and orpo_truncation(rows, max_length=None)["truncated"] == 0


def test_packing_counts_come_from_trls_pack_dataset():
    lengths = [10, 3, 7, 2, 5]
    bfd = packing(lengths, max_length=6, strategy="bfd")  # the 10 and the 7 are cut to 6
    assert (bfd["sequences"], bfd["tokens"], bfd["tokens_dropped"], bfd["documents_longer"]) == (4, 27, 5, 2)
    split = packing(lengths, max_length=6, strategy="bfd_split")
    assert split["tokens_dropped"] == 0 and split["sequences"] == 5
    assert packing(lengths, max_length=6, strategy="wrapped")["sequences"] == 5  # ceil(27 / 6)


def test_cpt_without_packing_cuts_each_long_document():
    out = cpt_report([10, 3, 7], rows=3, max_length=6, packed=False, strategy="bfd", truncation_mode="keep_start")
    assert (out["truncated"], out["tokens_dropped"], out["tokens"]) == (2, 5, 20)
    sampled = cpt_report([10, 3], rows=20, max_length=6, packed=True, strategy="bfd", truncation_mode="keep_start")
    assert sampled["sequences"] == 2 and sampled["sequences_estimate"] == 20
