"""Shell completion (typer's): `alignkit --show-completion` / `--install-completion` for bash, zsh and fish,
and the completions themselves (commands, options), through the `_ALIGNKIT_COMPLETE` protocol the scripts use.

typer 0.29 detects the shell from the parent process (shellingham), so `--show-completion` runs under a
real bash here; the scripts for each shell come from `_ALIGNKIT_COMPLETE=source_<shell>`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ALIGNKIT = f"{sys.executable} -m alignkit"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(REPO), **extra}
    env.pop("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", None)
    return env


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=REPO)


def test_help_lists_the_completion_options(tmp_path):
    out = _run([sys.executable, "-m", "alignkit", "--help"], _env(tmp_path)).stdout
    assert "--install-completion" in out and "--show-completion" in out


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_show_completion_under_bash_prints_the_bash_script(tmp_path):
    # `; true` keeps bash alive as the parent (it would exec a lone command), so typer detects it
    proc = _run(["bash", "-c", f"{ALIGNKIT} --show-completion; true"], _env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "complete -o default -F _alignkit_completion alignkit" in proc.stdout
    assert "_ALIGNKIT_COMPLETE=complete_bash" in proc.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_install_completion_under_bash_writes_the_script_and_sources_it(tmp_path):
    proc = _run(["bash", "-c", f"{ALIGNKIT} --install-completion; true"], _env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    script = tmp_path / ".bash_completions" / "alignkit.sh"
    assert "_alignkit_completion" in script.read_text()
    assert str(script.relative_to(tmp_path)) in (tmp_path / ".bashrc").read_text()


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o default -F _alignkit_completion alignkit"),
                                           ("zsh", "#compdef alignkit"),
                                           ("fish", "complete --command alignkit")])
def test_each_shell_gets_its_script(tmp_path, shell, marker):
    proc = _run([sys.executable, "-m", "alignkit"], _env(tmp_path, _ALIGNKIT_COMPLETE=f"source_{shell}"))
    assert proc.returncode == 0, proc.stderr
    assert marker in proc.stdout


def test_completions_name_commands_and_options(tmp_path):
    bash = _run([sys.executable, "-m", "alignkit"],
                _env(tmp_path, _ALIGNKIT_COMPLETE="complete_bash", COMP_WORDS="alignkit sf", COMP_CWORD="1"))
    assert bash.stdout.split() == ["sft"], bash.stdout + bash.stderr
    zsh = _run([sys.executable, "-m", "alignkit"],
               _env(tmp_path, _ALIGNKIT_COMPLETE="complete_zsh", _TYPER_COMPLETE_ARGS="alignkit dpo --reci"))
    assert "--recipe" in zsh.stdout, zsh.stdout + zsh.stderr
    fish = _run([sys.executable, "-m", "alignkit"],
                _env(tmp_path, _ALIGNKIT_COMPLETE="complete_fish", _TYPER_COMPLETE_FISH_ACTION="get-args",
                     _TYPER_COMPLETE_ARGS="alignkit reci"))
    assert "recipes" in fish.stdout, fish.stdout + fish.stderr
