"""`alignkit orpo` and `alignkit cpt` without training: dry runs, validate, `config fields`, `plan`, Slurm's
script, the handbook keys they translate, bad input (exit 2, the key and the fix), and `alignkit dpo` refusing an
ORPO config. Training them is tests/e2e/test_orpo_cpt.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from alignkit.config.resolve import resolve_config
from alignkit.errors import ConfigError
from alignkit.launch.build import plan_run
from tests.helpers import flat, run_cli


@pytest.fixture
def files(tmp_path: Path, tiny_model_dir: str) -> dict[str, Path]:
    """A tiny ORPO config (DPO's pairs), a tiny CPT config and its text data (a `body` column)."""
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}) + "\n"
                             for i in range(8)))
    text = tmp_path / "text.jsonl"
    text.write_text("".join(json.dumps({"body": f"some text number {i}", "id": i}) + "\n" for i in range(8)))
    orpo = tmp_path / "orpo.yaml"
    orpo.write_text(yaml.safe_dump({
        "model": {"model_name_or_path": tiny_model_dir},
        "data": {"mixture": [{"path": str(prefs)}]},
        "train": {"output_dir": str(tmp_path / "orpo-out"), "beta": 0.2, "max_length": 64},
    }))
    cpt = tmp_path / "cpt.yaml"
    cpt.write_text(yaml.safe_dump({
        "model": {"model_name_or_path": tiny_model_dir},
        "data": {"mixture": [{"path": str(text)}], "text_column": "body"},
        "train": {"output_dir": str(tmp_path / "cpt-out"), "max_length": 64},
    }))
    return {"orpo": orpo, "cpt": cpt, "prefs": prefs, "text": text}


def problems_of(task: str, **kw) -> dict[str, object]:
    with pytest.raises(ConfigError) as exc:
        resolve_config(task, **kw)
    return {p.where: p for p in exc.value.problems}


# --------------------------------------------------------------------------- the commands


@pytest.mark.parametrize("task", ["orpo", "cpt"])
def test_dry_run_json_starts_the_tasks_own_trainer(files, task):
    res = run_cli(task, "--config", files[task], "--profile", "cpu", "--dry-run", "--json")
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    assert plan["task"] == task and plan["config"]["task"] == task
    assert f"alignkit.train.{task}" in plan["command"]


def test_orpo_and_cpt_are_listed_with_their_help():
    res = run_cli("--help")
    assert res.returncode == 0
    assert " orpo " in res.stdout and " cpt " in res.stdout
    for task, words in (("orpo", "reference model"), ("cpt", "text column")):
        res = run_cli(task, "--help")
        assert res.returncode == 0, res.stderr
        assert words in flat(res.stdout)
        assert f"alignkit config fields --task {task}" in flat(res.stdout)


def test_validate_takes_the_new_tasks(files):
    for task in ("orpo", "cpt"):
        res = run_cli("validate", "--task", task, "--config", files[task], "--profile", "cpu")
        assert res.returncode == 0, res.stderr
        assert f"valid {task}" in flat(res.stderr)


def test_config_fields_are_orpoconfigs_and_sftconfigs():
    res = run_cli("config", "fields", "--task", "orpo", "train")
    assert res.returncode == 0, res.stderr
    for name in ("beta", "max_completion_length", "disable_dropout"):
        assert name in res.stdout
    assert "loss_type" not in res.stdout and "precompute_ref_log_probs" not in res.stdout  # DPO's, not ORPO's
    res = run_cli("config", "fields", "--task", "cpt")
    assert res.returncode == 0, res.stderr
    assert "packing" in res.stdout and "text_column" in res.stdout


def test_the_orpo_train_section_is_validated_against_orpoconfig():
    from alignkit.config.train import train_model
    from alignkit.train.trl_compat import orpo

    import dataclasses

    ORPOConfig, _ = orpo()
    real = {f.name for f in dataclasses.fields(ORPOConfig) if f.init and not f.name.startswith("_")}
    assert set(train_model("orpo").model_fields) <= real
    assert {"beta", "max_length", "max_completion_length"} <= set(train_model("orpo").model_fields)


# --------------------------------------------------------------------------- defaults and the handbook keys


def test_defaults_layers(files):
    orpo = resolve_config("orpo", config_files=[str(files["orpo"])]).config
    assert orpo.train.beta == 0.2 and orpo.train.save_total_limit == 2
    cpt = resolve_config("cpt", config_files=[str(files["cpt"])]).config
    assert cpt.train.packing is True  # CPT packs by default
    assert cpt.train.packing_strategy == "bfd_split"  # a long document is split, not cut (TRL's bfd drops the rest)
    off = resolve_config("cpt", config_files=[str(files["cpt"])], overrides=["--packing=false"]).config
    assert off.train.packing is False


def test_handbook_text_column_is_translated_for_cpt_only(tmp_path, tiny_model_dir):
    f = tmp_path / "hb.yaml"
    f.write_text(yaml.safe_dump({"model_name_or_path": tiny_model_dir, "text_column": "content",
                                 "dataset_mixer": {"org/corpus": 1.0}, "dataset_splits": ["train"]}))
    r = resolve_config("cpt", config_files=[str(f)])
    assert r.config.data.text_column == "content"
    assert r.config.data.mixture[0].keep_columns == ["content"]  # the old run_cpt.py kept only the text column
    assert any("text_column → data.text_column" in n for n in r.notes + [n for lay in r.layers for n in lay.notes])
    sft = resolve_config("sft", config_files=[str(f)])
    assert sft.config.data.text_column is None
    assert sft.config.data.mixture[0].keep_columns == ["messages", "chosen", "rejected", "prompt", "completion",
                                                        "label"]


