"""`alignkit aif ...` through typer: the tiny local model, a fake judge on 127.0.0.1, exit codes and
messages through the real entry point (alignkit.cli.main)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from alignkit.errors import AlignkitError
from tests.aif_support import PROMPTS, hashed_rating, root, write_prompts
from tests.eval_support import CANARY, FakeJudge, assert_no_canary, user_text
from tests.helpers import run_cli

REPO = Path(__file__).resolve().parents[2]


def invoke(args: list[str]):
    """Run like `alignkit ...`: an AlignkitError becomes its exit code (alignkit.cli.main does the same)."""
    res = CliRunner().invoke(root(), [str(a) for a in args])
    code = res.exit_code
    if isinstance(res.exception, AlignkitError):
        code = res.exception.exit_code
    elif res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return code, res.stdout, res.stderr, res.exception


def main(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """The real entry point, `python -m alignkit` (error rendering and exit codes of alignkit.cli.main)."""
    return run_cli(*args, env=env, cwd=REPO, timeout=300)


def test_help_is_light_and_lists_the_commands():
    code = (
        "import sys, time; t=time.time(); import alignkit.commands.aif; "
        "heavy=[m for m in ('torch','transformers','datasets','trl','peft','pyarrow','pydantic','rich') if m in sys.modules]; "
        "print(heavy, time.time()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=str(REPO)).stdout
    heavy, secs = out.rsplit("]", 1)
    assert heavy.strip() == "[" and float(secs) < 1.0
    code_, stdout, _, _ = invoke(["aif", "--help"])
    assert code_ == 0
    for cmd in ("generate", "judge", "binarize", "distill"):
        assert cmd in stdout
    code_, stdout, _, _ = invoke(["aif", "generate", "--help"])
    assert code_ == 0 and "--models-file" in stdout and "URL#MODEL" in " ".join(stdout.split())


def test_generate_judge_binarize_through_the_cli(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("AIF_JUDGE_KEY", CANARY)
    prompts = write_prompts(tmp_path / "prompts.jsonl", PROMPTS)
    work, out = tmp_path / "work", tmp_path / "prefs"
    gen = ["aif", "generate", "--prompts", prompts, "--model", f"cold={tiny_model_dir}", "--model", f"hot={tiny_model_dir}",
           "--n", "2", "--max-new-tokens", "6", "--temperature", "1.0", "--output", work]  # fmt: skip
    code, stdout, stderr, _ = invoke(gen)
    assert code == 0, stderr
    assert "cold" in stdout and "hot" in stdout and "completions/s" in stderr
    assert len((work / "completions.jsonl").read_text().splitlines()) == 6 * 2 * 2
    code, stdout, _, _ = invoke(gen)  # everything is there: nothing to do
    assert code == 0 and len((work / "completions.jsonl").read_text().splitlines()) == 24

    with FakeJudge(hashed_rating) as j:
        judge = ["aif", "judge", "--input", work, "--judge-model", "fake-gpt", "--judge-base-url", j.base_url,
                 "--judge-api-key-env", "AIF_JUDGE_KEY", "--aspects", "helpfulness,honesty"]  # fmt: skip
        code, stdout, stderr, _ = invoke(judge)
        assert code == 0, stderr
        assert j.calls == 24 * 2 and "48 judge requests" in " ".join(stdout.split())
        code, stdout, stderr, _ = invoke(judge)
        assert code == 0 and j.calls == 48 and "0 judge requests" in " ".join(stdout.split())
        assert all(h["Authorization"] == f"Bearer {CANARY}" for h in j.headers)
    code, stdout, stderr, _ = invoke(["aif", "binarize", "--input", work, "--output", out, "--test-size", "2", "--seed", "1"])
    assert code == 0, stderr
    manifest = json.loads((out / "manifest.json").read_text())
    c = manifest["counts"]
    assert c["pairs"] + sum(c["skipped"].values()) == 6 and c["pairs"] >= 3
    flat = " ".join(stdout.split())
    assert f"{c['pairs']} pairs from 6 prompts" in flat and "test_prefs 2" in flat
    assert "completions by model" in flat and "mean score" in flat
    assert manifest["judge"]["aspects_used"] == ["helpfulness", "honesty"] and manifest["judge"]["api_key_env"] == "AIF_JUDGE_KEY"
    assert set(manifest["models"]) == {"cold", "hot"} and manifest["models"]["hot"]["temperature"] == 1.0
    assert_no_canary(stdout, stderr, root=tmp_path)


def test_distill_and_models_file_through_the_cli(tmp_path, tiny_model_dir):
    prompts = write_prompts(tmp_path / "prompts.jsonl", PROMPTS[:4])
    with FakeJudge(lambda b: f"teacher says: {user_text(b)}") as srv:
        code, stdout, stderr, _ = invoke(["aif", "distill", "--prompts", prompts, "--teacher", f"{srv.base_url}#gpt-x",
                                          "--output", tmp_path / "dsft", "--test-size", "0"])  # fmt: skip
        assert code == 0, stderr
        assert srv.calls == 4 and (tmp_path / "dsft.work" / "completions.jsonl").is_file()
    assert "4 SFT rows" in " ".join(stdout.split())
    import datasets

    assert len(datasets.load_from_disk(str(tmp_path / "dsft"))["train_sft"]) == 4
    models = tmp_path / "models.yaml"
    models.write_text(f"models:\n  - {{id: t1, path: {tiny_model_dir}, n: 1, max_new_tokens: 4, temperature: 0}}\n")
    code, _, stderr, _ = invoke(["aif", "generate", "--prompts", prompts, "--models-file", models, "--output", tmp_path / "w"])
    assert code == 0, stderr
    recs = [json.loads(x) for x in (tmp_path / "w" / "completions.jsonl").read_text().splitlines()]
    assert len(recs) == 4 and {r["model"] for r in recs} == {"t1"} and all(r["completion_tokens"] <= 4 for r in recs)


def test_errors_exit_2_with_the_place_and_the_fix(tmp_path, tiny_env):
    prompts = write_prompts(tmp_path / "prompts.jsonl", PROMPTS[:2])
    env = dict(tiny_env, AIF_JUDGE_KEY=CANARY)
    p = main(["aif", "generate", "--prompts", prompts, "--model", tmp_path / "no-model", "--output", tmp_path / "w"], env)
    err = " ".join(p.stderr.split())
    assert p.returncode == 2 and "not a local model directory" in err and "URL#MODEL" in err and "Traceback" not in p.stderr
    p = main(["aif", "judge", "--input", tmp_path / "w", "--judge-model", "j", "--judge-base-url", "http://127.0.0.1:9/v1",
              "--judge-api-key-env", "AIF_JUDGE_KEY"], env)  # fmt: skip
    err = " ".join(p.stderr.split())
    assert p.returncode == 2 and "no completions.jsonl" in err and "aif generate" in err
    p = main(["aif", "binarize", "--input", tmp_path / "w", "--output", tmp_path / "o", "--test-size", "a few"], env)
    assert p.returncode == 2 and "neither a row count nor a fraction" in " ".join(p.stderr.split())
    # an unreachable judge: a runtime failure (exit 1) naming the endpoint, and the key nowhere
    work = tmp_path / "w2"
    work.mkdir()
    (work / "completions.jsonl").write_text(json.dumps({"prompt_id": "p", "model": "m", "sample": 0, "prompt": "hi", "completion": "yo"}) + "\n")
    p = main(["aif", "judge", "--input", work, "--judge-model", "j", "--judge-base-url", "http://127.0.0.1:9/v1",
              "--judge-api-key-env", "AIF_JUDGE_KEY", "--max-retries", "0"], env)  # fmt: skip
    err = " ".join(p.stderr.split())
    assert p.returncode == 1 and "127.0.0.1:9" in err and "connection failed" in err
    assert_no_canary(p.stdout, p.stderr, root=tmp_path)
