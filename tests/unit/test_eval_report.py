"""``make_report``: curves from trainer_state.json and TensorBoard, eval results side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignkit.errors import DataError, UsageError
from alignkit.eval import report

PNG = b"\x89PNG\r\n\x1a\n"


def sft_run(d: Path) -> Path:
    d.mkdir(parents=True)
    hist = [{"step": s, "epoch": s / 10, "loss": 2.0 - 0.1 * s, "learning_rate": 1e-4, "grad_norm": 1.0} for s in (1, 2, 3, 4)]
    hist.append({"step": 4, "eval_loss": 1.9, "eval_runtime": 0.1})
    hist.append({"step": 4, "train_loss": 1.7, "train_runtime": 3.0})
    # an older checkpoint's state must not win over the run's own
    (d / "checkpoint-2").mkdir()
    (d / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"log_history": hist[:2]}))
    (d / "trainer_state.json").write_text(json.dumps({"log_history": hist, "global_step": 4}))
    ev = d / "eval" / "mt-bench"
    ev.mkdir(parents=True)
    (ev / "results.json").write_text(json.dumps({
        "benchmark": "mt-bench", "overall": 6.5, "turn_1": 7.0, "turn_2": 6.0,
        "categories": {"writing": {"overall": 8.0, "turn_1": 8.0, "turn_2": 8.0, "n": 2},
                       "math": {"overall": 5.0, "turn_1": 6.0, "turn_2": 4.0, "n": 2}}}))  # fmt: skip
    return d


def dpo_run(d: Path) -> Path:
    """Only TensorBoard logs and a checkpoint's trainer state."""
    from torch.utils.tensorboard import SummaryWriter

    d.mkdir(parents=True)
    w = SummaryWriter(log_dir=str(d / "runs" / "x"))
    for s in (1, 2, 3):
        w.add_scalar("train/loss", 0.69 - 0.1 * s, s)
        w.add_scalar("train/rewards/margins", 0.2 * s, s)
        w.add_scalar("train/rewards/accuracies", 0.5 + 0.1 * s, s)
    w.add_scalar("eval/rewards/margins", 0.55, 3)
    w.close()
    (d / "checkpoint-3").mkdir()
    (d / "checkpoint-3" / "trainer_state.json").write_text(
        json.dumps({"log_history": [{"step": 3, "loss": 0.4, "rewards/margins": 0.61}]})
    )
    (d / "eval" / "alpaca-eval").mkdir(parents=True)
    (d / "eval" / "alpaca-eval" / "results.json").write_text(json.dumps({
        "benchmark": "alpaca-eval", "win_rate": 12.5, "standard_error": 1.25, "discrete_win_rate": 12.0,
        "length_controlled_win_rate": None, "length_controlled_note": "needs all 805"}))  # fmt: skip
    (d / "eval" / "prefs").mkdir(parents=True)
    (d / "eval" / "prefs" / "results.json").write_text(
        json.dumps({"benchmark": "prefs", "accuracy_reward": 0.9, "mean_reward_margin": 0.3})
    )
    return d


def test_curves_from_trainer_state_and_tensorboard(tmp_path):
    a = report.collect_run(sft_run(tmp_path / "sft"))
    assert a.curves["loss"] == [(1, 1.9), (2, 1.8), (3, pytest.approx(1.7)), (4, pytest.approx(1.6))]
    assert a.curves["eval_loss"] == [(4, 1.9)]
    assert "train_loss" not in a.curves and "eval_runtime" not in a.curves
    b = report.collect_run(dpo_run(tmp_path / "dpo"))
    assert b.curves["loss"] == [(3, 0.4)]  # trainer state first
    assert b.curves["rewards/margins"] == [(3, 0.61)]
    assert [s for s, _ in b.curves["rewards/accuracies"]] == [1, 2, 3]  # TensorBoard fills the rest
    assert b.curves["eval_rewards/margins"] == [(3, pytest.approx(0.55))]
    assert "tensorboard" in b.sources


