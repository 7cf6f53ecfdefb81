"""Layering: defaults < recipe < profile(s) < --config files < overrides, with provenance; all errors at once."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from alignkit.config import recipes
from alignkit.config.layers import build_layer, merge
from alignkit.config.resolve import resolve_config
from alignkit.errors import ConfigError


def line_of(text: str, pattern: str) -> int:
    """1-based line of the first line matching ``pattern``."""
    for i, line in enumerate(text.splitlines(), 1):
        if re.search(pattern, line):
            return i
    raise AssertionError(f"{pattern!r} not found")


DEFAULTS_SFT = resources.files("alignkit.config").joinpath("defaults", "sft.yaml").read_text()
PROFILE_CPU = resources.files("alignkit.config").joinpath("profiles", "cpu.yaml").read_text()
PROFILE_QLORA = resources.files("alignkit.config").joinpath("profiles", "qlora.yaml").read_text()
TINY_SFT = recipes.find("tiny", "sft", "full").text


@pytest.fixture
def two_files(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("train:\n  learning_rate: 1.0e-4\n  optim: adafactor\n  warmup_steps: 3\n")
    b = tmp_path / "b.yaml"
    b.write_text("# second file wins over the first\nlearning_rate: 2.0e-4\nmodel:\n  trust_remote_code: true\n")
    return a, b


def test_each_layer_wins_over_the_one_below_and_says_so(two_files):
    a, b = two_files
    r = resolve_config("sft", recipe="tiny", profile="cpu", config_files=[str(a), str(b)],
                       overrides=["--warmup_steps=0.2"])
    t, m = r.config.train, r.config.model
    # defaults only
    assert t.save_steps == 500
    assert r.source_of("train", "save_steps") == f"defaults/sft.yaml:{line_of(DEFAULTS_SFT, r'^  save_steps:')}"
    # recipe over defaults (defaults say 10)
    assert t.logging_steps == 5
    assert r.source_of("train", "logging_steps") == \
        f"recipe tiny/sft/full.yaml:{line_of(TINY_SFT, r'^  logging_steps:')}"
    # profile over recipe and defaults (the model section's default dtype is bfloat16)
    assert m.dtype == "float32"
    assert r.source_of("model", "dtype") == f"profile cpu:{line_of(PROFILE_CPU, r'model: [{]dtype: float32')}"
    # first config file over the profile (cpu says adamw_torch)
    assert t.optim == "adafactor"
    assert r.source_of("train", "optim") == f"{a}:3"
    # second config file over the first and the recipe (flat handbook-style key)
    assert t.learning_rate == 2e-4
    assert r.source_of("train", "learning_rate") == f"{b}:2"
    assert m.trust_remote_code is True
    assert r.source_of("model", "trust_remote_code") == f"{b}:4"
    # override over everything (file a said 3, the recipe 0.1)
    assert t.warmup_steps == 0.2
    assert r.source_of("train", "warmup_steps") == "override --warmup_steps"
    # nobody set it
    assert m.bnb_4bit_use_double_quant is False
    assert r.source_of("model", "bnb_4bit_use_double_quant") == "default"
    assert [layer.name for layer in r.layers] == [
        "default", "recipe tiny/sft/full.yaml", "profile cpu", f"config {a}", f"config {b}", "override"]


def test_config_file_order_matters(two_files):
    a, b = two_files
    r = resolve_config("sft", recipe="tiny", profile="cpu", config_files=[str(b), str(a)])
    assert r.config.train.learning_rate == 1e-4
    assert r.source_of("train", "learning_rate") == f"{a}:2"


def test_profile_stack_applies_left_to_right():
    r = resolve_config("sft", recipe="tiny", profile="qlora,cpu")
    m = r.config.model
    assert m.load_in_4bit is True
    assert r.source_of("model", "load_in_4bit") == f"profile qlora:{line_of(PROFILE_QLORA, r'load_in_4bit')}"
    assert (m.dtype, m.bnb_4bit_compute_dtype) == ("float32", "float32")
    assert r.source_of("model", "bnb_4bit_compute_dtype").startswith("profile cpu:")
    assert r.config.train.bf16 is False
    assert r.source_of("train", "bf16").startswith("profile cpu:")
    assert r.config.lora.enabled is True
    assert r.source_of("lora", "enabled").startswith("profile qlora:")
    # the recipe variant follows the profile: qlora reads the lora variant of tiny
    assert r.recipe_file == "tiny/sft/lora.yaml"
    assert r.config.lora.r == 8


def test_an_override_beats_the_profile():
    r = resolve_config("sft", recipe="tiny", profile="qlora,cpu", overrides=["--lora.r=4", "--bf16=false",
                                                                            "--model.dtype=float16"])
    assert (r.config.lora.r, r.config.model.dtype) == (4, "float16")
    assert r.source_of("model", "dtype") == "override --model.dtype"


def test_nested_dotted_and_flat_keys_in_one_file(tmp_path):
    f = tmp_path / "forms.yaml"
    f.write_text("train:\n  seed: 11\nlora.r: 4\nlearning_rate: 5.0e-4\nlora:\n  alpha: 8\n")
    r = resolve_config("sft", recipe="tiny", profile="lora,cpu", config_files=[str(f)])
    assert (r.config.train.seed, r.config.lora.r, r.config.train.learning_rate, r.config.lora.alpha) == \
        (11, 4, 5e-4, 8)
    assert [r.source_of(*k) for k in [("train", "seed"), ("lora", "r"), ("train", "learning_rate"),
                                      ("lora", "alpha")]] == [f"{f}:2", f"{f}:3", f"{f}:4", f"{f}:6"]


def test_config_file_alone_needs_no_recipe(tmp_path):
    f = tmp_path / "own.yaml"
    f.write_text("model_name_or_path: /models/m\ndataset_mixer: {/data/chats.jsonl: 1.0}\ndataset_splits: [train]\n"
                 "eval_strategy: 'no'\n")
    r = resolve_config("sft", profile="cpu", config_files=[str(f)])
    assert r.recipe is None and r.recipe_file is None
    assert r.config.model.model_name_or_path == "/models/m"
    assert [s.path for s in r.config.data.mixture] == ["/data/chats.jsonl"]


def test_no_recipe_and_no_file():
    with pytest.raises(ConfigError) as exc:
        resolve_config("sft", profile="cpu")
    assert ("--recipe", "no recipe and no config file") in [(p.where, p.message) for p in exc.value.problems]


def test_to_dict_uses_trl_names_and_keeps_train_to_what_was_set():
    r = resolve_config("sft", recipe="zephyr-7b-beta", profile="full")
    d = r.to_dict()
    assert set(d) == {"task", "recipe", "profile", "description", "model", "lora", "data", "train", "launch"}
    assert d["train"]["max_length"] == 2048 and d["train"]["eval_strategy"] == "epoch"
    for old in ("max_seq_length", "evaluation_strategy", "torch_dtype", "overwrite_output_dir"):
        assert old not in d["train"] and old not in d["model"]
    assert "packing" not in d["train"]  # unset: TRL's default applies
    assert d["lora"] == {"enabled": False}
    assert d["model"]["dtype"] == "bfloat16"


def test_merge_is_field_by_field():
    low = build_layer({"train": {"seed": 1, "learning_rate": 0.1}}, "low", "sft")
    high = build_layer({"train": {"seed": 2}}, "high", "sft")
    merged, prov = merge([low, high])
    assert merged == {"train": {"seed": 2, "learning_rate": 0.1}}
    assert prov == {("train", "seed"): "high", ("train", "learning_rate"): "low"}


def test_layer_shape_errors(tmp_path):
    f = tmp_path / "shape.yaml"
    f.write_text("train: 5\nmodel:\n  model_name_or_path: x\n")
    g = tmp_path / "list.yaml"
    g.write_text("- a\n- b\n")
    with pytest.raises(ConfigError) as exc:
        resolve_config("sft", recipe="tiny", profile="cpu", config_files=[str(f), str(g)])
    found = {(p.where, p.source): p for p in exc.value.problems}
    assert found[("train", f"{f}:1")].message == "expected a mapping of train settings, got int"
    assert found[(str(g), None)].message == "expected a mapping of settings, got list"


def test_every_problem_across_files_and_overrides_in_one_error(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("train:\n  lerning_rate: 1.0e-5\n  num_train_epochs: many\nfoo_bar: 1\n")
    b = tmp_path / "b.yaml"
    b.write_text("model:\n  dtype: bf16\nlora:\n  r: 0\n")
    with pytest.raises(ConfigError) as exc:
        resolve_config("sft", recipe="tiny", profile="lora,cpu", config_files=[str(a), str(b)],
                       overrides=["--per_device_train_batch_size=0", "--max_lenght=5", "--packing"])
    found = {p.where: p for p in exc.value.problems}
    assert set(found) == {"train.lerning_rate", "train.num_train_epochs", "foo_bar", "model.dtype", "lora.r",
                          "train.per_device_train_batch_size", "max_lenght", "--packing"}
    assert found["train.lerning_rate"].source == f"{a}:2"
    assert found["train.lerning_rate"].fix.startswith("did you mean 'learning_rate'")
    assert found["train.num_train_epochs"].source == f"{a}:3"
    assert "got 'many'" in found["train.num_train_epochs"].message
    assert found["foo_bar"].source == f"{a}:4"
    assert found["model.dtype"].source == f"{b}:2"
    assert "'bfloat16'" in found["model.dtype"].message and "got 'bf16'" in found["model.dtype"].message
    assert found["lora.r"].source == f"{b}:4"
    assert found["train.per_device_train_batch_size"].source == "override --per_device_train_batch_size"
    assert found["max_lenght"].fix == "did you mean 'max_length'?"
    text = exc.value.render()
    assert text.startswith("invalid configuration (8 problems):")
    assert exc.value.exit_code == 2


def test_a_bad_yaml_file_does_not_hide_the_other_problems(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  seed: 1\n  seed: 2\n")
    with pytest.raises(ConfigError) as exc:
        resolve_config("sft", recipe="tiny", profile="cpu", config_files=[str(bad)], overrides=["--lerning_rate=1"])
    wheres = [p.where for p in exc.value.problems]
    assert f"{bad}:3" in wheres and "lerning_rate" in wheres


def test_cross_field_problems_name_the_fix():
    with pytest.raises(ConfigError) as exc:
        resolve_config("sft", recipe="tiny", profile="cpu", overrides=["--load_in_4bit=true"])
    [p] = exc.value.problems
    assert (p.where, p.message) == ("model.load_in_4bit", "quantized weights cannot be trained fully")
    assert "--profile qlora" in p.fix
    with pytest.raises(ConfigError) as exc:
        resolve_config("sft", recipe="tiny", profile="cpu", overrides=["--load_best_model_at_end=true",
                                                                      "--eval_strategy=no"])
    assert [p.where for p in exc.value.problems] == ["train.load_best_model_at_end"]


def test_eval_strategy_without_eval_split(tmp_path):
    f = tmp_path / "noeval.yaml"
    f.write_text("data:\n  mixture:\n    - {path: /d/train.jsonl, split: train}\n")
    with pytest.raises(ConfigError) as exc:
        resolve_config("sft", recipe="tiny", profile="cpu", config_files=[str(f)])
    [p] = exc.value.problems
    assert p.where == "train.eval_strategy" and "no eval split" in p.message
    r = resolve_config("sft", recipe="tiny", profile="cpu", config_files=[str(f)],
                       overrides=["--data.test_split_size=0.1"])
    assert r.config.data.test_split_size == 0.1


def test_unknown_task():
    with pytest.raises(ConfigError) as exc:
        resolve_config("ppo", recipe="tiny")
    assert exc.value.problems[0].message == "unknown task 'ppo'"


def test_cross_field_problems_come_with_per_field_errors_in_one_round():
    """A bad value elsewhere does not hide a cross-field problem: both are reported at once."""
    with pytest.raises(ConfigError) as exc:
        resolve_config("sft", recipe="tiny", profile="cpu",
                       overrides=["--load_in_4bit=true", "--learning_rate=fast", "--lora.r=-3"])
    wheres = {p.where for p in exc.value.problems}
    assert {"train.learning_rate", "lora.r", "model.load_in_4bit"} <= wheres, wheres


def test_cross_field_checks_reading_an_invalid_field_wait_for_it():
    # eval_strategy is invalid: its default must not be used to claim load_best_model_at_end needs evaluation
    with pytest.raises(ConfigError) as exc:
        resolve_config("sft", recipe="tiny", profile="cpu",
                       overrides=["--load_best_model_at_end=true", "--eval_strategy=sometimes"])
    assert [p.where for p in exc.value.problems] == ["train.eval_strategy"]
    # nor when the key was mistyped: eval_stratgy may have meant eval_strategy
    with pytest.raises(ConfigError) as exc:
        resolve_config("sft", recipe="tiny", profile="cpu",
                       overrides=["--load_best_model_at_end=true", "--eval_stratgy=no"])
    assert [p.where for p in exc.value.problems] == ["eval_stratgy"]
    # an unrelated typo leaves the check running
    with pytest.raises(ConfigError) as exc:
        resolve_config("sft", recipe="tiny", profile="cpu",
                       overrides=["--load_best_model_at_end=true", "--eval_strategy=no", "--lerning_rate=1"])
    assert {p.where for p in exc.value.problems} == {"lerning_rate", "train.load_best_model_at_end"}
