"""What the end-to-end tests share: the CLI run to the end (its output shown when it fails), and what a run
leaves behind (losses, status, weights)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.helpers import run_cli

QUICK = ["--eval_strategy=no", "--logging_steps=1", "--report_to=none"]


def alignkit(args, env, *, timeout=600, expect=0, cwd=None) -> subprocess.CompletedProcess:
    proc = run_cli(*args, env=env, timeout=timeout, cwd=cwd)
    if expect is not None and proc.returncode != expect:
        raise AssertionError(f"exit {proc.returncode} (expected {expect})\nSTDOUT:\n{proc.stdout[-4000:]}\n"
                             f"STDERR:\n{proc.stderr[-8000:]}")
    return proc


def losses(output_dir: Path) -> list[float]:
    """The training loss at each logged step (logging_first_step can log step 1 twice)."""
    state = json.loads((output_dir / "trainer_state.json").read_text())
    by_step = {h["step"]: h["loss"] for h in state["log_history"] if "loss" in h}
    return [by_step[s] for s in sorted(by_step)]


def status(output_dir: Path) -> dict:
    return json.loads((output_dir / "alignkit" / "status.json").read_text())


def load_weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
