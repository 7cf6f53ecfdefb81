"""Handbook compatibility: old and new handbook YAML accepted unmodified, translated, drops warned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.config.deprecations import Translation, translate_mixture
from alignkit.config.resolve import resolve_config
from alignkit.errors import ConfigError
from tests.helpers import run_cli

HANDBOOK = Path(__file__).resolve().parents[1] / "fixtures" / "handbook"
SFT_OLD = HANDBOOK / "zephyr_sft_full_old.yaml"
SFT_NEW = HANDBOOK / "zephyr_sft_full_new.yaml"
DPO_OLD = HANDBOOK / "zephyr_dpo_full_old.yaml"
DPO_QLORA_OLD = HANDBOOK / "zephyr_dpo_qlora_old.yaml"
MIX_NO_TEST = HANDBOOK / "mixture_new_no_test.yaml"


def keys_of(messages: list[str]) -> list[str]:
    """The old key each note/warning is about (its first word)."""
    return [m.split(" ", 1)[0].rstrip(":") for m in messages]


def line_of(path: Path, key: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(f"{key}:"))


def sources(r) -> list[tuple]:
    return [(s.id, s.path, s.config, s.split, s.weight, s.is_test) for s in r.config.data.mixture]


def test_old_sft_file_is_accepted_and_translated():
    r = resolve_config("sft", profile="full", config_files=[str(SFT_OLD)])
    t, m = r.config.train, r.config.model
    assert t.max_length == 2048
    assert t.eval_strategy == "epoch"
    assert (t.learning_rate, t.lr_scheduler_type, t.num_train_epochs) == (2e-5, "cosine", 1)
    assert (t.per_device_train_batch_size, t.gradient_accumulation_steps) == (32, 2)
    assert m.dtype == "bfloat16"
    assert m.attn_implementation == "flash_attention_2"
    assert r.config.data.preprocessing_num_workers == 12
    assert sources(r) == [
        ("HuggingFaceH4/ultrachat_200k", None, None, "train_sft", 1.0, False),
        ("HuggingFaceH4/ultrachat_200k", None, None, "test_sft", 1.0, True),
    ]
    # each translation said once, with the file and line of the old key
    assert keys_of(r.notes) == ["dataset_mixer", "torch_dtype", "use_flash_attention_2",
                                "preprocessing_num_workers", "evaluation_strategy", "max_seq_length"]
    assert f"[{SFT_OLD}:{line_of(SFT_OLD, 'max_seq_length')}]" in next(n for n in r.notes if n.startswith("max_seq_length"))
    assert "max_seq_length → train.max_length" in r.notes[-1]
    # dropped, loudly
    assert keys_of(r.warnings) == ["overwrite_output_dir"]
    assert "--overwrite" in r.warnings[0]
    assert r.source_of("train", "max_length") == f"{SFT_OLD}:{line_of(SFT_OLD, 'max_seq_length')}"
    d = r.to_dict()
    for old in ("max_seq_length", "evaluation_strategy", "overwrite_output_dir", "dataset_mixer"):
        assert old not in d["train"]


def test_old_dpo_file_drops_max_prompt_length_and_translates_warmup_ratio():
    r = resolve_config("dpo", profile="full", config_files=[str(DPO_OLD)])
    t = r.config.train
    assert (t.beta, t.num_train_epochs, t.learning_rate, t.max_length) == (0.1, 3, 5e-7, 1024)
    assert t.warmup_steps == 0.1
    assert t.eval_strategy == "steps" and t.eval_steps == 100
    assert keys_of(r.warnings) == ["max_prompt_length"]
    assert "train.max_length" in r.warnings[0]
    assert "warmup_ratio" in keys_of(r.notes)
    assert [(s.split, s.is_test) for s in r.config.data.mixture] == [("train_prefs", False), ("test_prefs", True)]


def test_old_qlora_file_lora_keys_and_mixer_fractions():
    r = resolve_config("dpo", profile="qlora", config_files=[str(DPO_QLORA_OLD)])
    lora, m = r.config.lora, r.config.model
    assert (lora.enabled, lora.r, lora.alpha, lora.dropout) == (True, 16, 16, 0.05)
    assert lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert m.load_in_4bit is True
    assert m.dtype == "float16"  # the user's file is above the profile's bfloat16
    # fractions become weights on train splits only; test splits are kept whole (weight not applied)
    assert sources(r) == [
        ("HuggingFaceH4/ultrafeedback_binarized", None, "default", "train_prefs", 0.5, False),
        ("HuggingFaceH4/ultrafeedback_binarized", None, "default", "test_prefs", 1.0, True),
        ("argilla/dpo-mix-7k", None, "main", "train_prefs", 0.25, False),
        ("argilla/dpo-mix-7k", None, "main", "test_prefs", 1.0, True),
    ]
    notes = keys_of(r.notes)
    for key in ("dataset_mixer", "torch_dtype", "use_peft", "lora_r", "lora_alpha", "lora_dropout",
                "lora_target_modules", "evaluation_strategy", "warmup_ratio"):
        assert notes.count(key) == 1, (key, r.notes)
    assert keys_of(r.warnings) == ["max_prompt_length"]


def test_new_mixture_with_a_test_split_drops_test_split_size():
    r = resolve_config("sft", profile="full", config_files=[str(SFT_NEW)])
    d = r.config.data
    assert d.test_split_size is None
    assert d.mix_seed == 0
    assert sources(r) == [
        ("HuggingFaceH4/ultrachat_200k", None, "default", "train_sft", 1.0, False),
        ("HuggingFaceH4/ultrachat_200k", None, "default", "test_sft", 1.0, True),
    ]
    assert [s.columns for s in d.mixture] == [["messages"], ["messages"]]
    assert d.chat_template.startswith("{% for message in messages %}")
    assert d.preprocessing_num_workers == 12  # dataset_num_proc
    assert r.config.model.attn_implementation == "flash_attention_2"
    assert r.config.train.max_length == 2048
    assert r.config.train.report_to == ["wandb"]
    assert sorted(keys_of(r.warnings)) == ["dataset_mixture.test_split_size", "overwrite_output_dir"]
    assert "eval split" in next(w for w in r.warnings if w.startswith("dataset_mixture"))
    assert keys_of(r.notes).count("dataset_mixture") == 1


def test_new_mixture_without_test_split_keeps_test_split_size_and_seed():
    r = resolve_config("sft", profile="full", config_files=[str(MIX_NO_TEST)])
    d = r.config.data
    assert (d.test_split_size, d.mix_seed) == (0.05, 7)
    # a local file given as `id` becomes a path
    assert sources(r) == [
        ("HuggingFaceH4/ultrachat_200k", None, "default", "train_sft", 0.5, False),
        (None, "./local/extra_chats.jsonl", None, "train", 2.0, False),
    ]
    assert r.warnings == []


def test_each_old_key_is_noted_once_per_file_even_in_sections(tmp_path):
    f = tmp_path / "sections.yaml"
    f.write_text("model:\n  torch_dtype: float16\ntrain:\n  max_seq_length: 512\n  evaluation_strategy: 'no'\n"
                 "truncation_side: left\n")
    r = resolve_config("sft", recipe="tiny", profile="cpu", config_files=[str(f)])
    assert r.config.model.dtype == "float16"
    assert r.config.train.max_length == 512
    assert r.config.train.eval_strategy == "no"
    assert r.config.train.truncation_mode == "keep_end"
    assert keys_of(r.notes) == ["torch_dtype", "max_seq_length", "evaluation_strategy", "truncation_side"]
    assert len(set(r.notes)) == len(r.notes)


def test_flash_attention_false_and_bad_truncation_side(tmp_path):
    f = tmp_path / "f.yaml"
    f.write_text("use_flash_attention_2: false\ntruncation_side: middle\n")
    r = resolve_config("sft", recipe="tiny", profile="cpu", config_files=[str(f)])
    assert r.config.model.attn_implementation == "sdpa"  # left to the profile
    assert keys_of(r.notes) == ["use_flash_attention_2"]
    assert keys_of(r.warnings) == ["truncation_side"]
    assert "expected left or right" in r.warnings[0]


@pytest.mark.parametrize("key", ["max_completion_length", "logging_dir", "base_model_revision",
                                 "model_code_revision", "text_column", "dataset_text_field"])
def test_keys_without_a_current_meaning_are_dropped_with_a_warning(tmp_path, key):
    f = tmp_path / "drop.yaml"
    f.write_text(f"{key}: something\n")
    r = resolve_config("sft", recipe="tiny", profile="cpu", config_files=[str(f)])
    assert keys_of(r.warnings) == [key]
    assert r.warnings[0].startswith(f"{key} dropped: ")
    assert r.warnings[0].endswith(f"[{f}:1]")


def test_splits_without_a_mixer_are_not_silently_ignored():
    out = Translation()
    translate_mixture({"dataset_splits": ["train"]}, out)
    assert out.values == []
    assert out.warnings == ["dataset_splits/dataset_configs dropped: they only mean something with dataset_mixer"]


def test_mixer_defaults_to_train_and_test_splits():
    out = Translation()
    translate_mixture({"dataset_mixer": {"a/b": 0.3, "/data/local": 1.0}}, out)
    chat = ["messages", "chosen", "rejected", "prompt", "completion", "label"]  # what the old scripts kept
    assert out.values == [("data.mixture", [
        {"id": "a/b", "split": "train", "keep_columns": chat, "weight": 0.3},
        {"id": "a/b", "split": "test", "keep_columns": chat},
        {"path": "/data/local", "split": "train", "keep_columns": chat, "weight": 1.0},
        {"path": "/data/local", "split": "test", "keep_columns": chat},
    ])]
    assert len(out.notes) == 1


def test_trl_script_dataset_name_form():
    out = Translation()
    translate_mixture({"dataset_name": "trl-lib/ultrafeedback", "dataset_config": "default",
                       "dataset_train_split": "train_prefs", "dataset_test_split": "test_prefs"}, out)
    assert out.values == [("data.mixture", [
        {"id": "trl-lib/ultrafeedback", "config": "default", "split": "train_prefs"},
        {"id": "trl-lib/ultrafeedback", "config": "default", "split": "test_prefs"},
    ])]


def test_mixture_with_wrong_shapes_warns():
    out = Translation()
    translate_mixture({"dataset_mixture": ["not", "a", "mapping"]}, out)
    assert out.warnings == ["dataset_mixture dropped: expected a mapping with `datasets`"]
    out = Translation()
    translate_mixture({"dataset_mixer": ["a/b"]}, out)
    assert out.warnings == ["dataset_mixer dropped: expected a mapping {dataset: fraction}"]


def test_handbook_file_with_an_unknown_key_still_fails_loudly(tmp_path):
    f = tmp_path / "typo.yaml"
    f.write_text(SFT_OLD.read_text() + "lerning_rate: 1.0e-5\n")
    with pytest.raises(ConfigError) as exc:
        resolve_config("sft", profile="full", config_files=[str(f)])
    [p] = exc.value.problems
    assert p.where == "lerning_rate" and p.fix.startswith("did you mean 'learning_rate'")
    assert p.source == f"{f}:{line_of(f, 'lerning_rate')}"


@pytest.mark.parametrize("task, path", [("sft", SFT_OLD), ("sft", SFT_NEW), ("dpo", DPO_OLD)])
def test_handbook_file_dry_runs_through_the_cli_in_positional_form(task, path):
    res = CliRunner().invoke(app, [task, str(path), "--profile", "full", "--num-gpus", "8", "--dry-run", "--json"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    plan = json.loads(res.stdout)
    assert plan["world_size"] == 8
    assert plan["config"]["recipe"] is None
    assert plan["translations"] and all(str(path) in n for n in plan["translations"])
    for old in ("max_seq_length", "evaluation_strategy", "torch_dtype", "overwrite_output_dir",
                "max_prompt_length", "dataset_mixer", "dataset_mixture"):
        assert old not in plan["config"]["train"] and old not in plan["config"]["model"]
    expected_batch = {"sft": 32 * 2 * 8 if path == SFT_OLD else 16 * 1 * 8, "dpo": 8 * 1 * 8}[task]
    assert plan["global_batch_size"] == expected_batch


def test_handbook_summary_shows_translations_and_drops_on_stderr():
    res = CliRunner().invoke(app, ["dpo", str(DPO_OLD), "--profile", "full", "--num-gpus", "8", "--dry-run"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    err = " ".join(res.stderr.split())
    assert "translated: evaluation_strategy → train.eval_strategy" in err
    assert "warning: max_prompt_length dropped" in err
    assert res.stdout.count("\n") == 1  # stdout: only the command


# --------------------------------------------------------------------------- issue 14: the handbook's files as they are


def write(tmp_path, text: str, name: str = "hb.yaml") -> str:
    f = tmp_path / name
    f.write_text(text)
    return str(f)


@pytest.mark.parametrize("text", ["torch_dtype: null\n", "model:\n  torch_dtype: null\n", "dtype: null\n",
                                  "model.dtype: null\n", "model:\n  dtype:\n"])
def test_a_null_dtype_means_what_it_meant_in_the_handbook(tmp_path, text):
    # the handbook passed None to from_pretrained: float32 in transformers <= 4.55 (5.x would read "auto")
    f = write(tmp_path, "model_name_or_path: m\ndataset_name: a/b\n" + text)
    r = resolve_config("dpo", profile="full", config_files=[f])
    assert r.config.model.dtype == "float32"
    [note] = [n for n in r.notes if "model.dtype" in n]
    line = 2 + len(text.splitlines())
    assert "→ model.dtype: float32" in note and "from_pretrained" in note and note.endswith(f"[{f}:{line}]")


def test_wandb_keys_become_the_training_processes_environment(tmp_path):
    from alignkit.launch.build import plan_run

    f = write(tmp_path, "model_name_or_path: m\ndataset_name: a/b\nreport_to: wandb\nwandb_entity: huggingface\n"
                        "wandb_project: SmolLM3\nwandb_run_group: SmolLM3-DPO\n")
    p = plan_run("dpo", config_files=[f], profile="full", num_gpus=8, dry_run=True)
    assert {k: p.env[k] for k in ("WANDB_ENTITY", "WANDB_PROJECT", "WANDB_RUN_GROUP")} == {
        "WANDB_ENTITY": "huggingface", "WANDB_PROJECT": "SmolLM3", "WANDB_RUN_GROUP": "SmolLM3-DPO"}
    assert keys_of(p.translations)[-3:] == ["wandb_entity", "wandb_project", "wandb_run_group"]
    assert "environment variable WANDB_PROJECT=SmolLM3" in p.translations[-2]
    assert not any(k.startswith("WANDB") for k in p.config.to_dict()["train"])  # not a TRL field, not in the run config
    # a command-line override wins over the file, like any other value
    p = plan_run("dpo", config_files=[f], overrides=["--wandb_project=other"], profile="full", num_gpus=8,
                 dry_run=True)
    assert p.env["WANDB_PROJECT"] == "other"


def test_a_wandb_key_with_a_bad_value_is_refused_naming_it_never_a_did_you_mean(tmp_path):
    f = write(tmp_path, "model_name_or_path: m\ndataset_name: a/b\nwandb_project: [a, b]\n")
    with pytest.raises(ConfigError) as exc:
        resolve_config("sft", profile="full", config_files=[f])
    [p] = exc.value.problems
    assert (p.where, p.message) == ("wandb_project", "expected a name, got list")
    assert "WANDB_PROJECT" in p.fix and "did you mean" not in p.fix and p.source == f"{f}:3"


def test_old_multi_source_mixer_keeps_only_the_chat_columns_like_the_old_scripts(tmp_path):
    from alignkit.data.mixer import mix

    def conv(tag):
        return [{"role": "user", "content": f"q {tag}"}, {"role": "assistant", "content": f"a {tag}"}]

    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"messages": conv(f"a{i}"), "prompt_id": str(i), "source": "x"}) + "\n"
                         for i in range(6)))
    b.write_text("".join(json.dumps({"messages": conv(f"b{i}"), "category": "y"}) + "\n" for i in range(4)))
    f = write(tmp_path, f"model_name_or_path: m\ndataset_mixer:\n  {a}: 0.5\n  {b}: 1.0\ndataset_splits:\n- train\n")
    r = resolve_config("sft", profile="full", config_files=[f])
    chat = ["messages", "chosen", "rejected", "prompt", "completion", "label"]
    assert [s.keep_columns for s in r.config.data.mixture] == [chat, chat]
    assert "keeps only the chat columns" in next(n for n in r.notes if n.startswith("dataset_mixer"))
    res = mix(r.config.data, "sft")  # refused before: the sources' other columns differ
    assert res.tables["train"].column_names == ["messages"]
    assert res.tables["train"].num_rows == 3 + 4
    # the run file of a config without keep_columns is unchanged (no new null key)
    plain = resolve_config("sft", recipe="tiny", profile="cpu")
    assert all("keep_columns" not in s for s in plain.to_dict()["data"]["mixture"])


def test_old_mixer_sources_whose_kept_chat_columns_differ_mix_with_nulls_like_concatenate_datasets(tmp_path):
    """constitutional-ai's SFT: cai-conversation-harmless keeps messages+chosen+rejected+prompt, ultrachat_200k
    messages+prompt. The old scripts' concatenate_datasets filled the missing columns with None; so does alignkit
    (SFT trains on messages either way). A mixture written by hand with different columns is still refused."""
    from alignkit.data.mixer import mix
    from alignkit.errors import DataError

    def conv(tag):
        return [{"role": "user", "content": f"q {tag}"}, {"role": "assistant", "content": f"a {tag}"}]

    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"messages": conv(f"a{i}"), "chosen": conv(f"c{i}"), "rejected": conv(f"r{i}"),
                                     "prompt": f"q a{i}", "critic_prompt": "?"}) + "\n" for i in range(3)))
    b.write_text("".join(json.dumps({"messages": conv(f"b{i}"), "prompt": f"q b{i}", "prompt_id": str(i)}) + "\n"
                         for i in range(4)))
    f = write(tmp_path, f"model_name_or_path: m\ndataset_mixer:\n  {a}: 1.0\n  {b}: 1.0\ndataset_splits:\n- train\n")
    res = mix(resolve_config("sft", profile="full", config_files=[f]).config.data, "sft")
    train = res.tables["train"]
    assert sorted(train.column_names) == ["chosen", "messages", "prompt", "rejected"]
    assert train.num_rows == 7 and train.column("chosen").null_count == 4
    hand = write(tmp_path, f"model:\n  model_name_or_path: m\ndata:\n  mixture:\n  - path: {a}\n  - path: {b}\n")
    with pytest.raises(DataError, match="different columns"):
        mix(resolve_config("sft", profile="full", config_files=[hand]).config.data, "sft")


def test_a_mixture_without_seed_gets_the_handbooks_default_0(tmp_path):
    f = write(tmp_path, "model_name_or_path: m\ndataset_mixture:\n  datasets:\n  - id: a/b\n    split: train\n")
    r = resolve_config("sft", profile="full", config_files=[f])
    assert r.config.data.mix_seed == 0
    assert any(n.startswith("dataset_mixture without seed → data.mix_seed: 0") for n in r.notes)


def test_a_weight_on_a_test_source_is_ignored_with_a_note_at_dry_run(tmp_path):
    from alignkit.launch.build import plan_run

    f = write(tmp_path, "model_name_or_path: m\ndataset_mixture:\n  seed: 1\n  datasets:\n"
                        "  - {id: a/b, split: train_sft, weight: 0.5}\n  - {id: a/b, split: test_sft, weight: 0.1}\n")
    p = plan_run("sft", config_files=[f], profile="full", num_gpus=8, dry_run=True)
    assert "data.mixture[1] (a/b test_sft): weight 0.1 ignored: test sources are evaluated whole, never subsampled" \
        in p.notes
    assert not any("data.mixture[0]" in n for n in p.notes)
    # the same for alignkit's own form
    g = write(tmp_path, "model: {model_name_or_path: m}\ndata:\n  mixture:\n  - {id: a/b, split: test, weight: 2}\n"
                        "  - {id: a/b, split: train}\n", "own.yaml")
    p = plan_run("sft", config_files=[g], profile="full", num_gpus=8, dry_run=True)
    assert any(n.startswith("data.mixture[0] (a/b test): weight 2 ignored") for n in p.notes)


def test_the_test_split_note_names_the_sources_that_stop_training(tmp_path):
    # constitutional-ai at HEAD: cai train_sft + ultrachat test_sft, test_split_size 1000
    f = write(tmp_path, "model_name_or_path: m\ndataset_mixture:\n  datasets:\n"
                        "  - {id: HuggingFaceH4/cai-conversation-harmless, split: train_sft}\n"
                        "  - {id: HuggingFaceH4/ultrachat_200k, split: test_sft}\n  test_split_size: 1000\n")
    r = resolve_config("sft", profile="full", config_files=[f])
    [w] = [w for w in r.warnings if w.startswith("dataset_mixture")]
    assert w.startswith("dataset_mixture.test_split_size dropped: alignkit keeps the test split "
                        "HuggingFaceH4/ultrachat_200k (test_sft) for evaluation")
    assert "eval split of 1000" in w
    assert "HuggingFaceH4/ultrachat_200k no longer trains at all" in w
    # without test_split_size the handbook trained on the test split too: said as well
    g = write(tmp_path, "model_name_or_path: m\ndataset_mixture:\n  datasets:\n"
                        "  - {id: a/b, split: train}\n  - {id: a/b, split: test}\n", "g.yaml")
    r = resolve_config("sft", profile="full", config_files=[g])
    [w] = [w for w in r.warnings if w.startswith("dataset_mixture")]
    assert "a/b (test) for evaluation" in w and "no longer train" not in w


def test_validate_prints_the_translation_notes(tmp_path):
    res = CliRunner().invoke(app, ["validate", "--task", "sft", str(SFT_OLD), "--profile", "full", "--num-gpus", "8"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    err = "".join(res.stderr.split())
    assert "translated:max_seq_length→train.max_length" in err
    assert "translated:evaluation_strategy→train.eval_strategy" in err


@pytest.mark.parametrize("value, kind", [("notalist", "text 'notalist'"), ("{id: a/b}", "a mapping {'id': 'a/b'}"),
                                         ("3", "int 3")])
def test_mixture_datasets_that_is_not_a_list_is_refused_as_such(tmp_path, value, kind):
    f = write(tmp_path, f"model_name_or_path: m\ndataset_mixture:\n  datasets: {value}\n")
    with pytest.raises(ConfigError) as exc:
        resolve_config("sft", profile="full", config_files=[f])
    [p] = exc.value.problems
    assert (p.where, p.message) == ("dataset_mixture.datasets", f"must be a list of sources, got {kind}")
    assert "- id: ORG/NAME" in p.fix and p.source == f"{f}:2"
    proc = run_cli("sft", f, "--profile", "full", "--num-gpus", "8", "--dry-run", timeout=120,
                   cwd=HANDBOOK.parents[2])
    assert proc.returncode == 2 and "must be a list" in proc.stderr and "Traceback" not in proc.stderr
    assert "no data sources" not in proc.stderr


def test_another_wandb_key_is_refused_pointing_at_the_environment_not_a_lookalike_field(tmp_path):
    f = write(tmp_path, "model_name_or_path: m\ndataset_name: a/b\nwandb_tags: [x]\n")
    with pytest.raises(ConfigError) as exc:
        resolve_config("sft", profile="full", config_files=[f])
    [p] = exc.value.problems
    assert (p.where, p.message) == ("wandb_tags", "unknown key")
    assert p.fix.startswith("W&B reads its settings from the environment: export WANDB_TAGS=...")
    assert "did you mean" not in p.fix
