"""The CLI spine: dry-run output, errors and exit codes, secrets, pending commands, and the real run path
up to (not including) training — the child process is replaced by a recorder where noted."""

from __future__ import annotations

import json
import os
import shlex
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from alignkit import __version__
from alignkit.cli import app
from alignkit.config.run import run_model
from alignkit.errors import AlignkitError, ConfigError
from tests.helpers import flat
from tests.helpers import run_cli as cli

ZEPHYR_FULL = ["sft", "--recipe", "zephyr-7b-beta", "--profile", "full", "--num-gpus", "8"]
CANARIES = {"HF_TOKEN": "hf_CANARYtokenVALUE0123456789", "OPENAI_API_KEY": "sk-CANARYopenaiKEY0123456789",
            "WANDB_API_KEY": "wandbCANARYkey0123456789abcdef"}


@pytest.fixture(autouse=True)
def _no_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(autouse=True)
def _no_preflight(monkeypatch):
    """The run path here uses fake model and data paths: the model/data preflight (tested with real files in
    tests/robustness/test_bad_input.py) is skipped."""
    from alignkit.launch import preflight

    monkeypatch.setattr(preflight, "preflight", lambda plan: None)


def invoke(args: list[str], env: dict | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def squash(text: str) -> str:
    """Without any whitespace: rich wraps long paths in the middle."""
    return "".join(text.split())


def walk(cmd, path=()):
    yield list(path), cmd
    for name, sub in sorted((getattr(cmd, "commands", None) or {}).items()):
        yield from walk(sub, (*path, name))


# --------------------------------------------------------------------------- version / help


def test_version_in_a_real_process():
    proc = cli("--version")
    assert (proc.returncode, proc.stdout) == (0, f"alignkit {__version__}\n")


def test_every_command_has_help_with_its_description():
    root = typer.main.get_command(app)
    for path, cmd in walk(root):
        res = invoke([*path, "--help"])
        assert res.exit_code == 0, (path, res.stderr)
        assert f"Usage: alignkit {' '.join(path)}".rstrip() in res.stdout
        first_line = (cmd.help or "").strip().splitlines()[0] if cmd.help else ""
        assert first_line[:30] in flat(res.stdout), path


def test_run_commands_document_overrides_and_options():
    out = flat(invoke(["sft", "--help"]).stdout)
    for text in ("--recipe", "--profile", "--config", "--num-gpus", "--num-nodes", "--dry-run", "--json",
                 "--overwrite", "--lora.r=32", "defaults < recipe < profile < --config files < overrides"):
        assert text in out, text


# --------------------------------------------------------------------------- dry run


def test_dry_run_prints_the_exact_command_and_the_summary():
    text = invoke([*ZEPHYR_FULL, "--dry-run"])
    assert text.exit_code == 0, text.stderr
    assert text.stdout.count("\n") == 1  # stdout: the command only
    js = invoke([*ZEPHYR_FULL, "--dry-run", "--json"])
    plan = json.loads(js.stdout)
    assert shlex.split(text.stdout) == plan["command"]
    cmd = plan["command"]
    out = plan["output_dir"]
    assert Path(cmd[0]).name == "accelerate" and cmd[1] == "launch"
    assert cmd[cmd.index("--config_file") + 1] == f"{out}/alignkit/accelerate.yaml"
    assert cmd[cmd.index("--num_processes") + 1] == "8"
    assert cmd[-4:] == ["-m", "alignkit.train.sft", "--run", f"{out}/alignkit/run.yaml"]
    err = flat(text.stderr)
    for row in ("recipe zephyr-7b-beta", "profile full", "model mistralai/Mistral-7B-v0.1",
                "adaptation full fine-tuning", "world size 8 = 1 node(s) x 8 process(es)",
                "global batch 512 = 32 per device x 2 accumulation x 8", "engine DEEPSPEED (ZeRO-3)",
                f"output dir {out}"):
        assert row in err, row
    assert js.stderr == ""  # --json: nothing but the JSON object


def test_dry_run_json_has_the_plan():
    res = invoke(["dpo", "--recipe", "zephyr-7b-beta", "--profile", "qlora", "--num-gpus", "1", "--dry-run", "--json"])
    plan = json.loads(res.stdout)
    for key in ("command", "accelerate_config", "deepspeed_config", "config", "world_size", "global_batch_size"):
        assert key in plan
    assert isinstance(plan["command"], list) and all(isinstance(a, str) for a in plan["command"])
    assert plan["deepspeed_config"] is None
    assert plan["accelerate_config"]["distributed_type"] == "MULTI_GPU"
    assert (plan["world_size"], plan["global_batch_size"], plan["gradient_accumulation_steps"]) == (1, 16, 4)
    cfg = plan["config"]
    assert set(cfg) >= {"task", "recipe", "profile", "model", "lora", "data", "train", "launch"}
    assert cfg["train"]["beta"] == 0.01 and cfg["train"]["max_length"] == 1024
    assert cfg["train"]["eval_strategy"] == "steps"
    assert cfg["model"]["dtype"] == "bfloat16" and cfg["model"]["load_in_4bit"] is True
    assert Path(cfg["train"]["output_dir"]).is_absolute()
    run_model("dpo").model_validate(cfg)  # what run.yaml would hold validates again as is

    full = json.loads(invoke([*ZEPHYR_FULL, "--dry-run", "--json"]).stdout)
    assert full["deepspeed_config"]["zero_optimization"]["stage"] == 3


def test_dry_run_in_a_real_process():
    proc = cli(*ZEPHYR_FULL, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1
    js = cli(*ZEPHYR_FULL, "--dry-run", "--json")
    assert shlex.split(proc.stdout) == json.loads(js.stdout)["command"]
    assert "global batch" in proc.stderr and "Traceback" not in proc.stderr


def test_summary_says_what_was_overridden_and_the_gpu_guess(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("train:\n  warmup_steps: 0.05\n")
    res = invoke(["sft", "--recipe", "zephyr-7b-beta", "--profile", "full", "--config", f, "--learning_rate=1e-5",
                  "--dry-run"])
    assert res.exit_code == 0, res.stderr
    err = flat(res.stderr)
    assert "train.learning_rate (override --learning_rate)" in err
    assert squash(f"train.warmup_steps ({f}:2)") in squash(res.stderr)
    assert "no GPU visible: planned for the recipe's reference count, 8 per node" in err
    js = json.loads(invoke(["sft", "--recipe", "zephyr-7b-beta", "--profile", "full", "--config", f,
                            "--learning_rate=1e-5", "--dry-run", "--json"]).stdout)
    assert js["overridden"] == {"train.warmup_steps": f"{f}:2", "train.learning_rate": "override --learning_rate"}


def test_json_needs_dry_run():
    res = invoke(["sft", "--recipe", "tiny", "--profile", "cpu", "--json"])
    assert isinstance(res.exception, ConfigError)
    assert res.exception.problems[0].where == "--json"


# --------------------------------------------------------------------------- secrets


def test_secrets_from_the_environment_are_never_printed(tmp_path):
    token = CANARIES["HF_TOKEN"]
    runs = [
        cli(*ZEPHYR_FULL, "--dry-run", env_extra=CANARIES),
        cli(*ZEPHYR_FULL, "--dry-run", "--json", "--push-to-hub", "--report_to=wandb",
            f"--run_name={CANARIES['OPENAI_API_KEY']}", env_extra=CANARIES),
        cli(*ZEPHYR_FULL, "--dry-run", f"--hub_token={token}", env_extra=CANARIES),  # refused: env only
        cli(*ZEPHYR_FULL, "--dry-run", f"--seed={CANARIES['WANDB_API_KEY']}", env_extra=CANARIES),  # error path
        cli("validate", "--recipe", "tiny", "--profile", "cpu", f"--run_name={CANARIES['OPENAI_API_KEY']}",
            env_extra=CANARIES),
    ]
    env_report = invoke(["env", "--json"], env=CANARIES)  # in-process: torch is imported once per session
    for proc in [*runs, env_report]:
        for value in CANARIES.values():
            assert value not in proc.stdout and value not in proc.stderr, getattr(proc, "args", "env --json")
    plan = json.loads(runs[1].stdout)
    assert plan["config"]["train"]["push_to_hub"] is True
    assert plan["config"]["train"]["run_name"] == "***"  # a secret value on the command line is masked
    assert runs[2].returncode == 2 and "export HF_TOKEN" in flat(runs[2].stderr)
    assert runs[3].returncode == 2 and "***" in runs[3].stderr  # the bad value was shown, masked
    assert json.loads(env_report.stdout)["hub_token_set"] is True


# --------------------------------------------------------------------------- errors


def _bad_config(tmp_path) -> Path:
    f = tmp_path / "bad.yaml"
    f.write_text("train:\n  lerning_rate: 1.0e-5\n  num_train_epochs: many\nmodel:\n  dtype: bf16\n")
    return f


def test_all_errors_at_once_exit_2_without_traceback(tmp_path):
    f = _bad_config(tmp_path)
    proc = cli("sft", "--recipe", "zephyr-7b-beta", "--profile", "full", "--config", f, "--lora.rr=3",
               "--packing", "--dry-run")
    assert proc.returncode == 2
    assert proc.stdout == ""
    err = proc.stderr
    assert "Traceback" not in err
    assert "error: invalid configuration (5 problems)" in err
    for text in ("train.lerning_rate: unknown key", f"(from {f}:2)", "did you mean 'learning_rate'",
                 "train.num_train_epochs", f"(from {f}:3)", "model.dtype", f"(from {f}:5)", "lora.rr: unknown key",
                 "did you mean 'r'?", "--packing: override has no value"):
        assert text in err, text


def test_yaml_errors_through_the_cli_name_file_and_line(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("train:\n  seed: 1\n  seed: 2\n")
    tabs = tmp_path / "tabs.yaml"
    tabs.write_text("train:\n\tseed: 1\n")
    res = invoke(["validate", "--recipe", "tiny", "--task", "sft", "--profile", "cpu", "--config", dup,
                  "--config", tabs])
    assert isinstance(res.exception, ConfigError)
    found = {p.where: p for p in res.exception.problems}
    assert "appears twice (lines 2 and 3)" in found[f"[sft] {dup}:3"].message
    assert found[f"[sft] {tabs}:2"].fix == "indent with spaces: YAML does not allow tabs"
    evil = tmp_path / "evil.yaml"
    evil.write_text("train:\n  seed: !!python/object/apply:os.getpid []\n")
    proc = cli("sft", "--recipe", "tiny", "--profile", "cpu", evil, "--dry-run")
    assert proc.returncode == 2 and f"{evil}:2" in squash(proc.stderr) and "Traceback" not in proc.stderr


def test_debug_env_shows_the_traceback(tmp_path):
    proc = cli("sft", "--recipe", "zephyr-7b-beta", "--config", _bad_config(tmp_path), "--dry-run",
               env_extra={"ALIGNKIT_DEBUG": "1"})
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ConfigError" in proc.stderr


def test_unknown_recipe_and_profile_in_one_error():
    proc = cli("sft", "--recipe", "zephyr-7b-bta", "--profile", "qlroa", "--dry-run")
    assert proc.returncode == 2
    err = flat(proc.stderr)
    assert "error: invalid configuration (2 problems)" in err
    assert "did you mean 'zephyr-7b-beta'" in err and "did you mean 'qlora'" in err
    assert "Traceback" not in proc.stderr


def test_typer_usage_errors_exit_2():
    proc = cli("recipes", "show")
    assert proc.returncode == 2 and "Missing argument" in proc.stderr and "Traceback" not in proc.stderr


def test_gpu_profile_without_gpus_and_without_dry_run():
    proc = cli(*ZEPHYR_FULL[:-2])  # no --num-gpus, no --dry-run
    assert proc.returncode == 2
    err = flat(proc.stderr)
    assert "--num-gpus: profile full needs GPUs and none is visible" in err
    assert "--profile full,cpu" in err and "--dry-run" in err


# --------------------------------------------------------------------------- config / env


def test_config_fields_and_search():
    res = invoke(["config", "fields", "--task", "dpo", "train", "-s", "beta"])
    assert res.exit_code == 0
    keys = [line.split("│")[1].strip() for line in res.stdout.splitlines() if line.startswith("│ train.")]
    assert "train.beta" in keys and all("beta" in k for k in keys)
    res = invoke(["config", "fields", "--task", "sft", "launch"])
    keys = [line.split("│")[1].strip() for line in res.stdout.splitlines() if line.startswith("│ ") and
            line.split("│")[1].strip()]
    assert "launch.global_batch_size" in keys and all(k.startswith("launch.") for k in keys), keys
    bad = invoke(["config", "fields", "trian"])
    assert isinstance(bad.exception, ConfigError) and "unknown section 'trian'" in str(bad.exception)


def test_config_schema_is_a_json_schema_with_sections():
    for task in ("sft", "dpo"):
        res = invoke(["config", "schema", "--task", task])
        schema = json.loads(res.stdout)
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert {"model", "lora", "data", "train", "launch"} <= set(schema["properties"])
        assert set(schema["required"]) >= {"task", "model", "train"}
        defs = schema["$defs"]
        train_def = defs[f"{task.upper()}TrainConfig"]
        assert train_def["additionalProperties"] is False
        assert "Recomputed from launch.global_batch_size" in \
            train_def["properties"]["gradient_accumulation_steps"]["description"]
        assert ("beta" in train_def["properties"]) is (task == "dpo")
        assert defs["ModelConfig"]["properties"]["trust_remote_code"]["default"] is False
        for ref in ("model", "lora", "data", "launch"):
            target = schema["properties"][ref].get("$ref") or schema["properties"][ref]["allOf"][0]["$ref"]
            assert target.startswith("#/$defs/")


def test_env_json():
    res = invoke(["env", "--json"])
    assert res.exit_code == 0, res.stderr
    info = json.loads(res.stdout)
    for pkg in ("torch", "transformers", "trl", "peft", "accelerate", "deepspeed", "datasets", "bitsandbytes"):
        assert info["packages"][pkg], pkg
    assert info["alignkit"] == __version__
    assert info["python"] == sys.version.split()[0]
    assert info["cuda_available"] is False and info["gpus"] == []
    assert "accelerate_default_config" in info


# --------------------------------------------------------------------------- the real run path, no training


@pytest.fixture
def run_config(tmp_path):
    """A config that needs no demo assets and no hub: local (fake) model and data paths. They exist, so that the
    dry run's file checks pass; nothing reads them (the preflight is skipped here)."""
    out = tmp_path / "out"
    (tmp_path / "no-model").mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (tmp_path / "no-model" / name).write_text("{}")
    for name in ("train.jsonl", "test.jsonl"):
        (tmp_path / name).write_text("")
    f = tmp_path / "run.yaml"
    f.write_text(yaml.safe_dump({
        "model": {"model_name_or_path": str(tmp_path / "no-model")},
        "data": {"mixture": [{"path": str(tmp_path / "train.jsonl"), "split": "train"},
                             {"path": str(tmp_path / "test.jsonl"), "split": "test"}]},
        "train": {"output_dir": str(out), "max_steps": 1, "per_device_train_batch_size": 8},
        "launch": {"global_batch_size": 16},
    }))
    return f, out


class Recorder:
    """Stands in for the accelerate child: records what it would have been started with."""

    def __init__(self, code: int = 0):
        self.code, self.calls = code, []

    def __call__(self, plan, lock=None, *args, **kwargs):
        rdir = Path(plan.output_dir) / "alignkit"
        self.calls.append({"command": plan.command, "lock": json.loads(Path(lock).read_text()) if lock else None,
                           "run": yaml.safe_load((rdir / "run.yaml").read_text())})
        return self.code


@pytest.fixture
def recorder(monkeypatch):
    from alignkit.launch import spawn

    rec = Recorder()
    monkeypatch.setattr(spawn, "spawn", rec)
    return rec


def test_run_writes_the_run_files_then_starts_the_child(run_config, recorder):
    f, out = run_config
    args = ["sft", "--config", f, "--profile", "full,cpu", "--num-gpus", "2"]
    plan = json.loads(invoke([*args, "--dry-run", "--json"]).stdout)
    res = invoke(args)
    assert res.exit_code == 0, (res.stderr, res.exception)
    [call] = recorder.calls
    assert call["command"] == plan["command"]
    assert call["lock"]["pid"] == os.getpid() and call["lock"]["host"] == socket.gethostname()
    assert call["run"]["config"] == plan["config"] and call["run"]["resume"] is False
    assert (call["run"]["world_size"], call["run"]["global_batch_size"]) == (2, 16)
    rdir = out / "alignkit"
    assert yaml.safe_load((rdir / "accelerate.yaml").read_text()) == plan["accelerate_config"]
    assert json.loads((rdir / "deepspeed.json").read_text()) == plan["deepspeed_config"]
    command_sh = (rdir / "command.sh").read_text()
    assert f"exec {shlex.join(plan['command'])}\n" in command_sh
    assert "export CUDA_VISIBLE_DEVICES=''" in command_sh
    assert (rdir / "command.sh").stat().st_mode & stat.S_IXUSR
    assert not (rdir / "lock").exists()  # released after the child exits
    assert not list(rdir.glob(".*.tmp"))  # atomic writes leave no temp files
    assert "starting sft" in flat(res.stderr)


@pytest.mark.parametrize("code", [3, 130])
def test_the_child_exit_code_is_returned(run_config, recorder, code):
    f, out = run_config
    recorder.code = code
    res = invoke(["sft", "--config", f, "--profile", "cpu"])
    assert res.exit_code == code
    assert not (out / "alignkit" / "lock").exists()
    assert ("interrupted" if code == 130 else f"training exited with code {code}") in flat(res.stderr)


def test_same_config_resumes_even_on_another_shape(run_config, recorder):
    f, out = run_config
    assert invoke(["sft", "--config", f, "--profile", "cpu"]).exit_code == 0
    res = invoke(["sft", "--config", f, "--profile", "cpu", "--num-gpus", "2"])  # accumulation 2 -> 1
    assert res.exit_code == 0, res.stderr
    assert [c["run"]["resume"] for c in recorder.calls] == [False, True]
    assert "resuming sft" in flat(res.stderr)


def test_a_different_config_is_refused_unless_overwrite(run_config, recorder):
    f, out = run_config
    assert invoke(["sft", "--config", f, "--profile", "cpu"]).exit_code == 0
    (out / "checkpoint-1").mkdir()
    res = invoke(["sft", "--config", f, "--profile", "cpu", "--learning_rate=1e-3"])
    assert isinstance(res.exception, ConfigError)
    [p] = res.exception.problems
    assert (p.where, p.message) == (str(out), "holds a run with a different config")
    assert "--overwrite" in p.fix
    assert len(recorder.calls) == 1 and (out / "checkpoint-1").is_dir()
    assert not (out / "alignkit" / "lock").exists()
    res = invoke(["sft", "--config", f, "--profile", "cpu", "--learning_rate=1e-3", "--overwrite"])
    assert res.exit_code == 0, res.stderr
    assert not (out / "checkpoint-1").exists()
    assert recorder.calls[-1]["run"]["config"]["train"]["learning_rate"] == 1e-3


def test_a_hand_made_run_dir_with_another_config_is_refused(run_config, recorder):
    f, out = run_config
    (out / "alignkit").mkdir(parents=True)
    (out / "alignkit" / "run.yaml").write_text(yaml.safe_dump({"config": {"task": "sft", "train": {"seed": 1}}}))
    res = invoke(["sft", "--config", f, "--profile", "cpu"])
    assert isinstance(res.exception, ConfigError)
    assert res.exception.problems[0].message == "holds a run with a different config"
    assert recorder.calls == []


def test_a_non_empty_dir_without_a_run_is_refused(run_config, recorder):
    f, out = run_config
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    res = invoke(["sft", "--config", f, "--profile", "cpu"])
    assert isinstance(res.exception, ConfigError)
    assert res.exception.problems[0].message == "is not empty and holds no alignkit run"
    assert recorder.calls == [] and (out / "precious.txt").read_text() == "keep me"


def test_output_dir_that_is_a_file_exits_2(run_config):
    f, out = run_config
    out.write_text("a file")
    proc = cli("sft", "--config", f, "--profile", "cpu")
    assert proc.returncode == 2
    assert f"train.output_dir: {out} is a file" in flat(proc.stderr)
    assert "Traceback" not in proc.stderr


def _lock(out: Path, pid: int, host: str | None = None) -> Path:
    lock = out / "alignkit" / "lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "2026-01-01T00:00:00"}))
    return lock


def test_a_busy_output_dir_is_refused(run_config):
    f, out = run_config
    lock = _lock(out, os.getpid())  # this test process: alive
    proc = cli("sft", "--config", f, "--profile", "cpu")
    assert proc.returncode == 2
    assert f"busy: another run (pid {os.getpid()}" in flat(proc.stderr)
    assert lock.exists() and json.loads(lock.read_text())["pid"] == os.getpid()  # never stolen


def test_a_stale_lock_is_cleared(run_config, recorder):
    f, out = run_config
    dead = subprocess.Popen(["true"])
    dead.wait()
    _lock(out, dead.pid)
    res = invoke(["sft", "--config", f, "--profile", "cpu"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert f"cleared a stale lock left by pid {dead.pid}" in flat(res.stderr)
    assert recorder.calls[0]["lock"]["pid"] == os.getpid()


def test_a_lock_from_another_host_is_refused(run_config, recorder):
    f, out = run_config
    lock = _lock(out, 12345, host="some-other-node")
    res = invoke(["sft", "--config", f, "--profile", "cpu"])
    assert isinstance(res.exception, ConfigError)
    assert "locked by a run on host some-other-node" in res.exception.problems[0].message
    assert str(lock) in res.exception.problems[0].fix
    assert recorder.calls == []


def test_push_to_hub_without_a_token_is_refused_before_anything_starts(run_config, recorder, monkeypatch):
    f, out = run_config
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    res = invoke(["sft", "--config", f, "--profile", "cpu", "--push-to-hub"])
    assert isinstance(res.exception, ConfigError)
    assert res.exception.problems[0].where == "train.push_to_hub"
    assert recorder.calls == [] and not out.exists()


def test_secrets_never_reach_the_run_files(run_config, recorder):
    f, out = run_config
    res = invoke(["sft", "--config", f, "--profile", "cpu", f"--run_name={CANARIES['WANDB_API_KEY']}",
                  "--push-to-hub"], env=CANARIES)
    assert res.exit_code == 0, (res.stderr, res.exception)
    for path in (out / "alignkit").iterdir():
        text = path.read_text()
        for value in CANARIES.values():
            assert value not in text, path
    for value in CANARIES.values():
        assert value not in res.stdout + res.stderr
    run = recorder.calls[0]["run"]  # still valid YAML after masking
    assert run["config"]["train"]["run_name"] == "***"
    assert run["config"]["train"]["push_to_hub"] is True


def test_errors_are_alignkit_errors_with_exit_codes():
    # every error a user can cause maps to an exit code, none is a bare exception
    res = invoke(["sft", "--recipe", "nope", "--dry-run"])
    assert isinstance(res.exception, AlignkitError) and res.exception.exit_code == 2
