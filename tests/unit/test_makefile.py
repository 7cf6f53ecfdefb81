"""`make demo` / `make test` on a fresh machine install for minutes: the install says what it does, step by
step, and lets pip print a line per package (no --quiet)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_install_says_what_it_installs(tmp_path):
    out = subprocess.run(["make", "-n", "-B", "install", f"VENV={tmp_path / 'venv'}"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    steps = [line for line in out.stdout.splitlines() if line.startswith("echo ")]
    assert len(steps) >= 3 and any("torch" in s for s in steps) and any("alignkit" in s for s in steps)
    pip = [line for line in out.stdout.splitlines() if " -m pip install " in line]
    assert len(pip) == 2 and not any("--quiet" in line or " -q " in line for line in pip)
