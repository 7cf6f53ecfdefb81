"""The demo runner's pieces, and its orchestration against a stand-in for the `alignkit sft/dpo` CLI."""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from rich.console import Console

from alignkit.demo import run as R
from alignkit.errors import RuntimeFailure


def _state(d: Path, history: list[dict], sub: str | None = None) -> None:
    target = d / sub if sub else d
    target.mkdir(parents=True, exist_ok=True)
    (target / "trainer_state.json").write_text(json.dumps({"global_step": 10, "log_history": history}))


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=120, force_terminal=False, color_system=None), buf


def test_log_history_prefers_top_level_then_latest_checkpoint(tmp_path):
    d = tmp_path / "run"
    assert R.load_log_history(d) == []
    _state(d, [{"step": 5, "loss": 9.0}], sub="checkpoint-5")
    _state(d, [{"step": 20, "loss": 1.0}], sub="checkpoint-20")
    _state(d, [{"step": 10, "loss": 2.0}], sub="checkpoint-10")
    assert R.load_log_history(d) == [{"step": 20, "loss": 1.0}]
    _state(d, [{"step": 30, "loss": 0.5}])
    assert R.find_trainer_state(d) == d / "trainer_state.json"
    (d / "trainer_state.json").write_text("{not json")
    assert R.load_log_history(d) == []


def test_plot_from_handmade_trainer_state(tmp_path):
    sft, dpo, empty = tmp_path / "sft", tmp_path / "dpo", tmp_path / "none"
    _state(sft, [{"step": s, "loss": 5.0 / s} for s in range(1, 11)] + [{"step": 10, "eval_loss": 1.2},
                                                                        {"train_runtime": 3.0}])  # fmt: skip
    _state(dpo, [{"step": s, "loss": 0.69 - 0.05 * s, "rewards/accuracies": min(1.0, 0.5 + 0.1 * s)}
                 for s in range(1, 9)])  # fmt: skip
    out = R.plot_loss_curves({"sft": sft, "dpo": dpo}, tmp_path / "plots" / "loss.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    import matplotlib.image as mpimg

    img = mpimg.imread(out)
    assert img.shape[1] > img.shape[0] > 300  # two side-by-side subplots
    # a stage without a log still gives a picture (with a note), not a crash
    assert R.plot_loss_curves({"sft": sft, "dpo": empty}, tmp_path / "p2.png").is_file()
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["loss.png"]  # no temp files left


def test_write_summary_is_atomic_json(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    R.write_summary({"b": 1.5, "a": [1, 2]}, path)
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1.5}

    def fail(*a, **k):
        raise OSError("no space")

    monkeypatch.setattr(R.os, "replace", fail)
    with pytest.raises(OSError):
        R.write_summary({"b": 2}, path)
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1.5}  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_dpo_beta_from_the_run_record(tmp_path):
    d = tmp_path / "dpo"
    assert R.dpo_beta(d) == 0.1  # no record: the default
    (d / "alignkit").mkdir(parents=True)
    (d / "alignkit" / "run.yaml").write_text("task: dpo\nconfig:\n  train:\n    beta: 0.05\n")
    assert R.dpo_beta(d) == 0.05
    (d / "alignkit" / "run.yaml").write_text("config: [unclosed\n")
    assert R.dpo_beta(d, default=0.2) == 0.2


def test_metrics_table_renders_numbers():
    summary = {
        "sft_eval_loss_before": 6.2807,
        "sft_eval_loss_after": 1.3686,
        "pref_accuracy_before_dpo": 0.453125,
        "pref_accuracy_after_dpo": 1.0,
        "logp_margin_before_dpo": 0.04,
        "logp_margin_after_dpo": 25.06,
        "reward_accuracy_after_dpo": 0.984375,
        "sft_seconds": 12.34,
        "dpo_seconds": 9.87,
    }
    console, buf = _console()
    console.print(R.metrics_table(summary))
    text = buf.getvalue()
    for want in ("6.281", "1.369", "45.3 %", "100.0 %", "98.4 %", "SFT 12.3 / DPO 9.9", "25.060"):
        assert want in text, want
    assert R.HELDOUT_LOSS in text  # the plot's held-out points carry the same name
    console, buf = _console()
    console.print(R.metrics_table({}))  # missing values show as '-'
    assert "preference accuracy" in buf.getvalue()


