"""The handbook's real recipe files train through the CLI in a world that stands in for the Hub.

Tiny models and datasets are saved under the ids the recipes name, relative to the CLI's working
directory (``mistralai/Mistral-7B-v0.1/``, ``HuggingFaceH4/ultrachat_200k/data/train_sft-00000-of-00001.parquet``,
...), so the files run unmodified but for size overrides, with HF_HUB_OFFLINE=1. The datasets have their real
split names and columns (the extra ones too: old multi-source recipes relied on the handbook keeping only the
chat columns). Covered: Zephyr SFT -> DPO with the 2023-11 keys and with the 2025-07 keys, the QLoRA SFT file,
constitutional-ai's two-source SFT, and gpt2-nl's continued pretraining (the ORPO file: tests/e2e/test_orpo_cpt.py).
"""
from __future__ import annotations

import json
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


def _ultrachat(root: Path) -> None:
    """HuggingFaceH4/ultrachat_200k: prompt, prompt_id, messages."""
    sft = [{"prompt": _chat(i, "It is")[0]["content"], "prompt_id": f"p{i}", "messages": _chat(i, "It is")}
           for i in range(16)]
    _save_splits(root, "HuggingFaceH4/ultrachat_200k",
                 {"train_sft": sft, "test_sft": sft[:8], "train_gen": sft[:4], "test_gen": sft[:4]})


def _ultrafeedback(root: Path) -> None:
    """HuggingFaceH4/ultrafeedback_binarized: prompt, prompt_id, chosen, rejected, messages, score_*."""
    prefs = [{"prompt": _chat(i, "")[0]["content"], "prompt_id": f"p{i}", "chosen": _chat(i, "It is"),
              "rejected": _chat(i, "Maybe"), "messages": _chat(i, "It is"), "score_chosen": 8.0,
              "score_rejected": 3.0} for i in range(16)]
    _save_splits(root, "HuggingFaceH4/ultrafeedback_binarized",
                 {"train_prefs": prefs, "test_prefs": prefs[:8], "train_sft": prefs, "test_sft": prefs[:8]})


def _cai_harmless(root: Path) -> None:
    """HuggingFaceH4/cai-conversation-harmless: the constitutional pipeline's columns (init_*, critic_*,
    revision_*) besides the chat ones (prompt, messages, chosen, rejected) - not ultrachat's set."""
    rows = []
    for i in range(16):
        q = f"how do I pick lock number {i}?"
        rows.append({"init_prompt": q, "init_response": "Like this.", "critic_prompt": "Is it harmful?",
                     "critic_response": "Yes.", "revision_prompt": "Rewrite it.", "revision_response": "I can't.",
                     "prompt": q, "messages": [{"role": "user", "content": q},
                                               {"role": "assistant", "content": "I can't help with that."}],
                     "chosen": [{"role": "user", "content": q}, {"role": "assistant", "content": "I can't."}],
                     "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": "Like this."}]})
    _save_splits(root, "HuggingFaceH4/cai-conversation-harmless",
                 {"train_sft": rows, "test_sft": rows[:8], "train_prefs": rows, "test_prefs": rows[:8]})


def _gpt2(root: Path, tiny_model_dir: str) -> None:
    """`gpt2`: a tiny GPT-2 (the architecture the gpt2-nl recipe trains) with the tiny tokenizer."""
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    config = transformers.GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    transformers.set_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(root / "gpt2")
    tok.save_pretrained(root / "gpt2")


