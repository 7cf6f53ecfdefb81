"""What is checked before a run starts, through the CLI (issues 14 and 16): a run the machine cannot honour is
refused before anything is written or asked of the network; a network failure is one line; validate and
--dry-run check every local path; a missing local model is said as such, with the command that writes it;
loggers that are not installed; the profile a file calls for; GPU-only settings under a CPU profile.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alignkit.cli import app
from tests.helpers import flat, run_cli

HANDBOOK = Path(__file__).resolve().parents[1] / "fixtures" / "handbook"
# bf16: true, tf32: true, use_flash_attention_2: true, hub model and data
GPU_FILE = HANDBOOK / "2023-11-10" / "recipes" / "zephyr-7b-beta" / "sft" / "config_full.yaml"
QLORA_FILE = HANDBOOK / "2025-07-11" / "recipes" / "zephyr-7b-beta" / "sft" / "config_qlora.yaml"
LORA_FILE = HANDBOOK / "2023-11-10" / "recipes" / "zephyr-7b-beta" / "sft" / "config_lora.yaml"
README_RUN = ["sft", "--recipe", "zephyr-7b-beta", "--profile", "full", "--num-gpus", "8"]
NO_WANDB = importlib.util.find_spec("wandb") is None


@pytest.fixture(autouse=True)
def _no_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


def invoke(args) -> "CliRunner":
    return CliRunner().invoke(app, [str(a) for a in args])


def refused(args, cwd=None, **kw):
    """``alignkit ARGS`` in a process, as a user runs it (errors rendered): exit 2, no traceback; the stderr."""
    p = run_cli(*args, cwd=cwd, timeout=120, **kw)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr
    return p.stderr


def squash(text: str) -> str:
    return "".join(text.split())


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# ------------------------------------------------------------------------------- a: no GPU, no network, nothing left


def test_the_readmes_run_line_without_a_gpu_is_refused_at_once_and_leaves_nothing(tmp_path):
    # the Hub is not offline here and its address does not resolve: refused before any network access
    env = {"HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
           "HF_ENDPOINT": "http://hub.invalid"}
    t0 = time.monotonic()
    p = run_cli(*README_RUN, cwd=tmp_path, env_extra=env, timeout=60)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert time.monotonic() - t0 < 30
    err = flat(p.stderr)
    assert "profile full needs GPUs and none is visible" in err
    assert "--profile full,cpu" in err and "--dry-run" in err and "GPU machine" in err
    assert "Retrying" not in p.stderr and "Hub" not in p.stderr and "Traceback" not in p.stderr
    assert tree(tmp_path) == []  # no data/zephyr-7b-sft-full/


def test_an_unreachable_hub_is_one_line_naming_the_network_and_the_run_leaves_nothing(tmp_path, tiny_env):
    out = tmp_path / "runs" / "net" / "out"
    env = {"HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
           "HF_ENDPOINT": "http://hub.invalid"}
    p = run_cli("sft", "--recipe", "tiny", "--profile", "cpu", "--data.mixture=[{id: someorg/somedata}]",
                "--eval_strategy=no", f"--output_dir={out}", env=tiny_env, env_extra=env, cwd=tmp_path, timeout=120)
    assert p.returncode == 2, (p.stdout, p.stderr)
    err = flat(p.stderr)
    assert "(1 problem)" in err and "cannot reach the Hugging Face Hub (hub.invalid" in err
    assert "set HF_HUB_OFFLINE=1 and use local paths" in err
    assert "Retrying" not in p.stderr and "Traceback" not in p.stderr and "starting sft" not in p.stderr
    assert not (tmp_path / "runs").exists()  # the output dir it claimed is gone again


def test_a_refused_run_removes_the_output_dir_it_created(tmp_path, tiny_env):
    out = tmp_path / "a" / "b" / "out"
    p = run_cli("sft", "--recipe", "tiny", "--profile", "cpu", f"--output_dir={out}", "--eval_strategy=no",
                f"--data.mixture=[{{path: {tmp_path}/missing.jsonl}}]", env=tiny_env, cwd=tmp_path, timeout=120)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "data.mixture[0].path" in flat(p.stderr) and "no such file or directory" in flat(p.stderr)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("command", [["sft", "--output_dir={out}"],
                                     ["sweep", "sft", "--grid", "learning_rate=1e-4,2e-4", "--output", "{out}"]])
def test_push_to_hub_from_a_file_without_a_token_is_refused_with_the_way_out(tmp_path, tiny_env, command):
    """A handbook file says push_to_hub: true; without a token the run is refused before anything starts, and
    the fix names the override that trains without pushing (not a flag the user never typed)."""
    env = {k: v for k, v in tiny_env.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    cfg = tmp_path / "push.yaml"
    cfg.write_text("push_to_hub: true\nhub_model_id: me/tiny\n")
    out = tmp_path / "out"
    err = flat(refused([*(a.format(out=out) for a in command), "--recipe", "tiny", "--profile", "cpu", "--config",
                        cfg], cwd=tmp_path, env=env))
    assert "train.push_to_hub" in err and "no Hub token is set" in err
    assert "export HF_TOKEN=" in err and "--push_to_hub=false" in err
    assert not out.exists()


def test_a_refused_run_keeps_an_output_dir_it_did_not_create(tmp_path, tiny_env):
    out = tmp_path / "out"
    out.mkdir()
    p = run_cli("sft", "--recipe", "tiny", "--profile", "cpu", f"--output_dir={out}", "--eval_strategy=no",
                f"--data.mixture=[{{path: {tmp_path}/missing.jsonl}}]", env=tiny_env, cwd=tmp_path, timeout=120)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert out.is_dir() and tree(out) == []  # the user's dir stays, and nothing in it


# ------------------------------------------------------------------------------- b: every local path, at once


@pytest.fixture
def broken(tmp_path):
    """A model dir without weights, a missing data file, a file that is not data, a dir without the split."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "datadir").mkdir()
    (tmp_path / "datadir" / "test.jsonl").write_text("{}\n")
    mix = (f"--data.mixture=[{{path: {tmp_path}/missing.jsonl}}, {{path: {tmp_path}/notes.txt}}, "
           f"{{path: {tmp_path}/datadir}}, {{path: {tmp_path}/datadir, split: test}}]")
    return ["--recipe", "tiny", "--profile", "cpu", f"--model_name_or_path={tmp_path}/model", mix,
            "--eval_strategy=no"]


