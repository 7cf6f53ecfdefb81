"""`make bench` itself works: a smoke run of the training benchmarks with --quick (small settings).

No number is judged here (targets are for the benchmark's own ratios, on a full run); what is checked is
that the benchmarks run through alignkit's CLI and plain TRL side by side, train the same thing, and write
the report with every row a reader looks for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_quick_bench_runs_alignkit_and_plain_trl_side_by_side(tmp_path):
    out = tmp_path / "bench" / "RESULTS.md"
    env = {**os.environ, "TMPDIR": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "run_all.py"), "--quick", "--only", "overhead,tokens",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = out.read_text()
    assert "--quick: small smoke settings, not the benchmark numbers" in report
    for row in ("whole process, alignkit / plain TRL", "train loop, alignkit / plain TRL",
                "whole process through `accelerate launch`", "useful tok/s, alignkit_default / handbook"):
        assert row in report, row
    assert (out.parent / "results.png").stat().st_size > 0

    overhead = json.loads((out.parent / "results" / "overhead.json").read_text())
    # alignkit (directly and through accelerate launch) and plain TRL trained the very same steps
    assert overhead["max_loss_difference"] == 0.0
    assert {r["who"] for r in overhead["runs"]} == {"alignkit", "plain", "alignkit_accelerate"}
    tokens = json.loads((out.parent / "results" / "tokens.json").read_text())
    default = tokens["results"]["alignkit_default"]
    assert default["settings"] == {"train_sampling_strategy": "group_by_length"}  # read from the defaults file
    assert all(r["useful_tokens_per_s"] > 0 for r in tokens["results"].values())
