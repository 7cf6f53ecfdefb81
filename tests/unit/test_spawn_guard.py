"""The guard that keeps training out of tests not marked e2e (tests/spawn_guard/sitecustomize.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import GUARD_VAR, cli_env
from tests.spawn_guard.sitecustomize import training_command


@pytest.mark.parametrize("argv", [
    ["/venv/bin/accelerate", "launch", "--config_file", "a.yaml", "-m", "alignkit.train.sft", "--run", "r.yaml"],
    [sys.executable, "-m", "alignkit.train.dpo", "--run", "r.yaml"],
    [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "x.py"],
    [sys.executable, "/src/alignkit/train/sft.py"],
    "accelerate launch --num_processes 2 train.py",
    [b"accelerate", b"launch", b"x.py"],
])
def test_training_commands_are_seen(argv):
    assert training_command(argv)


@pytest.mark.parametrize("argv", [
    [sys.executable, "-m", "alignkit", "sft", "--recipe", "tiny", "--dry-run"],  # the parent, not the trainer
    [sys.executable, "-m", "alignkit", "slurm", "submit", "--task", "sft"],
    ["accelerate", "config"], ["bash", "job.sbatch"], "echo accelerate", [sys.executable, "-c", "print(1)"],
])
def test_other_commands_pass(argv):
    assert training_command(argv) is None


def test_a_child_process_is_refused_and_logged(tmp_path):
    log = tmp_path / "guard.log"
    code = ("import subprocess, sys\n"
            "try:\n    subprocess.run([sys.executable, '-m', 'alignkit.train.sft', '--help'])\n"
            "except RuntimeError as e:\n    print('refused:', e)\n")
    env = cli_env(env_extra={GUARD_VAR: str(log)})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "refused:" in out.stdout and "alignkit.train.sft" in out.stdout, out.stderr
    assert "-m alignkit.train.sft --help" in log.read_text()  # its own log: not the session's, which would fail it


def test_without_the_variable_nothing_is_refused(tmp_path):
    code = "import subprocess, sys; print(subprocess.run([sys.executable, '-c', 'pass']).returncode)"
    env = cli_env()
    env.pop(GUARD_VAR, None)
    out = subprocess.run([sys.executable, "-c", code + "; import sys; print('_alignkit_training_guard' in dir(sys))"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["0", "False"], out.stderr
