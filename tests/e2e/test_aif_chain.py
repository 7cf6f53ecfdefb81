"""From a list of prompts to a DPO-trained model, as a user runs it: `alignkit aif generate → judge →
binarize` (the tiny model as completer, a judge on 127.0.0.1), then `alignkit dpo --recipe tiny
--profile cpu` with the binarized directory as the data mixture."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.aif_support import PROMPTS, hashed_rating, write_prompts
from tests.eval_support import CANARY, FakeJudge, assert_no_canary
from tests.helpers import run_cli

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def run(args, env, *, timeout=600) -> subprocess.CompletedProcess:
    proc = run_cli(*args, env=env, timeout=timeout, cwd=REPO)
    if proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-8000:]}")
    return proc


def test_prompts_to_preferences_to_dpo(tmp_path, tiny_env, tiny_model_dir):
    env = dict(tiny_env, AIF_JUDGE_KEY=CANARY)
    prompts = write_prompts(tmp_path / "prompts.jsonl", PROMPTS)
    work, prefs, dpo = tmp_path / "work", tmp_path / "prefs", tmp_path / "dpo"
    run(["aif", "generate", "--prompts", prompts, "--model", f"greedy={tiny_model_dir}", "--model", f"hot={tiny_model_dir}",
         "--models-file", _models_file(tmp_path, tiny_model_dir), "--n", "2", "--max-new-tokens", "8", "--output", work], env)  # fmt: skip
    with FakeJudge(hashed_rating) as judge:
        run(["aif", "judge", "--input", work, "--judge-model", "fake-gpt-4", "--judge-base-url", judge.base_url,
             "--judge-api-key-env", "AIF_JUDGE_KEY"], env)  # fmt: skip
        assert judge.calls == len(PROMPTS) * (2 + 2 + 1) * 4
    proc = run(["aif", "binarize", "--input", work, "--output", prefs, "--test-size", "1"], env)
    manifest = json.loads((prefs / "manifest.json").read_text())
    assert manifest["counts"]["pairs"] >= 3 and manifest["splits"]["test_prefs"]["rows"] == 1
    assert "pairs from 6 prompts" in " ".join(proc.stdout.split())

    mixture = f"[{{path: {prefs}, split: train_prefs}}, {{path: {prefs}, split: test_prefs}}]"
    run(["dpo", "--recipe", "tiny", "--profile", "cpu", f"--model_name_or_path={tiny_model_dir}", f"--output_dir={dpo}",
         f"--data.mixture={mixture}", "--max_steps=2", "--eval_strategy=no", "--report_to=none", "--logging_steps=1",
         "--per_device_train_batch_size=2", "--save_strategy=no"], env)  # fmt: skip
    state = json.loads((dpo / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and any("rewards/accuracies" in h for h in state["log_history"])
    assert (dpo / "model.safetensors").is_file()
    assert str(prefs) in (dpo / "alignkit" / "run.yaml").read_text()  # it trained on our pairs
    assert_no_canary(root=tmp_path)


def _models_file(tmp_path: Path, model_dir: str) -> Path:
    f = tmp_path / "models.yaml"
    f.write_text(f"models:\n  - {{id: short, path: {model_dir}, temperature: 1.3, top_p: 0.9, max_new_tokens: 3, n: 1}}\n")
    return f