def _says_every_local_problem(text: str) -> None:
    t = flat(text)
    assert "(5 problems)" in t or "5 problems" in t, t
    assert "has no model weights" in t and "has no tokenizer" in t
    assert "data.mixture[0].path" in t and "missing.jsonl: no such file or directory" in t
    assert "data.mixture[1].path" in t and "notes.txt: not a data file" in t
    assert "data.mixture[2].path" in t and "no data files for split 'train'" in t and "splits found: test" in t
    assert "data.mixture[3]" not in t


def test_validate_checks_every_local_path_without_the_network(broken):
    err = refused(["validate", "--task", "sft", *broken])
    _says_every_local_problem(err)
    assert "valid sft" not in err


def test_dry_run_checks_every_local_path(broken):
    _says_every_local_problem(refused(["sft", *broken, "--dry-run"]))


def test_a_dpo_recipe_before_its_sft_validates_with_a_note_and_the_real_run_names_the_command(tmp_path, tiny_env,
                                                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/tiny/sft does not exist here
    res = invoke(["validate", "--task", "dpo", "--recipe", "tiny", "--profile", "cpu"])
    assert res.exit_code == 0, res.stderr
    assert "alignkit sft --recipe tiny --profile cpu` writes it" in flat(res.stderr)
    p = run_cli("dpo", "--recipe", "tiny", "--profile", "cpu", env=tiny_env, cwd=tmp_path, timeout=120)
    assert p.returncode == 2, (p.stdout, p.stderr)
    err = flat(p.stderr)
    assert "runs/tiny/sft: no such directory" in err
    assert "train it first with `alignkit sft --recipe tiny --profile cpu`" in err
    assert "Repo id" not in p.stderr and "starting dpo" not in p.stderr
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------- c: mix preview


def test_mix_preview_names_a_missing_local_model_fast(tmp_path):
    t0 = time.monotonic()
    p = run_cli("mix", "preview", "--task", "dpo", "--recipe", "tiny", "--profile", "cpu", cwd=tmp_path, timeout=60)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert time.monotonic() - t0 < 20
    err = flat(p.stderr)
    assert "runs/tiny/sft: no such directory" in err
    assert "train it first with `alignkit sft --recipe tiny --profile cpu`" in err and "--model_name_or_path" in err
    assert "Repo id" not in p.stderr and "Traceback" not in p.stderr


def test_mix_preview_infers_the_task(tmp_path, monkeypatch):
    from alignkit.data.inputs import infer_task

    assert infer_task(None, None) == "sft" and infer_task("dpo", "tiny") == "dpo"
    assert infer_task(None, "tiny") == "sft"  # a recipe of both steps: sft, as `alignkit plan`
    # no --task: not a usage error; it reads the recipe (here: its missing model, with the sft fix... of sft's)
    monkeypatch.chdir(tmp_path)
    err = refused(["mix", "preview", "--recipe", "tiny", "--profile", "cpu", f"--model_name_or_path={tmp_path}/m/x/y"],
                  cwd=tmp_path)
    assert "m/x/y: no such directory" in flat(err) and "--task" not in err


def test_mix_preview_checks_local_data_paths(tmp_path):
    (tmp_path / "data.yaml").write_text(f"data:\n  mixture:\n    - path: {tmp_path}/nope.jsonl\n")
    err = flat(refused(["mix", "preview", "--data", tmp_path / "data.yaml"]))
    assert "data.mixture[0].path" in err and "nope.jsonl: no such file or directory" in err


# ------------------------------------------------------------------------------- d, e: loggers, the dry run's last line


@pytest.mark.skipif(not NO_WANDB, reason="wandb is installed here")
@pytest.mark.parametrize("command", [["sft", "--dry-run"], ["validate", "--task", "sft"]], ids=["dry-run", "validate"])
def test_a_logger_that_is_not_installed_is_refused_naming_key_and_fix(command):
    err = flat(refused([*command, "--recipe", "tiny", "--profile", "cpu", "--report_to=wandb"]))
    assert "train.report_to: wandb is not installed" in err
    assert "pip install wandb" in err and "--report_to=none" in err


@pytest.mark.skipif(not NO_WANDB, reason="wandb is installed here")
def test_a_plan_for_a_gpu_machine_notes_the_logger_it_needs():
    res = invoke([*README_RUN, "--report_to=wandb", "--dry-run"])
    assert res.exit_code == 0, res.stderr
    err = flat(res.stderr)
    assert "train.report_to: wandb is not installed" in err and "the training machine needs it" in err


def test_the_dry_run_says_nothing_was_written_or_started(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke([*README_RUN, "--dry-run"])
    assert res.exit_code == 0, res.stderr
    assert res.stderr.rstrip().splitlines()[-1] == "dry run: nothing was written or started"
    assert tree(tmp_path) == []
    js = invoke([*README_RUN, "--dry-run", "--json"])
    assert js.stderr == ""  # --json stays machine-readable


# ------------------------------------------------------------------------------- f: the profile a file calls for


def test_a_4bit_file_without_profile_picks_qlora_and_says_so():
    res = invoke(["sft", QLORA_FILE, "--num-gpus", "1", "--dry-run", "--json"])
    assert res.exit_code == 0, res.stderr
    plan = json.loads(res.stdout)
    assert plan["profile"] == "qlora" and plan["deepspeed_config"] is None
    assert any(n.startswith("profile qlora, because") and "load_in_4bit: true" in n for n in plan["notes"])
    res = invoke(["validate", "--task", "sft", QLORA_FILE, "--num-gpus", "1"])
    assert res.exit_code == 0 and "profile qlora, because" in flat(res.stderr)



@pytest.mark.parametrize("gpus", [["--num-gpus", "1"], []], ids=["num-gpus", "no-num-gpus"])
def test_a_4bit_file_without_profile_on_a_machine_without_gpus_says_why_qlora_and_the_cpu_fix(tmp_path, gpus):
    """The user typed no --profile: the refusal says where qlora came from (the file's line) and what to type."""
    err = flat(refused(["sft", QLORA_FILE, *gpus, "--push_to_hub=false", f"--output_dir={tmp_path}/out"],
                       cwd=tmp_path))
    assert "profile qlora, chosen because" in err and "config_qlora.yaml:" in err and "load_in_4bit: true" in err
    assert "needs GPUs and none is visible" in err and "--profile qlora,cpu" in err
    assert tree(tmp_path) == []

def test_a_peft_file_without_profile_picks_lora():
    res = invoke(["sft", LORA_FILE, "--num-gpus", "1", "--dry-run", "--json"])
    assert res.exit_code == 0, res.stderr
    plan = json.loads(res.stdout)
    assert plan["profile"] == "lora" and any(n.startswith("profile lora, because") for n in plan["notes"])


def test_zero3_with_a_4bit_base_is_refused_with_the_fix():
    err = flat(refused(["sft", QLORA_FILE, "--profile", "full", "--num-gpus", "8", "--dry-run"]))
    assert "model.load_in_4bit" in err and "ZeRO-3" in err and "--profile qlora" in err
    assert "config_qlora.yaml:" in err  # where the file says it


# ------------------------------------------------------------------------------- g: GPU-only settings


def test_under_the_cpu_profile_the_profiles_hardware_settings_win_each_said_once():
    res = invoke(["sft", GPU_FILE, "--profile", "cpu", "--dry-run", "--json"])
    assert res.exit_code == 0, res.stderr
    plan = json.loads(res.stdout)
    cfg = plan["config"]
    assert cfg["train"]["bf16"] is False and cfg["train"].get("tf32") is None
    assert cfg["model"]["attn_implementation"] == "sdpa"
    notes = [n for n in plan["notes"] if "whose setting wins" in n]
    assert [n.split(":", 1)[0] for n in notes] == ["train.bf16", "train.tf32", "model.attn_implementation"]
    assert all("config_full.yaml:" in n for n in notes)


def test_a_gpu_profile_dry_run_without_gpus_notes_what_needs_a_gpu():
    res = invoke(["sft", GPU_FILE, "--profile", "full", "--num-gpus", "8", "--dry-run"])
    assert res.exit_code == 0, res.stderr
    err = flat(res.stderr)
    assert "needs a GPU on the target machine (none here): train.bf16" in err
    assert "train.tf32" in err and "model.attn_implementation" in err


def test_a_gpu_profile_real_run_without_gpus_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    err = refused(["sft", GPU_FILE, "--profile", "lora", "--num-gpus", "1", "--push_to_hub=false",
                   f"--output_dir={tmp_path}/out"], cwd=tmp_path)
    assert "profile lora needs GPUs and none is visible" in flat(err)
    assert tree(tmp_path) == []


@pytest.fixture
def old_gpu(tmp_path, monkeypatch):
    """An nvidia-smi that shows one pre-Ampere GPU (compute capability 7.5)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text('#!/bin/sh\ncase "$*" in *compute_cap*) echo 7.5;; *) echo "GPU 0: Tesla T4 (UUID: GPU-0)";; esac\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    return tmp_path


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash-attn is installed here")
def test_settings_the_gpu_cannot_honour_are_refused_naming_each_key(old_gpu):
    err = flat(refused(["sft", GPU_FILE, "--profile", "lora", "--num-gpus", "1", "--push_to_hub=false",
                        f"--output_dir={old_gpu}/out"], cwd=old_gpu, no_gpu=False))
    assert "(3 problems)" in err
    assert "train.bf16: needs an Ampere or newer GPU" in err and "compute capability 7.5" in err
    assert "train.tf32" in err and "--tf32=false" in err
    assert "model.attn_implementation" in err and "flash-attn is not installed" in err
    assert "--attn_implementation=sdpa" in err
    assert not (old_gpu / "out").exists()


@pytest.mark.e2e
def test_gpu_settings_under_the_cpu_profile_train(tmp_path, tiny_env):
    out = tmp_path / "out"
    p = run_cli("sft", "--recipe", "tiny", "--profile", "cpu", "--bf16=true", "--tf32=true",
                "--attn_implementation=flash_attention_2", "--max_steps=2", "--eval_strategy=no", "--report_to=none",
                "--save_strategy=no", f"--output_dir={out}", env=tiny_env, cwd=tmp_path, timeout=600)
    assert p.returncode == 0, (p.stdout, p.stderr[-4000:])
    err = flat(p.stderr)
    for key in ("train.bf16", "train.tf32", "model.attn_implementation"):
        assert f"{key}:" in err and "whose setting wins" in err
    assert (out / "alignkit" / "run.yaml").is_file()


def test_a_slurm_submit_refused_by_the_preflight_leaves_nothing(tmp_path, tiny_env):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no messages column"}\n', encoding="utf-8")
    out = tmp_path / "a" / "out"
    p = run_cli("slurm", "submit", "--task", "sft", "--recipe", "tiny", "--profile", "cpu", "-G", "1",
                f"--output_dir={out}", "--eval_strategy=no", f"--data.mixture=[{{path: {bad}}}]",
                env=tiny_env, cwd=tmp_path, timeout=120)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "bad.jsonl" in flat(p.stderr) and "Traceback" not in p.stderr
    assert not (tmp_path / "a").exists()  # the output dir the submit claimed is gone again