def test_run_stage_logs_and_fails_loudly(tmp_path):
    console, _ = _console()
    ok = [sys.executable, "-c", "import sys\nfor i in range(3): print('step', i, end='\\r', flush=True)\nprint('done')"]
    secs = R.run_stage("sft", ok, tmp_path / "ok.log", console=console)
    assert secs > 0
    log = (tmp_path / "ok.log").read_text()
    assert log.startswith("$ ") and "step 2" in log and "done" in log

    bad = [sys.executable, "-c", "import sys\nprint('loading')\nprint('ConfigError: bad key', file=sys.stderr)\nsys.exit(2)"]
    with pytest.raises(RuntimeFailure) as e:
        R.run_stage("dpo", bad, tmp_path / "bad.log", console=console)
    msg = str(e.value)
    assert "exit code 2" in msg and "ConfigError: bad key" in msg and str(tmp_path / "bad.log") in msg


# ---------------------------------------------------------------------------------------------
# orchestration with a stand-in CLI (the real `alignkit sft/dpo` is exercised by the e2e tests)

FAKE_CLI = r'''#!{python}
"""Stands in for `python -m alignkit sft|dpo`: checks the contract, copies a model, writes a log."""
import json, os, shutil, sys
args = sys.argv[1:]
assert args[:2] == ["-m", "alignkit"], args
stage = args[2]
rest = [a for a in args[3:] if a != "--overwrite"]
opts = dict(zip(rest[0::2], rest[1::2]))
assert opts["--recipe"] == "tiny" and opts["--profile"] == "cpu", opts
with open(os.environ["FAKE_CALLS"], "a") as f:
    f.write(json.dumps(args) + "\n")
if os.environ.get("FAKE_FAIL") == stage:
    print("Traceback: something broke in " + stage, file=sys.stderr)
    sys.exit(1)
src = os.environ["FAKE_MODEL"] if stage == "sft" else opts["--model_name_or_path"]
out = opts["--output_dir"]
shutil.copytree(src, out, dirs_exist_ok=True)
hist = [{{"step": s, "loss": 3.0 / s}} for s in range(1, 6)]
json.dump({{"log_history": hist}}, open(os.path.join(out, "trainer_state.json"), "w"))
os.makedirs(os.path.join(out, "alignkit"), exist_ok=True)
json.dump({{"state": "completed", "time": "2026-01-02T03:04:05"}}, open(os.path.join(out, "alignkit", "status.json"), "w"))
print(stage, "finished")
'''


@pytest.fixture
def fake_python(tmp_path):
    p = tmp_path / "fake-python"
    p.write_text(FAKE_CLI.format(python=sys.executable))
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return str(p)


