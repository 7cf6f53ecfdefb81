"""`alignkit orpo` and `alignkit cpt` training for real, through the CLI, on the tiny demo model (CPU, offline):
the outputs a run leaves (model, status, model.json, model card), `alignkit eval prefs` on the ORPO model, resume
after a SIGKILL to the weights of an uninterrupted run, and the handbook's zephyr-141b ORPO recipe file run with
only size (and CPU) overrides."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.e2e.runs import QUICK, alignkit, load_weights, max_abs_diff, status
from tests.helpers import popen_cli
from tests.processes import sigkill_run, wait_for

pytestmark = pytest.mark.e2e

HANDBOOK = Path(__file__).resolve().parents[1] / "fixtures" / "handbook"


def orpo_config(tmp_path: Path, model_dir: str, assets) -> Path:
    f = tmp_path / "orpo.yaml"
    f.write_text(yaml.safe_dump({
        "model": {"model_name_or_path": model_dir},
        "data": {"mixture": [{"path": str(assets.prefs_train), "split": "train"},
                             {"path": str(assets.prefs_test), "split": "test"}]},
        "train": {"beta": 0.1, "learning_rate": 1.0e-3, "max_length": 64, "per_device_train_batch_size": 8,
                  "per_device_eval_batch_size": 16, "seed": 42},
        "launch": {"global_batch_size": 8},
    }))
    return f


def cpt_config(tmp_path: Path, model_dir: str) -> Path:
    """Plain text in a `body` column (the handbook's text_column names it), plus a column nothing reads."""
    rng = random.Random(0)
    words = "the cat sat on a mat red blue green dog runs fast slow tree house river sky".split()
    rows = [{"body": " ".join(rng.choice(words) for _ in range(rng.randint(5, 40))), "id": i} for i in range(200)]
    data = tmp_path / "corpus.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    f = tmp_path / "cpt.yaml"
    f.write_text(yaml.safe_dump({
        "model": {"model_name_or_path": model_dir},
        "text_column": "body",  # the handbook's key, translated to data.text_column
        "data": {"mixture": [{"path": str(data), "split": "train"}]},
        "train": {"learning_rate": 1.0e-3, "max_length": 64, "per_device_train_batch_size": 8, "seed": 42},
        "launch": {"global_batch_size": 8},
    }))
    return f


def test_orpo_trains_from_the_base_model_and_eval_prefs_reads_it(tmp_path, tiny_env, tiny_model_dir, tiny_assets):
    out = tmp_path / "orpo"
    cfg = orpo_config(tmp_path, tiny_model_dir, tiny_assets)
    proc = alignkit(["orpo", "--config", cfg, "--profile", "cpu", f"--output_dir={out}", "--max_steps=8",
                     "--eval_strategy=steps", "--eval_steps=4", "--save_steps=4", "--logging_steps=1",
                     "--report_to=none"], tiny_env)
    assert "done:" in proc.stderr
    for name in ("model.safetensors", "tokenizer.json", "chat_template.jinja", "train_results.json",
                 "eval_results.json", "trainer_state.json"):
        assert (out / name).is_file(), name
    assert status(out)["state"] == "completed"
    assert (out / "checkpoint-4" / "alignkit-complete.json").is_file()
    summary = json.loads((out / "alignkit" / "model.json").read_text())
    assert summary["class"] == "LlamaForCausalLM" and summary["trainable_params"] == summary["total_params"]
    assert "task `orpo`" in (out / "README.md").read_text()
    run = yaml.safe_load((out / "alignkit" / "run.yaml").read_text())
    assert run["task"] == "orpo" and run["config"]["train"]["beta"] == 0.1
    # ORPO's own metrics were logged: the odds ratio next to the NLL term
    logs = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert any("log_odds_ratio" in h for h in logs) and any("nll_loss" in h for h in logs)
    evals = json.loads((out / "eval_results.json").read_text())
    assert "eval_rewards/accuracies" in evals

    res = alignkit(["eval", "prefs", "--model", out, "--config", cfg, "--limit", "16"], tiny_env)
    result = json.loads((out / "eval" / "prefs" / "results.json").read_text())
    assert result["n"] == 16 and 0.0 <= result["accuracy_logp"] <= 1.0, res.stderr


def test_cpt_trains_packed_text_from_the_text_column(tmp_path, tiny_env, tiny_model_dir):
    out = tmp_path / "cpt"
    proc = alignkit(["cpt", "--config", cpt_config(tmp_path, tiny_model_dir), "--profile", "cpu",
                     f"--output_dir={out}", "--max_steps=6", *QUICK], tiny_env)
    assert "done:" in proc.stderr and "text_column → data.text_column" in " ".join(proc.stderr.split())
    assert (out / "model.safetensors").is_file() and status(out)["state"] == "completed"
    summary = json.loads((out / "alignkit" / "model.json").read_text())
    assert summary["speed"]["packing"] is True
    assert "task `cpt`" in (out / "README.md").read_text()
    # the build in the run dir holds the text as `text` and nothing else
    manifest = json.loads((out / "alignkit" / "data" / "manifest.json").read_text())
    assert manifest["task"] == "cpt"
    losses = [h["loss"] for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert len(losses) >= 6 and losses[-1] < losses[0]


@pytest.mark.parametrize("task", ["orpo", "cpt"])
def test_sigkill_after_a_checkpoint_then_rerun_resumes_to_identical_weights(task, tmp_path, tiny_env,
                                                                            tiny_model_dir, tiny_assets):
    cfg = orpo_config(tmp_path, tiny_model_dir, tiny_assets) if task == "orpo" else cpt_config(tmp_path,
                                                                                               tiny_model_dir)
    args = [task, "--config", cfg, "--profile", "cpu", "--max_steps=12", "--save_strategy=steps", "--save_steps=4",
            *QUICK]
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    alignkit([*args, f"--output_dir={clean}"], tiny_env)

    # steps slowed down (a sleep, nothing else) so that the kill lands mid-run, after checkpoint-4
    proc = popen_cli(*args, f"--output_dir={killed}", env=tiny_env, env_extra={"ALIGNKIT_TEST_SLOW_STEP": "0.3"},
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    marker = killed / "checkpoint-4" / "alignkit-complete.json"
    try:
        wait_for(marker.is_file, 300, "checkpoint-4")
    finally:
        sigkill_run(proc, killed)
    assert not (killed / "model.safetensors").exists()

    resumed = alignkit([*args, f"--output_dir={killed}"], tiny_env)
    assert "resuming" in resumed.stderr
    assert status(killed)["state"] == "completed"
    assert max_abs_diff(load_weights(clean / "model.safetensors"), load_weights(killed / "model.safetensors")) <= 1e-6


def test_the_handbooks_zephyr_141b_orpo_file_runs_with_size_overrides(tmp_path, tiny_env, tiny_model_dir):
    """recipes/zephyr-141b-A35b/orpo/config_full.yaml as the handbook shipped it (2025-07-29), its model and
    dataset swapped for tiny local stand-ins with the columns of argilla/distilabel-capybara-dpo-7k-binarized
    (chosen/rejected conversations, ratings), sizes cut, and the settings a CPU cannot honour (bf16,
    flash-attention, 8-bit Adam) and the Hub push turned off."""
    rng = random.Random(1)
    rows = []
    for i in range(48):
        q = f"Which is a colour, {rng.choice(['red', 'blue'])} or {rng.choice(['cat', 'dog'])}? ({i})"
        user = {"role": "user", "content": q}
        rows.append({"source": "stand-in", "chosen": [user, {"role": "assistant", "content": "the colour"}],
                     "chosen_rating": 5, "rejected": [user, {"role": "assistant", "content": "the animal"}],
                     "rejected_rating": 1})
    data = tmp_path / "capybara.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = HANDBOOK / "2025-07-29" / "recipes" / "zephyr-141b-A35b" / "orpo" / "config_full.yaml"
    out = tmp_path / "zephyr-orpo"
    proc = alignkit(["orpo", recipe, "--profile", "cpu", f"--model_name_or_path={tiny_model_dir}",
                     f"--data.mixture=[{{path: {data}, split: train}}]", "--data.preprocessing_num_workers=1",
                     f"--output_dir={out}", "--max_steps=3", "--max_length=64", "--per_device_train_batch_size=4",
                     "--bf16=false", "--model.dtype=float32", "--attn_implementation=sdpa", "--optim=adamw_torch",
                     "--report_to=none", "--push_to_hub=false"], tiny_env)
    assert "done:" in proc.stderr
    run = yaml.safe_load((out / "alignkit" / "run.yaml").read_text())["config"]
    # the recipe's own ORPO values reached the trainer
    assert run["train"]["beta"] == 0.05 and run["train"]["lr_scheduler_type"] == "inverse_sqrt"
    assert run["train"]["learning_rate"] == 5.0e-6 and run["train"]["num_train_epochs"] == 3
    assert "<|assistant|>" in run["data"]["chat_template"]
    assert status(out)["state"] == "completed" and (out / "model.safetensors").is_file()
