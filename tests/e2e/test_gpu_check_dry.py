"""scripts/gpu-check.sh --cpu-dry: every step of the GPU acceptance check runs its plumbing on this CPU at toy
size (install of the built wheel into a fresh venv, the CUDA tests (skipped here, with the reason), SFT -> DPO,
QLoRA, ZeRO-3, the tokens benchmark) and writes the JSON and the markdown table the GPU run writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_the_gpu_steps_budgets_fit_the_eight_minutes():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "scripts"))
    assert sum(gpu_check.BUDGETS.values()) <= gpu_check.TOTAL_BUDGET_S == 8 * 60
    assert set(gpu_check.BUDGETS) == set(gpu_check.CPU_BUDGETS)
    docs = (REPO / "docs" / "gpu.md").read_text()
    for step, budget in gpu_check.BUDGETS.items():
        assert f"| {step} | {budget} |" in docs, step


@pytest.mark.e2e
def test_gpu_check_cpu_dry_runs_every_step(tmp_path, tiny_env):
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**tiny_env, "PYTHON": sys.executable}
    env.pop("PYTHONPATH", None)  # the check imports the wheel it installs, never this checkout
    proc = subprocess.run([str(REPO / "scripts" / "gpu-check.sh"), "--cpu-dry", "--out", str(out), "--work",
                           str(work)], env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-4000:]
    report = json.loads((out / "gpu-cpu-dry.json").read_text())
    steps = {s["step"]: s for s in report["steps"]}
    assert list(steps) == ["install", "cuda", "sft-dpo", "qlora", "zero3", "tokens"]
    assert all(s["ok"] for s in steps.values()), report
    install = steps["install"]["detail"]
    assert Path(install["alignkit"]).is_relative_to(work / "venv"), install  # the wheel, not the checkout
    cuda = steps["cuda"]["detail"]
    assert cuda["passed"] == 0 and cuda["failed"] == 0 and cuda["skipped"] >= 4
    assert all(r.startswith("needs a CUDA GPU") for r in cuda["skip_reasons"]), cuda
    assert steps["qlora"]["detail"]["model"]["quantized_linear"]["Linear4bit"] > 0
    assert steps["zero3"]["detail"]["model"]["zero3_partitioned"] is True
    assert steps["sft-dpo"]["detail"]["dpo"]["steps"] >= 1
    tokens = steps["tokens"]["detail"]["results"]
    assert set(tokens) == {"handbook", "alignkit_default"} and tokens["handbook"]["speedup_vs_handbook"] == 1.0
    table = (out / "gpu-cpu-dry.md").read_text()
    assert "| step | result | seconds | budget | in effect |" in table and "| alignkit_default |" in table
    assert not os.path.exists(REPO / "bench" / "results" / "gpu-cpu-dry.json")  # --out was honoured