def test_report_side_by_side(tmp_path):
    runs = [sft_run(tmp_path / "a" / "run"), dpo_run(tmp_path / "b" / "run")]
    res = report.make_report(runs, tmp_path / "rep")
    assert res["runs"] == ["a/run", "b/run"]  # same names are told apart by their parent
    md = Path(res["report"]).read_text()
    assert "| MT-Bench overall | 6.5 | – |" in md
    assert "| AlpacaEval win rate | – | 12.5 |" in md
    assert "| preference accuracy (implicit reward) | – | 0.9 |" in md
    assert "| MT-Bench math | 5 | – |" in md
    assert "| final train loss | 1.6 | 0.4 |" in md
    names = {Path(p).name for p in res["plots"]}
    assert {"loss.png", "rewards_margins.png", "eval.png", "mt_bench_categories.png"} <= names
    for p in res["plots"]:
        assert Path(p).read_bytes().startswith(PNG)


def test_empty_run_dir_is_a_data_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as e:
        report.make_report([tmp_path / "empty"], tmp_path / "rep")
    assert "trainer_state.json" in str(e.value)


def _record(d: Path) -> Path:
    (d / "alignkit").mkdir(parents=True, exist_ok=True)
    (d / "alignkit" / "run.yaml").write_text("task: x\n")
    return d


def test_a_directory_of_runs_is_its_runs_one_column_each(tmp_path):
    demo = tmp_path / "demo"
    sft = _record(sft_run(demo / "sft"))
    dpo = dpo_run(demo / "dpo")  # a run without alignkit's record: its Trainer state says it is one
    (demo / "sft.log").write_text("log\n")
    res = report.make_report([demo])
    assert res["runs"] == ["sft", "dpo"] and res["run_dirs"] == [str(sft), str(dpo)]
    assert res["expanded"] == {str(demo): ["sft", "dpo"]}
    md = Path(res["report"]).read_text()
    assert "| metric | sft | dpo |" in md
    assert "| steps logged | 4 | 3 |" in md  # never SFT's steps beside DPO's rewards in one column
    assert "| final rewards/margins | – | 0.61 |" in md
    assert Path(res["report"]).parent == sft / "report"  # under the first run, not the current directory


def test_report_goes_under_the_first_run_unless_told(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = sft_run(tmp_path / "a")
    res = report.make_report([run])
    assert Path(res["report"]) == run / "report" / "report.md"
    assert not (tmp_path / "report").exists()
    res = report.make_report([run], tmp_path / "elsewhere")
    assert Path(res["report"]) == tmp_path / "elsewhere" / "report.md"


def test_a_directory_of_runs_with_results_of_its_own_is_refused_with_the_list(tmp_path):
    demo = tmp_path / "demo"
    sft_run(demo / "sft")
    dpo_run(demo / "dpo")
    (demo / "results.json").write_text(json.dumps({"benchmark": "prefs", "accuracy_reward": 0.5}))
    with pytest.raises(UsageError) as e:
        report.make_report([demo])
    msg = str(e.value)
    assert "holds the runs sft, dpo" in msg or "holds the runs dpo, sft" in msg
    assert str(demo / "sft") in msg and str(demo / "dpo") in msg


def test_chosen_and_rejected_are_drawn_differently(tmp_path):
    one = report.RunData(path=tmp_path, label="dpo", curves={
        "rewards/chosen": [(1, 0.1), (2, 0.2)], "rewards/rejected": [(1, -0.1), (2, -0.2)],
        "eval_rewards/chosen": [(2, 0.15)], "eval_rewards/rejected": [(2, -0.3)]})
    metrics = report.CURVE_GROUPS["rewards_chosen_rejected"]
    styles = report.curve_styles([one], metrics)
    assert len(styles) == 4 and len(set(styles.values())) == 4
    assert styles[("dpo", "rewards/chosen")][0] != styles[("dpo", "rewards/rejected")][0]  # colours
    two = report.RunData(path=tmp_path, label="dpo2", curves=dict(one.curves))
    styles = report.curve_styles([one, two], metrics)
    assert len(set(styles.values())) == 8  # every curve its own look
    for label in ("dpo", "dpo2"):  # within a run: one colour, a line style per metric
        assert styles[(label, "rewards/chosen")][1] != styles[(label, "rewards/rejected")][1]
