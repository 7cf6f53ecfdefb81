"""`alignkit eval ...` and `alignkit report` through typer, on the tiny local model and a fake judge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from alignkit.errors import AlignkitError, RuntimeFailure, UsageError
from tests.eval_support import (
    ALPACA_TEMPLATE,
    CANARY,
    QUESTIONS,
    FakeJudge,
    assert_no_canary,
    user_text,
    write_mtbench_files,
)
from tests.helpers import REPO, run_cli


def root() -> typer.Typer:
    from alignkit import cli

    return cli.app


def invoke(args: list[str]):
    """Run like `alignkit ...`: an AlignkitError becomes its exit code (alignkit.cli.main does the same)."""
    res = CliRunner().invoke(root(), args)
    code = res.exit_code
    if isinstance(res.exception, AlignkitError):
        code = res.exception.exit_code
    elif res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return code, res.stdout, res.stderr, res.exception


def mt_args(files, model, out, judge_url, *extra):
    return ["eval", "mt-bench", "--model", model, "--judge-model", "judge-x", "--judge-base-url", judge_url,
            "--questions", files["questions"], "--references", files["references"],
            "--judge-prompts", files["judge_prompts"], "--output", str(out), "--max-new-tokens", "6", *extra]  # fmt: skip


def test_help_is_fast_and_light():
    code = (
        "import sys, time; t=time.time(); import alignkit.commands.eval; "
        "heavy=[m for m in ('torch','transformers','peft','trl','matplotlib','tensorboard') if m in sys.modules]; "
        "print(heavy, time.time()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy, secs = out.rsplit("]", 1)
    assert heavy.strip() == "[" and float(secs) < 1.0
    code_, stdout, _, _ = invoke(["eval", "--help"])
    assert code_ == 0
    for cmd in ("mt-bench", "alpaca-eval", "prefs", "loss", "lm-eval"):
        assert cmd in stdout


def test_real_entry_point_exit_code_and_message(tmp_path, tiny_env):
    env = dict(tiny_env, MY_JUDGE_KEY=CANARY)
    env.pop("OPENAI_API_KEY", None)
    files = write_mtbench_files(tmp_path / "data")
    p = run_cli(*mt_args(files, str(tmp_path / "no-model"), tmp_path / "o", "http://127.0.0.1:9/v1",
                         "--judge-api-key-env", "MY_JUDGE_KEY"), env=env, cwd=REPO)
    err = " ".join(p.stderr.split())  # rich wraps long lines
    assert p.returncode == 2 and "--model:" in err and "not a local directory" in err
    assert "Traceback" not in p.stderr
    assert_no_canary(p.stdout, p.stderr)


def test_mt_bench_end_to_end_with_secret_judge(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", CANARY)
    files = write_mtbench_files(tmp_path / "data")
    out = tmp_path / "out"
    with FakeJudge(lambda body: "Rating: [[6]]") as fj:
        code, stdout, stderr, exc = invoke(mt_args(files, tiny_model_dir, out, fj.base_url, "--judge-api-key-env", "MY_JUDGE_KEY"))
        assert code == 0, (stdout, stderr, exc)
        assert fj.calls == 9 and all(h["Authorization"] == f"Bearer {CANARY}" for h in fj.headers)
        # run again: everything is resumed, nothing paid twice
        code, stdout2, stderr2, _ = invoke(mt_args(files, tiny_model_dir, out, fj.base_url, "--judge-api-key-env", "MY_JUDGE_KEY"))
        assert code == 0 and fj.calls == 9
    res = json.loads((out / "results.json").read_text())
    assert (res["turn_1"], res["turn_2"], res["overall"]) == (6.0, 6.0, 6.0)
    assert res["model"] == Path(tiny_model_dir).name and res["judge_model"] == "judge-x"
    assert len((out / "answers.jsonl").read_text().splitlines()) == len(QUESTIONS)
    assert (out / "results.md").is_file() and (out / "categories.png").read_bytes()[:4] == b"\x89PNG"
    assert "MT-Bench" in stdout and "6.00" in stdout
    assert_no_canary(stdout, stderr, stdout2, stderr2, root=tmp_path)


def test_missing_key_variable_is_a_usage_error(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.delenv("UNSET_JUDGE_KEY", raising=False)
    files = write_mtbench_files(tmp_path / "data")
    code, _, _, exc = invoke(mt_args(files, tiny_model_dir, tmp_path / "o", "http://127.0.0.1:9/v1",
                                     "--judge-api-key-env", "UNSET_JUDGE_KEY"))  # fmt: skip
    assert code == 2 and isinstance(exc, UsageError) and "UNSET_JUDGE_KEY is not set" in str(exc)
    assert not (tmp_path / "o").exists()  # refused before any work


def test_openai_key_goes_only_to_openai(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    files = write_mtbench_files(tmp_path / "data")
    with FakeJudge() as fj:
        code, *_ = invoke(mt_args(files, tiny_model_dir, tmp_path / "o", fj.base_url, "--limit", "1"))
        assert code == 0 and fj.calls == 2
        assert not any("Authorization" in h for h in fj.headers)  # another host never gets OPENAI_API_KEY
    monkeypatch.delenv("OPENAI_API_KEY")
    code, _, _, exc = invoke(mt_args(files, tiny_model_dir, tmp_path / "o2", "https://api.openai.com/v1"))
    assert code == 2 and "OPENAI_API_KEY is not set" in str(exc) and not (tmp_path / "o2").exists()


def test_failing_judge_is_exit_1_naming_endpoint_and_resumable(tmp_path, tiny_model_dir):
    files = write_mtbench_files(tmp_path / "data")
    out = tmp_path / "out"
    with FakeJudge() as fj:
        fj.always = "500"
        code, _, _, exc = invoke(mt_args(files, tiny_model_dir, out, fj.base_url, "--max-retries", "0"))
        assert code == 1 and isinstance(exc, RuntimeFailure)
        assert f"127.0.0.1:{fj.port}/v1/chat/completions" in str(exc) and "re-running" in str(exc)
    assert len((out / "answers.jsonl").read_text().splitlines()) == len(QUESTIONS)  # answers were kept
    with FakeJudge() as fj2:
        code, *_ = invoke(mt_args(files, tiny_model_dir, out, fj2.base_url))
        assert code == 0 and fj2.calls == 9


def test_output_dir_of_another_model_is_refused(tmp_path, tiny_model_dir):
    files = write_mtbench_files(tmp_path / "data")
    out = tmp_path / "out"
    out.mkdir()
    (out / "answers.jsonl").write_text(json.dumps({"question_id": 1, "model_id": "someone-else"}) + "\n")
    code, _, _, exc = invoke(mt_args(files, tiny_model_dir, out, "http://127.0.0.1:9/v1", "--answers-only"))
    assert code == 2 and "someone-else" in str(exc)


def _alpaca_files(tmp_path, n):
    """A reference of ``n`` instructions, the judge template, and the output dir."""
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps([{"instruction": f"Say word {i}.", "output": f"word {i}", "generator": "ref-model"}
                               for i in range(n)]))
    tpl = tmp_path / "judge.txt"
    tpl.write_text(ALPACA_TEMPLATE)
    return ref, tpl, tmp_path / "ae"


def _alpaca_args(model, ref, tpl, out, judge_url, parser, judge_model="judge-z"):
    return ["eval", "alpaca-eval", "--model", model, "--reference", str(ref), "--judge-prompt", str(tpl),
            "--judge-parser", parser, "--judge-model", judge_model, "--judge-base-url", judge_url, "--output", str(out),
            "--max-new-tokens", "6", "--temperature", "0"]  # fmt: skip


def test_alpaca_eval_end_to_end(tmp_path, tiny_model_dir):
    ref, tpl, out = _alpaca_files(tmp_path, 5)
    with FakeJudge(lambda body: "M") as fj:
        code, stdout, stderr, exc = invoke(_alpaca_args(tiny_model_dir, ref, tpl, out, fj.base_url, "token"))
    assert code == 0, (stdout, stderr, exc)
    res = json.loads((out / "results.json").read_text())
    assert res["n_total"] == 5 and res["reference_generator"] == "ref-model"
    assert "unavailable" in stdout and "win rate" in stdout
    assert json.loads((out / "model_outputs.json").read_text())[0]["generator"] == Path(tiny_model_dir).name


def test_mt_bench_judge_without_any_rating_fails_clearly(tmp_path, tiny_model_dir, tiny_env):
    """A judge that never writes "[[N]]": exit 1 with one message, not exit 0 with empty scores."""
    files = write_mtbench_files(tmp_path / "data")
    out = tmp_path / "out"
    with FakeJudge(lambda body: "This answer is quite good, I would give it 8 out of 10.") as fj:
        p = run_cli(*mt_args(files, tiny_model_dir, out, fj.base_url, "--limit", "2"), env=tiny_env,
                    env_extra={"COLUMNS": "1000"}, cwd=REPO)
        assert fj.calls == 4
    err = " ".join(p.stderr.split())  # rich wraps long lines
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    assert "MT-Bench could not be scored" in err and "'judge-x'" in err and f"127.0.0.1:{fj.port}/v1/chat/completions" in err
    assert "none of the 4 judgments has a parsable rating" in err
    assert str(out / "judgments.jsonl") in err
    assert "fix:" in err and "[[N]]" in err
    assert not (out / "results.json").exists()  # no empty score is written
    assert len((out / "judgments.jsonl").read_text().splitlines()) == 4  # the raw judgments are kept
    # partial failures still score: another judge rates turn 1 only (turn 2 unparsable) -> exit 0, 2 dropped
    with FakeJudge(lambda body: "Rating: [[4]]" if "[A2]" not in user_text(body) else "no rating") as fj2:
        code, stdout, stderr, exc = invoke(mt_args(files, tiny_model_dir, out, fj2.base_url, "--limit", "2",
                                                   "--judge-model", "judge-y"))  # fmt: skip
        assert code == 0, (stdout, stderr, exc)
        assert fj2.calls == 4
    res = json.loads((out / "results.json").read_text())
    assert res["judge_model"] == "judge-y" and res["turn_1"] == 4.0 and res["turn_2"] is None
    assert res["counts"]["dropped"] == 2 and "2 judgment(s) had no parsable rating" in " ".join(stdout.split())


def test_alpaca_eval_judge_without_any_preference_fails_clearly(tmp_path, tiny_model_dir):
    ref, tpl, out = _alpaca_files(tmp_path, 4)
    with FakeJudge(lambda body: "Output (a) is better.") as fj:
        code, stdout, stderr, exc = invoke(_alpaca_args(tiny_model_dir, ref, tpl, out, fj.base_url, "token"))
        assert fj.calls == 4
    assert code == 1 and isinstance(exc, RuntimeFailure), (stdout, stderr, exc)
    msg = str(exc)
    assert "AlpacaEval could not be scored" in msg and "'judge-z'" in msg and f"127.0.0.1:{fj.port}/v1/chat/completions" in msg
    assert "none of the 4 judgments" in msg and "'token' parser" in msg and "'Output (a) is better.'" in msg
    assert str(out / "annotations.jsonl") in msg and "fix:" in msg and "'m' or 'M'" in msg
    assert not (out / "results.json").exists()
    # the weighted parser on an endpoint without log-probabilities: says so, and points at --judge-parser token
    with FakeJudge(lambda body: "m") as fj:
        code, _, _, exc = invoke(_alpaca_args(tiny_model_dir, ref, tpl, out, fj.base_url, "weighted"))
        assert fj.calls == 4
    assert code == 1 and "no answer came with log-probabilities" in str(exc) and "--judge-parser token" in str(exc)
    # partial failures still score: "M" for two instructions, junk for the others -> exit 0, 2 dropped
    rated = ("INSTRUCTION: Say word 0.", "INSTRUCTION: Say word 1.")
    with FakeJudge(lambda body: "M" if any(r in user_text(body) for r in rated) else "?") as fj:
        code, stdout, stderr, exc = invoke(_alpaca_args(tiny_model_dir, ref, tpl, out, fj.base_url, "token", "judge-w"))
    assert code == 0, (stdout, stderr, exc)
    res = json.loads((out / "results.json").read_text())
    assert res["judge_model"] == "judge-w" and res["n_total"] == 2 and res["n_dropped"] == 2


def test_prefs_and_loss_commands(tmp_path, tiny_assets):
    model = str(tiny_assets.model_dir)
    out = tmp_path / "prefs"
    code, stdout, stderr, exc = invoke(["eval", "prefs", "--model", model, "--ref", model, "--data",
                                        str(tiny_assets.prefs_test), "--limit", "8", "--output", str(out)])  # fmt: skip
    assert code == 0, (stdout, stderr, exc)
    res = json.loads((out / "results.json").read_text())
    assert res["benchmark"] == "prefs" and res["n"] == 8
    assert res["mean_reward_margin"] == pytest.approx(0.0, abs=1e-6)  # the model against itself
    out = tmp_path / "loss"
    code, stdout, _, exc = invoke(["eval", "loss", "--model", model, "--data", str(tiny_assets.sft_test),
                                   "--limit", "8", "--output", str(out)])  # fmt: skip
    assert code == 0, exc
    res = json.loads((out / "results.json").read_text())
    assert res["benchmark"] == "loss" and res["perplexity"] > 1.0
    code, _, _, exc = invoke(["eval", "loss", "--model", model, "--data", str(tmp_path / "none.jsonl")])
    assert code == 2 and "--data" in str(exc)
    code, _, _, exc = invoke(["eval", "loss", "--model", model])
    assert code == 2 and "no data given" in str(exc)


def test_prefs_on_a_recipes_test_split(tmp_path, tiny_assets):
    model = str(tiny_assets.model_dir)
    out = tmp_path / "prefs"
    code, stdout, stderr, exc = invoke(["eval", "prefs", "--model", model, "--recipe", "tiny", "--limit", "4",
                                        "--output", str(out)])  # fmt: skip
    assert code == 0, (stdout, stderr, exc)
    res = json.loads((out / "results.json").read_text())
    assert res["n"] == 4 and res["data"] == "tiny (test split)" and "accuracy_logp" in res


def test_report_command(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": 1, "loss": 1.5}, {"step": 2, "loss": 1.0}]}))
    code, stdout, _, exc = invoke(["report", str(run), "--output", str(tmp_path / "rep")])
    assert code == 0, exc
    assert "| final train loss | 1 |" in stdout and (tmp_path / "rep" / "loss.png").is_file()
    code, _, _, exc = invoke(["report", str(tmp_path / "missing")])
    assert code == 2


def test_report_of_a_directory_of_runs(tmp_path, monkeypatch):
    """`alignkit report runs/demo`: the demo's SFT and DPO runs, one column each, written under the first run."""
    demo = tmp_path / "runs" / "demo"
    for name, hist in (("sft", [{"step": s, "loss": 2.0 / s} for s in (1, 2, 3, 4)]),
                       ("dpo", [{"step": s, "loss": 2.0 - 0.1 * s, "rewards/margins": 0.1 * s,
                                 "rewards/chosen": 0.05 * s, "rewards/rejected": -0.05 * s} for s in (1, 2)])):
        (demo / name / "alignkit").mkdir(parents=True)
        (demo / name / "alignkit" / "run.yaml").write_text(f"task: {name}\n")
        (demo / name / "trainer_state.json").write_text(json.dumps({"log_history": hist}))
        os.utime(demo / name / "alignkit" / "run.yaml", (1000 + len(name), 1000 + (name == "dpo")))
    monkeypatch.chdir(tmp_path)
    code, stdout, _, exc = invoke(["report", "runs/demo"])
    assert code == 0, exc
    assert "runs/demo holds 2 runs: sft, dpo (one column each)" in stdout
    assert "| metric | sft | dpo |" in stdout and "| steps logged | 4 | 2 |" in stdout
    assert "| final rewards/margins | – | 0.2 |" in stdout
    assert not (tmp_path / "report").exists()
    out = demo / "sft" / "report"
    assert (out / "report.md").is_file() and (out / "rewards_chosen_rejected.png").is_file()
    assert f"report: {Path('runs/demo/sft/report/report.md')}" in stdout