def test_orpo_keeps_max_completion_length_and_drops_max_prompt_length(tmp_path, files):
    f = tmp_path / "hb.yaml"
    f.write_text("max_completion_length: 32\nmax_prompt_length: 48\n")
    p = plan_run("orpo", config_files=[str(files["orpo"]), str(f)], profile="cpu", dry_run=True)
    assert p.config.train.max_completion_length == 32
    assert any(w.startswith("max_prompt_length dropped") for w in p.warnings)


# --------------------------------------------------------------------------- refusals


def test_dpo_refuses_a_file_from_an_orpo_folder(tmp_path, files):
    folder = tmp_path / "recipes" / "mine" / "orpo"
    folder.mkdir(parents=True)
    f = folder / "config.yaml"
    f.write_text(files["orpo"].read_text())
    res = run_cli("dpo", f, "--profile", "cpu", "--dry-run")
    assert res.returncode == 2, res.stderr
    err = flat(res.stderr)
    assert "is in an `orpo` folder" in err and f"alignkit orpo {f}" in err and "Traceback" not in err
    assert run_cli("orpo", f, "--profile", "cpu", "--dry-run").returncode == 0
    # and a CPT file is not trained as SFT
    cpt_dir = tmp_path / "recipes" / "mine" / "cpt"
    cpt_dir.mkdir(parents=True)
    (cpt_dir / "config.yaml").write_text(files["cpt"].read_text())
    assert "is in an `cpt` folder" in flat(str(problems_of("sft", config_files=[str(cpt_dir / "config.yaml")])))


def test_an_orpo_only_key_in_a_dpo_run_names_the_orpo_command(files):
    found = problems_of("dpo", config_files=[str(files["orpo"])], overrides=["--padding_value=0"])
    assert found["padding_value"].message == "is a ORPO setting, not a DPO one"
    assert "alignkit orpo" in found["padding_value"].fix


def test_a_dpo_only_key_in_an_orpo_run_is_refused(files):
    found = problems_of("orpo", config_files=[str(files["orpo"])], overrides=["--precompute_ref_log_probs=true"])
    assert found["precompute_ref_log_probs"].message == "is a DPO setting, not a ORPO one"


def test_text_column_outside_cpt_is_refused(files):
    found = problems_of("sft", config_files=[str(files["orpo"])], overrides=["--data.text_column=body"])
    assert "alignkit cpt" in found["data.text_column"].fix


def test_cpt_dataset_text_field_other_than_text_points_at_text_column(files):
    found = problems_of("cpt", config_files=[str(files["cpt"])], overrides=["--train.dataset_text_field=body"])
    assert "data.text_column" in found["train.dataset_text_field"].fix


@pytest.mark.parametrize("args, words", [
    (["--beta=0"], "beta"),
    (["--max_completion_length=abc"], "max_completion_length"),
])
def test_bad_orpo_values_exit_2(files, args, words):
    res = run_cli("orpo", "--config", files["orpo"], "--profile", "cpu", "--dry-run", *args)
    assert res.returncode == 2, res.stderr
    assert words in flat(res.stderr) and "Traceback" not in res.stderr


def test_cpt_without_its_text_column_exits_2_before_training(tmp_path, files):
    res = run_cli("cpt", "--config", files["cpt"], "--profile", "cpu", "--data.text_column=nope",
                  f"--output_dir={tmp_path / 'out'}", "--max_steps=1")
    assert res.returncode == 2, res.stderr
    err = flat(res.stderr)
    assert "has no 'nope' column (it has: body, id)" in err and "data.text_column" in err
    assert not (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.parametrize("command", [["plan"], ["slurm", "submit", "-G", "1", "--dry-run"]])
def test_plan_and_slurm_refuse_an_unknown_task(command):
    res = run_cli(*command, "--task", "kto", "--recipe", "tiny")
    assert res.returncode == 2
    assert "use --task sft or --task dpo or --task orpo or --task cpt" in flat(res.stderr)


# --------------------------------------------------------------------------- plan and Slurm


def test_plan_orpo_counts_pairs_and_no_reference(files):
    def plan(task: str) -> dict:
        res = run_cli("plan", "--task", task, "--config", files["cpt" if task == "cpt" else "orpo"], "--profile",
                      "full", "--num-gpus", "8",
                      "--model", "7b", "--gpu-mem-gb", "80", "--json")
        assert res.returncode in (0, 3), res.stderr
        return json.loads(res.stdout)

    orpo, dpo, sft = plan("orpo"), plan("dpo"), plan("cpt")  # cpt: SFTConfig, SFT's memory
    assert orpo["task"] == "orpo"
    assert orpo["settings"]["reference_model"].startswith("none")
    assert orpo["breakdown_gib"]["reference_model"] == 0 < dpo["breakdown_gib"]["reference_model"]
    # like SFT's memory, with chosen + rejected in each forward
    assert orpo["settings"]["rows_per_forward"] == 2 * sft["settings"]["rows_per_forward"]
    assert orpo["breakdown_gib"]["weights"] == sft["breakdown_gib"]["weights"]


def test_slurm_script_runs_the_task(tmp_path, files):
    res = run_cli("slurm", "submit", "--task", "cpt", "-G", "1", "--config", files["cpt"], "--profile", "cpu",
                  "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "-m alignkit.train.cpt --run" in res.stdout