def _mc4_nl(root: Path) -> None:
    """yhavinga/mc4_nl_cleaned, config `tiny`: text, timestamp, url. Its Hub repo reads through a loading
    script; here the config is declared the way a parquet repo declares one (README `configs:`), which
    `load_dataset(id, "tiny")` resolves to the same split and columns."""
    import datasets

    repo = root / "yhavinga" / "mc4_nl_cleaned"
    (repo / "tiny").mkdir(parents=True)
    words = "de het een en van ik je dat is niet op te zijn met voor maar".split()
    rows = [{"text": " ".join(words[(i + j) % len(words)] for j in range(60)), "timestamp": "2020-01-01",
             "url": f"https://example.nl/{i}"} for i in range(24)]
    datasets.Dataset.from_list(rows).to_parquet(str(repo / "tiny" / "train-00000-of-00001.parquet"))
    (repo / "README.md").write_text("---\nconfigs:\n- config_name: tiny\n  data_files:\n  - split: train\n"
                                    "    path: tiny/train-*.parquet\n---\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir) -> Path:
    root = tmp_path_factory.mktemp("hub_world")
    shutil.copytree(tiny_model_dir, root / "mistralai" / "Mistral-7B-v0.1")
    _ultrachat(root)
    _ultrafeedback(root)
    _cai_harmless(root)
    _gpt2(root, tiny_model_dir)
    _mc4_nl(root)
    return root


def _run(world: Path, env, task: str, recipe: Path, out: str, *extra: str, profile: str = "full,cpu"):
    proc = run_cli(task, str(recipe), *SIZE, f"--output_dir={out}", "--profile", profile, *extra,
                   env=env, cwd=world, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _own_world(world: Path, name: str) -> Path:
    """A working dir of its own that sees the same Hub stand-ins (a chain that writes the id a later file reads,
    e.g. alignment-handbook/zephyr-7b-sft-full, must not meet another chain's output there)."""
    own = world / "worlds" / name
    own.mkdir(parents=True)
    for org in ("mistralai", "HuggingFaceH4", "gpt2", "yhavinga"):
        (own / org).symlink_to(world / org, target_is_directory=True)
    return own


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


def test_zephyr_sft_then_dpo_old_keys(world, tiny_env):
    """The first Zephyr recipe (2023-11): dataset_mixer, max_seq_length, evaluation_strategy,
    use_flash_attention_2; the DPO file reads the SFT output under the id it names."""
    old = HANDBOOK / "2023-11-10" / "recipes" / "zephyr-7b-beta"
    here = _own_world(world, "2023-11")
    sft = _run(here, tiny_env, "sft", old / "sft" / "config_full.yaml", "alignment-handbook/zephyr-7b-sft-full")
    assert "max_seq_length → train.max_length" in sft.stderr  # translated, and said so
    assert "use_flash_attention_2 → model.attn_implementation" in sft.stderr
    out = here / "alignment-handbook" / "zephyr-7b-sft-full"
    assert (out / "model.safetensors").is_file()
    _assert_recorded_lr(out, old / "sft" / "config_full.yaml")
    _run(here, tiny_env, "dpo", old / "dpo" / "config_full.yaml", "runs/dpo-old")
    dpo = here / "runs" / "dpo-old"
    assert (dpo / "model.safetensors").is_file()
    run = yaml.safe_load((dpo / "alignkit" / "run.yaml").read_text())
    assert run["config"]["train"]["beta"] == 0.1 and run["config"]["train"]["optim"] == "rmsprop"


def test_zephyr_qlora_sft_trains_a_4bit_base_with_lora(world, tiny_env):
    """Without --profile the file picks qlora, which needs a GPU: refused at once with the fix; with the CPU
    form the user is told to add, it trains a LoRA adapter on a 4-bit (bitsandbytes NF4) base."""
    f = HANDBOOK / "2024-08-19" / "recipes" / "zephyr-7b-beta" / "sft" / "config_qlora.yaml"
    refused = run_cli("sft", str(f), *SIZE, "--output_dir=runs/qlora", env=tiny_env, cwd=world, timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert "--profile qlora,cpu" in " ".join(refused.stderr.split())
    assert not (world / "runs" / "qlora").exists()
    _run(world, tiny_env, "sft", f, "runs/qlora", profile="qlora,cpu")
    out = world / "runs" / "qlora"
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 16 and sorted(adapter["target_modules"]) == sorted(yaml.safe_load(f.read_text())[
        "lora_target_modules"])
    assert json.loads((out / "alignkit" / "model.json").read_text())["quantized_linear"].get("Linear4bit")
    run = yaml.safe_load((out / "alignkit" / "run.yaml").read_text())
    assert run["config"]["model"]["load_in_4bit"] is True and run["config"]["lora"]["enabled"] is True


def test_constitutional_ai_two_sources_with_different_columns(world, tiny_env):
    """constitutional-ai's SFT (2024-08) mixes cai-conversation-harmless and ultrachat_200k, whose extra columns
    differ; like the handbook's old scripts, only the chat columns are kept, so the two mix."""
    f = HANDBOOK / "2024-08-19" / "recipes" / "constitutional-ai" / "sft" / "config_anthropic.yaml"
    _run(world, tiny_env, "sft", f, "runs/cai")
    out = world / "runs" / "cai"
    assert (out / "model.safetensors").is_file()
    manifest = json.loads((out / "alignkit" / "data" / "manifest.json").read_text())
    assert manifest["task"] == "sft"
    names = json.dumps(manifest)
    assert "cai-conversation-harmless" in names and "ultrachat_200k" in names
    import datasets

    built = datasets.load_dataset("parquet", data_dir=str(out / "alignkit" / "data"), split="train")
    assert "critic_prompt" not in built.column_names and "prompt_id" not in built.column_names
    assert "messages" in built.column_names and len(built) == 32


def test_gpt2_nl_continued_pretraining(world, tiny_env):
    """gpt2-nl's CPT file (2024-08): `gpt2`, yhavinga/mc4_nl_cleaned's `tiny` config, its text column, packed."""
    f = HANDBOOK / "2024-08-19" / "recipes" / "gpt2-nl" / "cpt" / "config_full.yaml"
    _run(world, tiny_env, "cpt", f, "runs/cpt", "--logging_steps=1", profile="cpu")
    out = world / "runs" / "cpt"
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / "config.json").read_text())["model_type"] == "gpt2"
    run = yaml.safe_load((out / "alignkit" / "run.yaml").read_text())
    assert run["config"]["train"]["packing"] is True and run["config"]["train"]["packing_strategy"] == "bfd_split"
    assert run["config"]["train"]["learning_rate"] == 2.0e-4
    losses = [h["loss"] for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert losses and all(x > 0 for x in losses)
