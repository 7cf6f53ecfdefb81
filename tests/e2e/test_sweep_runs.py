"""A 2x2 sweep of the tiny recipe through the CLI, on CPU: interrupted (Ctrl-C to its process group) while its
second point trains, re-run with the same command: the first point is not trained again, the second resumes,
the rest run; `sweep status` and `sweep report` (table and PNGs) read the result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ALIGNKIT = [sys.executable, "-m", "alignkit"]


def _squash(text: str) -> str:
    """Messages without any whitespace: rich wraps long paths anywhere."""
    return "".join(text.split())


def _state(out: Path) -> str | None:
    try:
        return json.loads((out / "alignkit" / "status.json").read_text()).get("state")
    except (OSError, ValueError):
        return None


def test_sweep_interrupted_after_its_first_point_resumes_without_retraining_it(tmp_path, tiny_env):
    sweep_dir = tmp_path / "sweep"
    cmd = [*ALIGNKIT, "sweep", "sft", "--recipe", "tiny", "--profile", "cpu", "--output", str(sweep_dir),
           "--grid", "learning_rate=1e-3,5e-4", "--grid", "train.seed=1,2", "--max_steps=2", "--logging_steps=1",
           "--save_strategy=steps", "--save_steps=1", "--eval_strategy=steps", "--eval_steps=2", "--report_to=none"]
    names = ["p00-learning_rate=1e-3-seed=1", "p01-learning_rate=1e-3-seed=2", "p02-learning_rate=5e-4-seed=1",
             "p03-learning_rate=5e-4-seed=2"]
    first, second = sweep_dir / names[0], sweep_dir / names[1]
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(cmd, env=tiny_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 480
        while not (_state(first) == "completed" and _state(second) == "running"):
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-6000:]
            assert time.monotonic() < deadline, "the sweep did not reach its second point"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the sweep's terminal
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    text = (tmp_path / "first.log").read_text()
    assert code == 130, text[-6000:]
    assert _squash("interrupted. Re-run the same command to continue") in _squash(text)
    assert "Traceback" not in text
    # the manifest was written before the first point started
    manifest = sweep_dir / "sweep.yaml"
    assert manifest.is_file() and "learning_rate" in manifest.read_text()

    kept = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.rglob("*") if p.is_file()}
    state_file = first / "trainer_state.json"
    assert state_file in kept and (first / "model.safetensors") in kept

    status = subprocess.run([*ALIGNKIT, "sweep", "status", str(sweep_dir)], env=tiny_env, capture_output=True,
                            text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    rows = [ln.split("\t") for ln in status.stdout.splitlines()]
    assert rows[0][:4] == ["point", "learning_rate", "train.seed", "state"]
    assert [r[3] for r in rows[1:]] == ["completed", "interrupted", "pending", "pending"]

    again = subprocess.run(cmd, env=tiny_env, capture_output=True, text=True, timeout=900)
    flat = _squash(again.stderr)
    assert again.returncode == 0, again.stderr[-6000:]
    assert _squash(f"[1/4] point 0 (learning_rate=1e-3, train.seed=1): already completed in {first}") in flat
    assert _squash(f"[2/4] point 1 (learning_rate=1e-3, train.seed=2): resuming in {second}") in flat
    assert _squash("sweep finished: 3 trained, 1 already completed of 4 points") in flat
    # the first point was not trained again: every file of it untouched
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.rglob("*") if p.is_file()} == kept
    for name in names:
        assert _state(sweep_dir / name) == "completed", name
        assert json.loads((sweep_dir / name / "trainer_state.json").read_text())["global_step"] == 2

    rep = subprocess.run([*ALIGNKIT, "sweep", "report", str(sweep_dir), "-o", str(tmp_path / "rep")], env=tiny_env,
                         capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| point | learning_rate | train.seed | state | steps | train loss | eval loss |" in md
    assert md.count("| completed | 2/2 |") == 4
    for png in ("curves.png", "metrics_vs_values.png"):
        data = (tmp_path / "rep" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000, png


def test_dpo_sweep_shows_reward_accuracy_and_its_offline_eval(tmp_path, tiny_env):
    sft = tmp_path / "sft"
    res = subprocess.run([*ALIGNKIT, "sft", "--recipe", "tiny", "--profile", "cpu", f"--output_dir={sft}",
                          "--max_steps=2", "--eval_strategy=no", "--save_strategy=no", "--report_to=none"],
                         env=tiny_env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    sweep_dir = tmp_path / "dpo-sweep"
    res = subprocess.run([*ALIGNKIT, "sweep", "dpo", "--recipe", "tiny", "--profile", "cpu", "--output",
                          str(sweep_dir), "--grid", "beta=0.1,0.5", f"--model_name_or_path={sft}", "--max_steps=2",
                          "--logging_steps=1", "--eval_strategy=steps", "--eval_steps=2", "--save_strategy=no",
                          "--report_to=none", "--eval", "--eval-limit", "16"],
                         env=tiny_env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-6000:]
    st = subprocess.run([*ALIGNKIT, "sweep", "status", str(sweep_dir), "--json"], env=tiny_env, capture_output=True,
                        text=True, timeout=120)
    assert st.returncode == 0, st.stderr
    points = json.loads(st.stdout)["points"]
    assert [p["values"] for p in points] == [{"beta": 0.1}, {"beta": 0.5}]
    for p in points:
        assert p["state"] == "completed" and p["step"] == 2
        assert 0.0 <= p["reward_accuracy"] <= 1.0 and p["eval_loss"] is not None
        # the offline eval against the point's starting model (the SFT model): DPO's implicit reward
        assert 0.0 <= p["evals"]["prefs acc (reward)"] <= 1.0
        results = json.loads((Path(p["output_dir"]) / "eval" / "prefs" / "results.json").read_text())
        assert results["n"] == 16 and results["ref_model_path"] == str(sft)
    rep = subprocess.run([*ALIGNKIT, "sweep", "report", str(sweep_dir)], env=tiny_env, capture_output=True, text=True,
                         timeout=300)
    assert rep.returncode == 0, rep.stderr
    assert "| reward acc | prefs acc (reward) |" in rep.stdout
    assert "Best by offline eval, prefs acc (reward)" in (sweep_dir / "report" / "report.md").read_text()