def test_run_demo_orchestrates_and_measures(tmp_path, fake_python, tiny_assets, tiny_env, load_jsonl):
    from alignkit.eval.prefs import eval_loss, preference_metrics

    env = dict(tiny_env, FAKE_CALLS=str(tmp_path / "calls.jsonl"), FAKE_MODEL=str(tiny_assets.model_dir))
    console, buf = _console()
    out = tmp_path / "demo"
    summary = R.run_demo(out, python=fake_python, console=console, env=env, sft_args=["--max_steps", "3"])

    calls = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert [c[2] for c in calls] == ["sft", "dpo"]
    assert calls[0][calls[0].index("--output_dir") + 1] == str(out / "sft")
    assert calls[0][-2:] == ["--max_steps", "3"]
    assert calls[1][calls[1].index("--model_name_or_path") + 1] == str(out / "sft")
    assert calls[1][calls[1].index("--output_dir") + 1] == str(out / "dpo")

    written = json.loads((out / "summary.json").read_text())
    assert written == json.loads(json.dumps(summary))
    for key in ("pref_accuracy_before_dpo", "pref_accuracy_after_dpo", "sft_eval_loss_before",
                "sft_eval_loss_after", "sft_seconds", "dpo_seconds"):  # fmt: skip
        assert isinstance(summary[key], float), key
    # the stand-in trains nothing: the numbers must be those of the untrained model, measured for real
    prefs = load_jsonl(tiny_assets.prefs_test)
    want = preference_metrics(tiny_assets.model_dir, prefs)
    assert summary["pref_accuracy_before_dpo"] == summary["pref_accuracy_after_dpo"] == want["accuracy_logp"]
    assert summary["reward_accuracy_after_dpo"] == 0.5 and summary["reward_margin_after_dpo"] == 0.0
    base_loss = eval_loss(tiny_assets.model_dir, load_jsonl(tiny_assets.sft_test))["loss"]
    assert summary["sft_eval_loss_before"] == pytest.approx(base_loss) == summary["sft_eval_loss_after"]
    assert (out / "loss_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "sft finished" in (out / "sft.log").read_text()
    assert summary["assets"] == str(tiny_assets.root)  # built where the children look
    assert "preference accuracy" in buf.getvalue()


def test_run_demo_reports_a_failed_stage(tmp_path, fake_python, tiny_assets, tiny_env):
    env = dict(tiny_env, FAKE_CALLS=str(tmp_path / "calls.jsonl"), FAKE_MODEL=str(tiny_assets.model_dir),
               FAKE_FAIL="dpo")  # fmt: skip
    console, _ = _console()
    with pytest.raises(RuntimeFailure) as e:
        R.run_demo(tmp_path / "demo", python=fake_python, console=console, env=env)
    assert "alignkit dpo (exit code 1)" in str(e.value) and "something broke in dpo" in str(e.value)
    assert not (tmp_path / "demo" / "summary.json").exists()
    assert os.path.isdir(tmp_path / "demo" / "sft")


def _calls(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_run_demo_again_keeps_completed_stages_and_their_timings(tmp_path, fake_python, tiny_assets, tiny_env):
    env = dict(tiny_env, FAKE_CALLS=str(tmp_path / "calls.jsonl"), FAKE_MODEL=str(tiny_assets.model_dir))
    out = tmp_path / "demo"
    console, _ = _console()
    first = R.run_demo(out, python=fake_python, console=console, env=env)
    assert [c[2] for c in _calls(tmp_path)] == ["sft", "dpo"]
    assert first["sft_skipped"] is False and first["dpo_skipped"] is False

    # again: nothing trains, the screen says so with the first run's time, summary.json keeps the real timings
    console, buf = _console()
    again = R.run_demo(out, python=fake_python, console=console, env=env)
    text = buf.getvalue()
    assert len(_calls(tmp_path)) == 2, "a completed stage must not be started again"
    for stage in ("SFT", "DPO"):
        secs = first[f"{stage.lower()}_seconds"]
        assert f"{stage} already complete (trained in {secs:.0f} s on {first[stage.lower() + '_trained_at']}), skipped" \
            in text, text
    assert "done in" not in text
    written = json.loads((out / "summary.json").read_text())
    assert written["sft_seconds"] == first["sft_seconds"] and written["dpo_seconds"] == first["dpo_seconds"]
    assert again["sft_skipped"] is True and again["dpo_skipped"] is True
    assert "alignkit demo --overwrite" in text

    # --overwrite: both stages train again, from scratch
    console, buf = _console()
    R.run_demo(out, python=fake_python, console=console, env=env, overwrite=True)
    calls = _calls(tmp_path)[2:]
    assert [c[2] for c in calls] == ["sft", "dpo"] and all("--overwrite" in c for c in calls)
    assert "already complete" not in buf.getvalue()


def test_run_demo_retrains_dpo_when_sft_trained_again(tmp_path, fake_python, tiny_assets, tiny_env):
    env = dict(tiny_env, FAKE_CALLS=str(tmp_path / "calls.jsonl"), FAKE_MODEL=str(tiny_assets.model_dir))
    out = tmp_path / "demo"
    console, _ = _console()
    R.run_demo(out, python=fake_python, console=console, env=env)
    (out / "sft" / "alignkit" / "status.json").write_text(json.dumps({"state": "failed"}))  # SFT must train again
    console, buf = _console()
    R.run_demo(out, python=fake_python, console=console, env=env)
    calls = _calls(tmp_path)[2:]
    assert [c[2] for c in calls] == ["sft", "dpo"]
    assert "--overwrite" not in calls[0] and "--overwrite" in calls[1]  # the old DPO started from the old SFT


def test_run_demo_ends_with_next_steps(tmp_path, fake_python, tiny_assets, tiny_env):
    env = dict(tiny_env, FAKE_CALLS=str(tmp_path / "calls.jsonl"), FAKE_MODEL=str(tiny_assets.model_dir))
    out = tmp_path / "demo"
    console, buf = _console()
    R.run_demo(out, python=fake_python, console=console, env=env)
    tail = buf.getvalue().split("next steps:")[-1]
    assert f"alignkit report {out}" in tail
    assert "alignkit sft --recipe zephyr-7b-beta --profile full --dry-run" in tail
    assert str(out / "sft.log") in tail and str(out / "dpo.log") in tail


NOISY_CHILD = r"""
import sys, time, warnings
print("/x/transformers/foo.py:12: FutureWarning: `old_arg` is deprecated", file=sys.stderr, flush=True)
print("  warnings.warn(", file=sys.stderr, flush=True)
print("Tokenizing train dataset:  50%|#####     | 160/320 [00:00<00:00, 2501.14 examples/s]", flush=True)
for step in range(1, 5):
    time.sleep(0.3)
    print(f"\r {step * 25}%|##        | {step}/4 [00:01<00:02,  1.91it/s]", end="", flush=True)
    if step == 2:
        print("{'loss': '1.5', 'grad_norm': '0.4', 'epoch': '0.5'}", flush=True)
print("\ndone", flush=True)
"""


def test_run_stage_off_a_terminal_prints_periodic_progress_and_no_library_noise(tmp_path):
    console, buf = _console()  # not a terminal, like CI or `make demo > log`
    R.run_stage("sft", [sys.executable, "-c", NOISY_CHILD], tmp_path / "sft.log", console=console, interval=0.25)
    text = buf.getvalue()
    lines = [line for line in text.splitlines() if line.startswith("sft: ")]
    assert len(lines) >= 3, text  # started, then a line at least every interval
    assert any(line.startswith("sft: step ") and "/4, loss 1.5" in line for line in lines), text
    assert "FutureWarning" not in text and "warnings.warn(" not in text  # those stay in the log
    log = (tmp_path / "sft.log").read_text()
    assert "FutureWarning" in log and "warnings.warn(" in log and "done" in log


def test_stage_progress_reads_the_trainer_bar_and_its_loss():
    from alignkit.demo.progress import StageProgress

    now = [0.0]
    p = StageProgress("dpo", interval=10, clock=lambda: now[0])
    assert p.status() == "starting"
    p.feed("Tokenizing train dataset:  82%|########  | 261/320 [00:00<00:00]\r")
    assert p.status() == "tokenizing train dataset"
    p.feed(" 40%|####      | 40/100 [00:33<00:40,  1.45it/s]{'loss': '0.6416', 'grad_norm': '0.45'}\n")
    p.feed("\r 50%|#####     | 1/2 [00:00<00:00]\r100%|##########| 2/2 [00:00<00:00]")  # the eval loop's bar
    p.feed("{'eval_loss': '0.79', 'eval_runtime': '0.2'}\n")
    assert p.status() == "step 40/100, loss 0.642, eval loss 0.79"
    assert p.due() is None
    now[0] = 11
    assert p.due() == "dpo: step 40/100, loss 0.642, eval loss 0.79 (11 s)"
    assert p.due() is None


def test_loss_plot_says_what_each_loss_is_and_its_legend_hides_nothing(tmp_path):
    sft, dpo = tmp_path / "sft", tmp_path / "dpo"
    _state(sft, [{"step": s, "loss": 5.0 / s} for s in range(1, 11)] + [{"step": 10, "eval_loss": 0.8}])
    _state(dpo, [{"step": s, "loss": 2.1 - 0.05 * s, "rewards/accuracies": min(1.0, 0.5 + 0.1 * s)}
                 for s in range(1, 9)] + [{"step": 8, "eval_loss": 1.6}])  # fmt: skip
    (dpo / "alignkit").mkdir()
    (dpo / "alignkit" / "run.yaml").write_text("config:\n  train:\n    loss_type: [sigmoid, sft]\n"
                                                "    loss_weights: [1.0, 1.0]\n")
    fig = R.loss_figure({"sft": sft, "dpo": dpo}, heldout={"sft": [(0, 6.3), (10, 1.4)]})
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    main_axes = [ax for ax in fig.axes if ax.get_legend() is not None]
    assert len(main_axes) == 2
    labels = {}
    for ax in main_axes:
        legend = ax.get_legend()
        labels[ax.get_title()] = [t.get_text() for t in legend.get_texts()]
        box = legend.get_window_extent(renderer)
        for other in fig.axes:  # the legend lies outside every plotting area (the reward axis included)
            assert not box.overlaps(other.get_window_extent(renderer)), (ax.get_title(), labels)
    assert labels["SFT"] == ["train loss (all tokens)", "eval loss (all tokens)", R.HELDOUT_LOSS]
    assert labels["DPO"] == ["train loss (DPO + SFT)", "eval loss (DPO + SFT)", "reward accuracy (train)"]


def test_library_warnings_of_the_demo_itself_go_to_its_log(tmp_path, capsys):
    import logging
    import warnings

    with R.quiet_libraries(tmp_path / "demo.log"):
        warnings.warn("`old_arg` is deprecated", FutureWarning)
        logging.getLogger("transformers.modeling_utils").warning("some weights were not used")
    captured = capsys.readouterr()
    assert "deprecated" not in captured.err + captured.out and "weights" not in captured.err + captured.out
    log = (tmp_path / "demo.log").read_text()
    assert "FutureWarning: `old_arg` is deprecated" in log and "some weights were not used" in log
