"""The README's first command: `alignkit demo` trains a tiny chat model on this CPU, SFT then DPO, and DPO
changes what it prefers. Run for real through the CLI, as a newcomer would."""

import json

import pytest
from tests.helpers import run_cli

pytestmark = pytest.mark.e2e


def test_demo_shows_dpo_changing_the_preference(tmp_path, tiny_env):
    out = tmp_path / "demo"
    proc = run_cli("demo", "--output", out, env=tiny_env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    # SFT teaches the format, not the preference: about a coin flip before DPO, a clear preference after
    assert 0.3 <= summary["pref_accuracy_before_dpo"] <= 0.7
    assert summary["pref_accuracy_after_dpo"] >= 0.95
    assert summary["sft_eval_loss_after"] < summary["sft_eval_loss_before"]
    assert summary["sft_seconds"] > 0 and summary["dpo_seconds"] > 0
    png = (out / "loss_curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "preference accuracy" in proc.stdout + proc.stderr
    for stage in ("sft", "dpo"):
        assert json.loads((out / stage / "alignkit" / "status.json").read_text())["state"] == "completed"
        # DeepSpeed is told it runs on the CPU, so it does not open the run with its guess
        assert "Setting accelerator to CPU" not in (out / f"{stage}.log").read_text()
    shown = proc.stdout + proc.stderr
    # not a terminal: each stage says where it is, one line at a time; library warnings stay in the logs
    assert "sft: started" in shown and "dpo: started" in shown
    assert "FutureWarning" not in shown and "warnings.warn(" not in shown
    assert f"alignkit report {out}" in shown.split("next steps:")[-1]

    # again: nothing trains again, the screen says what was kept, summary.json keeps the real timings
    again = run_cli("demo", "--output", out, env=tiny_env, timeout=900)
    assert again.returncode == 0, again.stderr[-4000:]
    shown = again.stdout + again.stderr
    for stage in ("SFT", "DPO"):
        secs = summary[f"{stage.lower()}_seconds"]
        assert f"{stage} already complete (trained in {secs:.0f} s on " in shown, shown
    assert "done in" not in shown
    kept = json.loads((out / "summary.json").read_text())
    assert (kept["sft_seconds"], kept["dpo_seconds"]) == (summary["sft_seconds"], summary["dpo_seconds"])
    assert kept["pref_accuracy_after_dpo"] == summary["pref_accuracy_after_dpo"]
