"""The run contract: run files written by alignkit 0.1.0 (before the run file was a typed model) still load
and still resume; the file written today has the same keys and values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from alignkit.errors import ConfigError
from alignkit.launch.build import plan_run
from alignkit.launch.run import RunDir
from alignkit.launch.run.file import RunFile
from alignkit.launch.spawn import claim_output_dir, write_run_files

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "run-files-0.1.0"
# the commands that wrote the fixtures (with --output_dir=/OUTPUT_DIR, replaced by the test's dir)
COMMANDS = {"sft": "full", "dpo": "qlora"}


def _old_run_dir(tmp_path: Path, task: str) -> Path:
    out = tmp_path / task
    rdir = RunDir.of(out)
    rdir.path.mkdir(parents=True)
    rdir.run_file.write_text((FIXTURES / f"{task}.yaml").read_text().replace("/OUTPUT_DIR", str(out)))
    return out


def _plan(task: str, out: Path):
    return plan_run(task, recipe="zephyr-7b-beta", profile=COMMANDS[task], overrides=[f"--output_dir={out}"],
                    num_gpus=2, dry_run=True)


@pytest.mark.parametrize("task", ["sft", "dpo"])
def test_a_run_file_written_by_0_1_0_loads_into_the_typed_model(tmp_path, task):
    out = _old_run_dir(tmp_path, task)
    run = RunFile.load(RunDir.of(out).run_file, task)
    assert run.task == task and run.world_size == 2 and run.global_batch_size == (512 if task == "sft" else 16)
    assert run.output_dir == out and run.layout.run_file == RunDir.of(out).run_file
    assert run.data is None  # written before the data build was recorded: the trainer mixes itself
    assert run.config.train.gradient_accumulation_steps == (8 if task == "sft" else 2)
    assert run.config.lora.enabled is (task == "dpo")
    # what was set stays what was set (TRL's defaults apply to the rest)
    assert "output_dir" in run.config.train.model_fields_set


@pytest.mark.parametrize("task", ["sft", "dpo"])
def test_a_run_dir_written_by_0_1_0_resumes(tmp_path, task):
    out = _old_run_dir(tmp_path, task)
    plan = _plan(task, out)
    claim = claim_output_dir(plan, overwrite=False)
    try:
        assert claim.resume, "the same command must resume the run an older alignkit started"
    finally:
        claim.lock_path.unlink(missing_ok=True)


@pytest.mark.parametrize("task", ["sft", "dpo"])
def test_the_run_file_written_today_holds_what_0_1_0_wrote(tmp_path, task):
    out = _old_run_dir(tmp_path, task)
    old = yaml.safe_load(RunDir.of(out).run_file.read_text())
    plan = _plan(task, out)
    write_run_files(plan, resume=False, argv=old["argv"])
    new = yaml.safe_load(RunDir.of(out).run_file.read_text())
    old.pop("alignkit_version"), new.pop("alignkit_version")
    assert new == old
    # and the child reads it back into the same typed config the parent validated
    assert RunFile.load(RunDir.of(out).run_file).config == plan.config


def test_a_run_file_with_a_bad_field_names_the_file_and_field(tmp_path):
    out = _old_run_dir(tmp_path, "sft")
    path = RunDir.of(out).run_file
    path.write_text(path.read_text().replace("learning_rate: 2.0e-05", "learning_rate: fast"))
    with pytest.raises(ConfigError) as exc:
        RunFile.load(path)
    assert any(str(path) in p.where and "learning_rate" in p.where for p in exc.value.problems)
    path.write_text("just: text\n")
    with pytest.raises(ConfigError, match="not an alignkit run file"):
        RunFile.load(path)


def test_the_plan_edits_are_validated_on_the_typed_config(tmp_path):
    plan = plan_run("sft", recipe="tiny", profile="cpu", overrides=[f"--output_dir={tmp_path}/rel/../o", "--per_device_train_batch_size=4"],
                    num_gpus=2)
    cfg = plan.config
    assert cfg.train.output_dir == str(tmp_path / "o")
    assert cfg.train.use_cpu is True and cfg.train.ddp_backend == "gloo"
    assert cfg.launch.num_gpus == 2 and cfg.launch.num_nodes == 1
    assert {"output_dir", "gradient_accumulation_steps", "use_cpu", "ddp_backend"} <= cfg.train.model_fields_set


# --------------------------------------------------------------------------- data once


def _tiny_plan(tmp_path, task="sft"):
    from alignkit.commands.train import build_demo_assets_if_used

    plan = plan_run(task, recipe="tiny", profile="cpu", overrides=[f"--output_dir={tmp_path / task}"])
    build_demo_assets_if_used(plan.config)
    return plan


def test_the_preflight_mixes_once_into_the_run_dir_and_the_run_file_names_the_build(tmp_path):
    from alignkit.data.mixer import load_mixture
    from alignkit.launch.preflight import build_data
    from alignkit.train.data import load_build

    plan = _tiny_plan(tmp_path)
    ref = build_data(plan)
    assert Path(ref.path) == RunDir.of(plan.output_dir).data_dir and ref.key
    plan.data = ref
    write_run_files(plan, resume=False, argv=["alignkit", "sft"])
    run = RunFile.load(RunDir.of(plan.output_dir).run_file)
    assert run.data == ref
    # what the child reads is what mixing gives, row for row
    built, mixed = load_build(run.data), load_mixture(plan.config.data, "sft")
    assert set(built) == set(mixed) and all(built[s].to_list() == mixed[s].to_list() for s in mixed)
    # the same inputs again (a resumed run): the build is reused as it is
    mtime = (Path(ref.path) / "manifest.json").stat().st_mtime_ns
    assert build_data(plan) == ref and (Path(ref.path) / "manifest.json").stat().st_mtime_ns == mtime


def test_the_child_refuses_a_data_build_that_is_not_the_planned_one(tmp_path):
    from alignkit.errors import DataError
    from alignkit.launch.preflight import build_data
    from alignkit.train.data import load_build

    ref = build_data(_tiny_plan(tmp_path))
    with pytest.raises(DataError, match="not the data build this run was planned with"):
        load_build(ref.model_copy(update={"manifest_sha256": "0" * 64}))
    shard = next(Path(ref.path).glob("train-*.parquet"))
    shard.write_bytes(shard.read_bytes() + b"x")
    with pytest.raises(DataError, match="damaged"):
        load_build(ref)
    (Path(ref.path) / "manifest.json").unlink()
    with pytest.raises(DataError, match="missing"):
        load_build(ref)
