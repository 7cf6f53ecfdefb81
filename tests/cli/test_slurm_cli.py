"""`alignkit slurm submit --dry-run` through the CLI, in a subprocess: what the user typed reaches the
script quoted, bad input is exit 2 naming the option, and a dry run writes nothing. The renderer itself is
tested without the CLI in tests/unit/test_slurm_render.py."""

from __future__ import annotations

import subprocess

from alignkit.launch.slurm import sbatch_quote
from tests.helpers import run_cli

HOSTILE = "x $(touch PWNED) `touch PWNED2`; touch PWNED3 'q' \"dq\" #c %j [bold]"


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return run_cli("slurm", *args, cwd=cwd, timeout=120)


def test_submit_dry_run_quotes_what_the_user_typed(tmp_path):
    out = tmp_path / HOSTILE
    res = _cli("submit", "--recipe", "tiny", "--profile", "cpu", "--task", "sft", "--nodes", "2",
               "--gpus-per-node", "1", "--per_device_train_batch_size=8", f"--output_dir={out}", "--job-name",
               HOSTILE, "--sbatch-arg", f"--comment={HOSTILE}", "--partition", "cpu;x", "--dry-run", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    script = res.stdout
    assert script.startswith("#!/bin/bash")
    assert f"#SBATCH --job-name={sbatch_quote(HOSTILE)}" in script
    assert "#SBATCH --partition='cpu;x'" in script
    assert "#SBATCH --gpus-per-node" not in script  # cpu profile: CPU processes, no GPU request
    assert not out.exists()  # a dry run writes nothing
    check = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert not list(tmp_path.rglob("PWNED*"))


def test_submit_refuses_bad_input_with_exit_2(tmp_path):
    base = ["submit", "--recipe", "tiny", "--profile", "cpu", "--task", "sft", "--gpus-per-node", "1",
            f"--output_dir={tmp_path / 'o'}", "--dry-run"]
    res = _cli(*base, "--job-name", "a\nb")
    assert res.returncode == 2 and "--job-name" in res.stderr and "newline" in res.stderr
    # validated exactly as `alignkit sft`: the global batch cannot be split over 3 processes
    res = _cli(*base, "--nodes", "3")
    assert res.returncode == 2 and "launch.global_batch_size" in res.stderr
    res = _cli(*base, "--learning_rat=1e-5")
    assert res.returncode == 2 and "learning_rat" in res.stderr
    res = _cli(*base, "--time", "soon")
    assert res.returncode == 2 and "--time" in res.stderr
    res = _cli(*base[:-1], "--env-setup", str(tmp_path / "nope.sh"), "--dry-run")
    assert res.returncode == 2 and "--env-setup" in res.stderr
