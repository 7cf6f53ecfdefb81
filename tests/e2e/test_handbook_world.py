"""The handbook's real recipe files train through the CLI in a world that stands in for the Hub.

Tiny models and datasets are saved under the ids the recipes name, relative to the CLI's working
directory (``mistralai/Mistral-7B-v0.1/``, ``HuggingFaceH4/ultrachat_200k/data/train_sft-00000-of-00001.parquet``,
...), so the files run unmodified but for size overrides, with HF_HUB_OFFLINE=1.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.helpers import run_cli

pytestmark = pytest.mark.e2e

HANDBOOK = Path(__file__).resolve().parents[1] / "fixtures" / "handbook"
SIZE = ["--max_steps=2", "--per_device_train_batch_size=2", "--max_length=128", "--eval_strategy=no",
        "--save_strategy=no", "--report_to=none", "--push_to_hub=false", "--num-gpus", "1"]


def _chat(i: int, answer: str) -> list[dict]:
    return [{"role": "user", "content": f"question {i}: what is {i} plus {i}?"},
            {"role": "assistant", "content": f"{answer} {2 * i}."}]


def _save_splits(root: Path, repo_id: str, splits: dict[str, list[dict]]) -> None:
    import datasets

    data = root / repo_id / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        datasets.Dataset.from_list(rows).to_parquet(str(data / f"{split}-00000-of-00001.parquet"))


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir) -> Path:
    root = tmp_path_factory.mktemp("hub_world")
    shutil.copytree(tiny_model_dir, root / "mistralai" / "Mistral-7B-v0.1")
    sft = [{"prompt": _chat(i, "It is")[0]["content"], "prompt_id": f"p{i}", "messages": _chat(i, "It is")}
           for i in range(16)]
    _save_splits(root, "HuggingFaceH4/ultrachat_200k",
                 {"train_sft": sft, "test_sft": sft[:8], "train_gen": sft[:4], "test_gen": sft[:4]})
    prefs = [{"prompt": _chat(i, "")[0]["content"], "prompt_id": f"p{i}", "chosen": _chat(i, "It is"),
              "rejected": _chat(i, "Maybe"), "messages": _chat(i, "It is"), "score_chosen": 8.0,
              "score_rejected": 3.0} for i in range(16)]
    _save_splits(root, "HuggingFaceH4/ultrafeedback_binarized",
                 {"train_prefs": prefs, "test_prefs": prefs[:8], "train_sft": prefs, "test_sft": prefs[:8]})
    return root


def _run(world: Path, env, task: str, recipe: Path, out: str, *extra: str):
    proc = run_cli(task, str(recipe), *SIZE, f"--output_dir={out}", "--profile", "full,cpu", *extra,
                   env=env, cwd=world, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _assert_recorded_lr(out: Path, recipe: Path) -> None:
    run = yaml.safe_load((out / "alignkit" / "run.yaml").read_text())
    assert run["config"]["train"]["learning_rate"] == yaml.safe_load(recipe.read_text())["learning_rate"]


def test_zephyr_sft_new_keys(world, tiny_env):
    recipe = HANDBOOK / "2025-07-29" / "recipes" / "zephyr-7b-beta" / "sft" / "config_full.yaml"
    _run(world, tiny_env, "sft", recipe, "runs/sft-new")
    out = world / "runs" / "sft-new"
    assert any(out.rglob("*.safetensors")), sorted(p.name for p in out.rglob("*"))
    _assert_recorded_lr(out, recipe)


def test_zephyr_dpo_new_keys_reads_the_sft_output(world, tiny_env):
    """The DPO file names ``alignment-handbook/zephyr-7b-sft-full``: the SFT output stands there."""
    sft = HANDBOOK / "2025-07-29" / "recipes" / "zephyr-7b-beta" / "sft" / "config_full.yaml"
    _run(world, tiny_env, "sft", sft, "alignment-handbook/zephyr-7b-sft-full")
    dpo = HANDBOOK / "2025-07-29" / "recipes" / "zephyr-7b-beta" / "dpo" / "config_full.yaml"
    _run(world, tiny_env, "dpo", dpo, "runs/dpo-new")
    out = world / "runs" / "dpo-new"
    assert (out / "model.safetensors").is_file(), sorted(p.name for p in out.rglob("*"))
    _assert_recorded_lr(out, dpo)
