"""Training on one CUDA GPU through the CLI, as a user runs it: bf16 with SDPA or flash-attention, 4-bit
QLoRA (the layers really are bitsandbytes' Linear4bit), one-GPU DeepSpeed ZeRO-3, Liger when installed.

Each test reads what was in effect from the run's own records (alignkit/model.json: parameter dtype,
quantized layers, ZeRO-3 partitioning, and `speed`: attention kernel, Liger, batching), not from what was
asked. Skipped, with the reason, where no CUDA GPU is visible (tests/gpu/conftest.py).
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cuda, pytest.mark.e2e]

QUICK = ["--num-gpus", "1", "--eval_strategy=no", "--logging_steps=1", "--report_to=none", "--save_strategy=no"]
# one-process bf16 full fine-tuning without DeepSpeed: the lora profile (bf16, one process) with LoRA off
BF16_FULL = ["--profile", "lora", "--lora.enabled=false"]


def alignkit(args, env, *, timeout=600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "alignkit", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-8000:]}")
    return proc


def record(output_dir: Path) -> dict:
    return json.loads((output_dir / "alignkit" / "model.json").read_text())


def losses(output_dir: Path) -> list[float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [h["loss"] for h in state["log_history"] if "loss" in h]


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture
def gpu_env(tiny_env) -> dict[str, str]:
    env = dict(tiny_env)
    if env.get("CUDA_VISIBLE_DEVICES") == "":  # a CPU-only setting inherited from a parent: not for these
        del env["CUDA_VISIBLE_DEVICES"]
    return env


def test_bf16_sft_then_dpo_with_sdpa_or_flash_attention(tmp_path, gpu_env):
    import torch

    sft, dpo = tmp_path / "sft", tmp_path / "dpo"
    alignkit(["sft", "--recipe", "tiny", *BF16_FULL, f"--output_dir={sft}", "--max_steps=8", *QUICK], gpu_env)
    info = record(sft)
    assert info["dtype"] == "torch.bfloat16", info
    expected_attn = "flash_attention_2" if has("flash_attn") else "sdpa"
    assert info["speed"]["attn_implementation"] == expected_attn, info["speed"]
    assert info["speed"]["use_liger_kernel"] is has("liger_kernel"), info["speed"]
    train_env = json.loads((sft / "alignkit" / "env.json").read_text())
    assert train_env["cuda_available"] is True and train_env["gpus"], train_env
    run = losses(sft)
    assert len(run) == 8 and all(math.isfinite(x) for x in run) and run[-1] < run[0], run
    assert torch.cuda.is_bf16_supported()

    # DPO from that model, bf16, the same kernel choice
    alignkit(["dpo", "--recipe", "tiny", *BF16_FULL, f"--model_name_or_path={sft}", f"--output_dir={dpo}",
              "--max_steps=4", *QUICK], gpu_env)
    assert record(dpo)["speed"]["attn_implementation"] == expected_attn
    assert (dpo / "model.safetensors").is_file()
    assert all(math.isfinite(x) for x in losses(dpo))


def test_the_config_overrides_the_kernels_chosen_by_what_is_installed(tmp_path, gpu_env):
    # the first test checks flash-attention and Liger are on where installed; asked off, they are off
    out = tmp_path / "sft"
    alignkit(["sft", "--recipe", "tiny", *BF16_FULL, "--attn_implementation=sdpa", "--use_liger_kernel=false",
              f"--output_dir={out}", "--max_steps=2", *QUICK], gpu_env)
    speed = record(out)["speed"]
    assert speed["attn_implementation"] == "sdpa" and speed["use_liger_kernel"] is False, speed


def test_qlora_sft_quantizes_every_linear_layer_to_4_bit(tmp_path, gpu_env, tiny_model_dir):
    out = tmp_path / "sft"
    alignkit(["sft", "--recipe", "tiny", "--profile", "qlora", f"--output_dir={out}", "--max_steps=3", *QUICK],
             gpu_env)
    layers = json.loads((Path(tiny_model_dir) / "config.json").read_text())["num_hidden_layers"]
    info = record(out)
    # q, k, v, o, gate, up, down of every block are bitsandbytes' Linear4bit; only LoRA trains
    assert info["quantized_linear"] == {"Linear4bit": 7 * layers}, info
    assert 0 < info["trainable_params"] < info["total_params"]
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    assert all(math.isfinite(x) for x in losses(out))


def test_one_gpu_deepspeed_zero3_step(tmp_path, gpu_env):
    out = tmp_path / "sft"
    proc = alignkit(["sft", "--recipe", "tiny", "--profile", "full", f"--output_dir={out}", "--max_steps=2", *QUICK],
                    gpu_env)
    assert "done:" in proc.stderr
    info = record(out)
    assert info["zero3_partitioned"] is True and info["dtype"] == "torch.bfloat16", info
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2
    assert (out / "model.safetensors").is_file()  # gathered from the shards at save time
    assert (out / "alignkit" / "deepspeed.json").is_file()
