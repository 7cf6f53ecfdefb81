"""The tiny recipes' two steps chain as their comments say: step 2 (DPO) starts from what step 1 (SFT) writes,
for each variant; and a CPU run tells DeepSpeed its accelerator instead of letting it guess (and warn)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from alignkit.config import recipes

VARIANTS = ["full", "lora"]


def _raw(task: str, variant: str) -> tuple[dict, str]:
    path = recipes._root() / "tiny" / task / f"{variant}.yaml"
    text = path.read_text(encoding="utf-8")
    return yaml.safe_load(text), text


@pytest.mark.parametrize("variant", VARIANTS)
def test_tiny_dpo_reads_what_tiny_sft_writes(variant):
    sft, _ = _raw("sft", variant)
    dpo, comment = _raw("dpo", variant)
    written = sft["train"]["output_dir"]
    assert dpo["model"]["model_name_or_path"] == written
    # and the DPO recipe's comment says so, with step 1's command
    assert f"writes {written}" in comment and "alignkit sft --recipe tiny" in comment


def test_the_demo_trains_into_its_own_dirs_and_the_tiny_dpo_comment_says_how_to_use_them():
    _, comment = _raw("dpo", "full")
    assert "--model_name_or_path=runs/demo/sft" in comment


def test_a_cpu_run_names_deepspeeds_accelerator(tiny_env):
    """DeepSpeed guesses its accelerator when DS_ACCELERATOR is unset, and on a CPU says "Setting accelerator to
    CPU. If you have GPU or other accelerator, we were unable to detect it." at the top of every run."""
    plan = subprocess.run([sys.executable, "-m", "alignkit", "sft", "--recipe", "tiny", "--profile", "cpu", "--dry-run",
                           "--json"], capture_output=True, text=True, env=tiny_env, timeout=120)
    assert plan.returncode == 0, plan.stderr
    env = json.loads(plan.stdout)["env"]
    assert env["DS_ACCELERATOR"] == "cpu"
    child = subprocess.run([sys.executable, "-c", "from deepspeed.accelerator import get_accelerator as g; "
                            "print(g().device_name())"], capture_output=True, text=True,
                           env={**os.environ, **env}, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.strip() == "cpu" and "Setting accelerator to CPU" not in child.stdout + child.stderr
