"""Training for real, through the CLI as a user runs it, on the tiny demo model (CPU, offline).

Each test starts `python -m alignkit sft|dpo ...` in a subprocess: the parent validates and spawns
alignkit.train.sft|dpo (directly for one process, through `accelerate launch` for several or DeepSpeed),
which drives TRL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.runs import QUICK, alignkit, load_weights, losses, max_abs_diff, status
from tests.helpers import popen_cli
from tests.processes import processes_mentioning, sigkill_run, wait_for

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent


# --------------------------------------------------------------------------- full SFT -> DPO


def test_sft_full_then_dpo_from_it(tmp_path, tiny_env):
    sft_dir, dpo_dir = tmp_path / "sft", tmp_path / "dpo"
    proc = alignkit(["sft", "--recipe", "tiny", "--profile", "cpu", f"--output_dir={sft_dir}", "--max_steps=6",
                     "--save_strategy=steps", "--save_steps=3", "--logging_steps=1", "--eval_strategy=steps",
                     "--eval_steps=3"], tiny_env)
    assert "done:" in proc.stderr

    # the model, tokenizer and chat template, ready to load and chat
    for name in ("model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja",
                 "generation_config.json", "train_results.json", "eval_results.json", "trainer_state.json"):
        assert (sft_dir / name).is_file(), name
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(sft_dir)
    assert "<|assistant|>" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                      add_generation_prompt=True)
    assert GenerationConfig.from_pretrained(sft_dir).eos_token_id == tok.eos_token_id
    assert AutoConfig.from_pretrained(sft_dir).use_cache is True
    # checkpoints, each marked complete
    for step in (3, 6):
        assert (sft_dir / f"checkpoint-{step}" / "alignkit-complete.json").is_file()
    # reproducibility: the resolved run, library versions, model card, TensorBoard events
    run = (sft_dir / "alignkit" / "run.yaml").read_text()
    assert "learning_rate: 0.003" in run and "max_steps: 6" in run
    env = json.loads((sft_dir / "alignkit" / "env.json").read_text())
    assert env["packages"]["trl"] and env["world_size"] == 1 and "sft" in env["argv"]
    card = (sft_dir / "README.md").read_text()
    assert "Trained with alignkit" in card and "recipe `tiny`" in card and "profile `cpu`" in card
    assert list((sft_dir / "runs").rglob("events.out.tfevents.*")), "report_to tensorboard is the default"
    assert status(sft_dir)["state"] == "completed" and status(sft_dir)["global_step"] == 6
    # the speed choices in effect, as the trainer had them (no flash-attn or Liger on this CPU machine)
    speed = json.loads((sft_dir / "alignkit" / "model.json").read_text())["speed"]
    assert speed == {"attn_implementation": "sdpa", "use_liger_kernel": False, "padding_free": False,
                     "packing": False, "train_sampling_strategy": "group_by_length", "gradient_checkpointing": False}
    assert len(losses(sft_dir)) == 6 and losses(sft_dir)[-1] < losses(sft_dir)[0]

    # DPO from the full SFT model (TRL keeps a frozen copy as the reference), with another TRL loss
    alignkit(["dpo", "--recipe", "tiny", "--profile", "cpu", f"--model_name_or_path={sft_dir}",
              f"--output_dir={dpo_dir}", "--max_steps=4", "--save_steps=4", "--loss_type=ipo", "--loss_weights=null", *QUICK], tiny_env)
    assert "- ipo" in (dpo_dir / "alignkit" / "run.yaml").read_text()
    assert (dpo_dir / "model.safetensors").is_file()
    state = json.loads((dpo_dir / "trainer_state.json").read_text())
    assert any("rewards/accuracies" in h for h in state["log_history"])
    assert status(dpo_dir)["state"] == "completed"

    # the same command again finds the run complete and trains nothing more
    again = alignkit(["sft", "--recipe", "tiny", "--profile", "cpu", f"--output_dir={sft_dir}", "--max_steps=6",
                      "--save_strategy=steps", "--save_steps=3", "--logging_steps=1", "--eval_strategy=steps",
                      "--eval_steps=3"], tiny_env)
    assert "already completed" in again.stderr
    assert json.loads((sft_dir / "trainer_state.json").read_text())["global_step"] == 6

    # a different config into the same dir is refused, naming the fix
    refused = alignkit(["sft", "--recipe", "tiny", "--profile", "cpu", f"--output_dir={sft_dir}",
                        "--learning_rate=1e-4"], tiny_env, expect=2)
    assert "different config" in refused.stderr and "--overwrite" in refused.stderr
    assert "Traceback" not in refused.stderr


# --------------------------------------------------------------------------- QLoRA, adapters, merge


def test_qlora_sft_then_dpo_from_the_adapter_then_merge(tmp_path, tiny_env):
    sft_dir, dpo_dir, merged = tmp_path / "sft", tmp_path / "dpo", tmp_path / "merged"
    alignkit(["sft", "--recipe", "tiny", "--profile", "qlora,cpu", f"--output_dir={sft_dir}", "--max_steps=3",
              "--save_steps=3", *QUICK], tiny_env)
    # really 4-bit: every linear layer of the 2 transformer blocks (q,k,v,o,gate,up,down) is bitsandbytes'
    info = json.loads((sft_dir / "alignkit" / "model.json").read_text())
    assert info["quantized_linear"] == {"Linear4bit": 14}
    assert 0 < info["trainable_params"] < info["total_params"]
    assert (sft_dir / "adapter_config.json").is_file() and not (sft_dir / "model.safetensors").exists()

    # DPO from the SFT adapter: its base + the SFT adapter are merged, a new adapter trains on that
    alignkit(["dpo", "--recipe", "tiny", "--profile", "qlora,cpu", f"--model_name_or_path={sft_dir}",
              f"--output_dir={dpo_dir}", "--max_steps=3", "--save_steps=3", *QUICK], tiny_env)
    adapter = json.loads((dpo_dir / "adapter_config.json").read_text())
    sft_merged = dpo_dir / "alignkit" / "sft-merged"
    assert adapter["base_model_name_or_path"] == str(sft_merged)  # never the SFT adapter's base (handbook #99)
    assert (sft_merged / "alignkit-complete.json").is_file() and (sft_merged / "config.json").is_file()
    assert json.loads((dpo_dir / "alignkit" / "model.json").read_text())["quantized_linear"] == {"Linear4bit": 14}

    # merged SFT weights = base + SFT adapter, computed independently with peft
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_path = json.loads((sft_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32),
                                    str(sft_dir)).merge_and_unload().state_dict()
    got = AutoModelForCausalLM.from_pretrained(sft_merged, dtype=torch.float32).state_dict()
    assert max(float((ref[k] - got[k]).abs().max()) for k in ref) < 1e-2  # bf16 merge on disk

    # alignkit merge: the DPO adapter into its (merged SFT) base, a full model that loads and generates
    alignkit(["merge", str(dpo_dir), "--output", str(merged), "--dtype", "float32"], tiny_env)
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(sft_merged, dtype=torch.float32),
                                           str(dpo_dir))
    ids = torch.tensor([[1, 5, 9, 12, 7]])
    with torch.no_grad():
        diff = (model(ids).logits - peft_model(ids).logits).abs().max().item()
    assert diff < 1e-4
    assert (merged / "tokenizer.json").is_file() and (merged / "chat_template.jinja").is_file()


def test_lora_sft_trains_only_the_adapter(tmp_path, tiny_env):
    out = tmp_path / "lora"
    alignkit(["sft", "--recipe", "tiny", "--profile", "lora,cpu", f"--output_dir={out}", "--max_steps=3",
              "--save_steps=3", *QUICK], tiny_env)
    info = json.loads((out / "alignkit" / "model.json").read_text())
    assert info["quantized_linear"] == {} and 0 < info["trainable_params"] < info["total_params"] / 2
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and adapter["lora_alpha"] == 16
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    assert len(losses(out)) == 3


# --------------------------------------------------------------------------- several processes


def test_two_processes_match_one_at_equal_global_batch(tmp_path, tiny_env):
    """DDP over gloo (accelerate's MULTI_GPU type on CPU). 1 process x 8 x accumulation 2 and 2 processes x 8
    see the same 16 rows per step; only the order of float reductions differs, so per-step losses agree to
    ~1e-6 relative; 1e-4 leaves room for summation-order noise across library versions."""
    one, two = tmp_path / "one", tmp_path / "two"
    common = ["sft", "--recipe", "tiny", "--profile", "cpu", "--max_steps=4", "--per_device_train_batch_size=8",
              "--save_steps=4", *QUICK]
    p1 = alignkit([*common, f"--output_dir={one}"], tiny_env)
    p2 = alignkit([*common, "--num-gpus", "2", f"--output_dir={two}"], tiny_env)
    assert "2 = 1 node(s) x 2 process(es)" in p2.stderr and "1 node(s) x 1 process(es)" in p1.stderr
    run1 = (one / "alignkit" / "run.yaml").read_text()
    run2 = (two / "alignkit" / "run.yaml").read_text()
    assert "gradient_accumulation_steps: 2" in run1 and "gradient_accumulation_steps: 1" in run2
    acc2 = (two / "alignkit" / "accelerate.yaml").read_text()
    assert "distributed_type: MULTI_GPU" in acc2 and "num_processes: 2" in acc2
    env = json.loads((two / "alignkit" / "env.json").read_text())
    assert env["world_size"] == 2 and env["distributed_type"] == "DistributedType.MULTI_CPU"
    l1, l2 = losses(one), losses(two)
    assert len(l1) == len(l2) == 4
    for a, b in zip(l1, l2):
        assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (l1, l2)


def test_deepspeed_zero3_on_cpu(tmp_path, tiny_env):
    out = tmp_path / "z3"
    alignkit(["sft", "--recipe", "tiny", "--profile", "full,cpu", "--num-gpus", "2", f"--output_dir={out}",
              "--per_device_train_batch_size=8", "--max_steps=2", "--save_steps=2", *QUICK], tiny_env, timeout=900)
    ds = json.loads((out / "alignkit" / "deepspeed.json").read_text())
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["stage3_param_persistence_threshold"] == 0  # tiny params really sharded
    info = json.loads((out / "alignkit" / "model.json").read_text())
    assert info["zero3_partitioned"] is True
    env = json.loads((out / "alignkit" / "env.json").read_text())
    assert env["world_size"] == 2 and env["distributed_type"] == "DistributedType.DEEPSPEED"
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)  # the 16-bit weights gathered at save
    assert info["total_params"] == sum(p.numel() for p in model.parameters())
    assert status(out)["state"] == "completed"


# --------------------------------------------------------------------------- golden losses


@pytest.mark.parametrize("task", ["sft", "dpo"])
def test_losses_equal_a_plain_trl_script(tmp_path, tiny_env, tiny_assets, task):
    """alignkit adds validation, launch and bookkeeping, never a different training: for the same model, data
    order, seed and settings its per-step losses equal plain TRL's."""
    from alignkit.config.resolve import resolve_config
    from alignkit.data.chat import to_trl
    from alignkit.data.mixer import load_mixture

    settings = {"max_steps": 5, "learning_rate": 1e-3, "per_device_train_batch_size": 8, "logging_steps": 1,
                "seed": 7, "report_to": "none", "save_strategy": "no", "lr_scheduler_type": "linear"}
    model = str(tiny_assets.model_dir)
    overrides = [f"--{k}={v}" for k, v in settings.items()] + ["--eval_strategy=no",
                                                                "--launch.global_batch_size=null"]
    if task == "dpo":
        overrides.append(f"--model_name_or_path={model}")

    # the rows alignkit trains on, in its order, and every TRL setting it resolved (recipe + profile +
    # overrides), for the plain script
    resolved = resolve_config(task, recipe="tiny", profile="cpu", overrides=overrides)
    rows = to_trl(load_mixture(resolved.config.data, task), task, resolved.config.data, "")["train"]
    train_file = tmp_path / "train.jsonl"
    rows.to_json(str(train_file), lines=True)
    trl_settings = resolved.to_dict()["train"]
    trl_settings.pop("output_dir")
    assert trl_settings["warmup_steps"] == 0.1 and trl_settings["max_steps"] == 5  # recipe and overrides both

    plain_dir, ak_dir = tmp_path / "plain", tmp_path / "alignkit"
    plain = subprocess.run([sys.executable, str(HERE / "plain_trl.py"), task, model, str(train_file),
                            str(plain_dir), json.dumps(trl_settings)], env=tiny_env, capture_output=True, text=True,
                           timeout=600)
    assert plain.returncode == 0, plain.stderr[-4000:]
    alignkit([task, "--recipe", "tiny", "--profile", "cpu", f"--output_dir={ak_dir}", *overrides], tiny_env)
    expected, got = losses(plain_dir), losses(ak_dir)
    assert len(expected) == len(got) == 5
    for a, b in zip(expected, got):
        assert abs(a - b) <= 1e-5, (expected, got)


# --------------------------------------------------------------------------- kills and signals


def test_sigkill_after_a_checkpoint_then_rerun_resumes_to_identical_weights(tmp_path, tiny_env):
    args = ["sft", "--recipe", "tiny", "--profile", "cpu", "--max_steps=24", "--save_strategy=steps",
            "--save_steps=4", *QUICK]
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    alignkit([*args, f"--output_dir={clean}"], tiny_env)

    proc = popen_cli(*args, f"--output_dir={killed}", env=tiny_env, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
    marker = killed / "checkpoint-8" / "alignkit-complete.json"
    try:
        wait_for(marker.is_file, 300, "checkpoint-8")
    finally:
        sigkill_run(proc, killed)
    assert not (killed / "model.safetensors").exists()

    resumed = alignkit([*args, f"--output_dir={killed}"], tiny_env)
    assert "resuming" in resumed.stderr and "stale lock" in resumed.stderr
    assert max_abs_diff(load_weights(clean / "model.safetensors"), load_weights(killed / "model.safetensors")) <= 1e-6


def test_sigterm_saves_a_checkpoint_and_says_so_then_a_second_run_is_refused_while_alive(tmp_path, tiny_env):
    out = tmp_path / "run"
    args = ["sft", "--recipe", "tiny", "--profile", "cpu", "--max_steps=400", "--save_strategy=steps",
            "--save_steps=1000", f"--output_dir={out}", *QUICK]
    proc = popen_cli(*args, env=tiny_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        wait_for(lambda: (out / "alignkit" / "status.json").is_file()
                  and status(out)["state"] == "running", 300, "training to start")
        busy = alignkit(args, tiny_env, expect=2)
        assert "busy" in busy.stderr and "Traceback" not in busy.stderr
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)  # what Slurm sends before preempting
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 75, stderr[-3000:]
    st = status(out)
    assert st["state"] == "preempted" and st["checkpoint"]
    step = st["global_step"]
    assert 0 < step < 400
    assert (Path(st["checkpoint"]) / "alignkit-complete.json").is_file()
    assert Path(st["checkpoint"]).name == f"checkpoint-{step}"
    assert not processes_mentioning(str(out)), "no orphans after the signal"
