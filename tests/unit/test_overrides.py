"""Command-line overrides: `--k=v`, `--k v`, YAML-typed values, dotted keys, and their errors."""

from __future__ import annotations

import pytest

from alignkit.config.layers import parse_overrides
from alignkit.config.resolve import resolve_config
from alignkit.errors import ConfigError


def resolve(*overrides: str, task: str = "sft", recipe: str = "tiny", profile: str = "cpu", files=()):
    return resolve_config(task, recipe=recipe, profile=profile, config_files=list(files), overrides=list(overrides))


def problems_of(*overrides: str, **kw) -> dict[str, object]:
    with pytest.raises(ConfigError) as exc:
        resolve(*overrides, **kw)
    return {p.where: p for p in exc.value.problems}


# --------------------------------------------------------------------------- parsing


def test_equals_and_space_forms_give_the_same_value():
    assert parse_overrides(["--learning_rate=3e-5"]) == ({"learning_rate": 3e-5}, [], [])
    assert parse_overrides(["--learning_rate", "3e-5"]) == ({"learning_rate": 3e-5}, [], [])


def test_values_containing_equals_signs_are_kept_whole():
    ov, pos, problems = parse_overrides(["--hub_model_id=org/name=v2", "--run_name", "a=b=c"])
    assert ov == {"hub_model_id": "org/name=v2", "run_name": "a=b=c"}
    assert (pos, problems) == ([], [])


@pytest.mark.parametrize(
    "arg, expected",
    [
        ("--learning_rate=3e-5", 3e-5),
        ("--learning_rate=2.0e-05", 2e-05),
        ("--num_train_epochs=2", 2),
        ("--packing=true", True),
        ("--packing=false", False),
        ("--max_length=null", None),
        ("--report_to=[a, b]", ["a", "b"]),
        ("--gradient_checkpointing_kwargs={use_reentrant: false}", {"use_reentrant": False}),
        ("--hub_model_id=zephyr", "zephyr"),
    ],
)
def test_values_are_parsed_as_yaml(arg, expected):
    ov, _, problems = parse_overrides([arg])
    key = arg[2:].split("=", 1)[0]
    assert problems == []
    assert ov[key] == expected
    assert type(ov[key]) is type(expected) or isinstance(ov[key], dict)


def test_dashes_become_underscores_but_dots_stay():
    ov, _, _ = parse_overrides(["--num-train-epochs", "2", "--lora.use-rslora=true", "--train.max-length=64"])
    assert ov == {"num_train_epochs": 2, "lora.use_rslora": True, "train.max_length": 64}


def test_an_override_without_value_is_an_error():
    ov, pos, problems = parse_overrides(["--packing", "--seed=1", "--bf16"])
    assert ov == {"seed": 1}
    assert pos == []
    assert [(p.where, p.message) for p in problems] == [
        ("--packing", "override has no value"),
        ("--bf16", "override has no value"),
    ]
    assert problems[0].fix == "write --packing=VALUE (e.g. --packing=true for a flag)"


def test_single_dash_options_and_positional_paths():
    ov, pos, problems = parse_overrides(["-x", "my.yaml", "--seed=3", "other.yml"])
    assert ov == {"seed": 3}
    assert pos == ["my.yaml", "other.yml"]
    assert [(p.where, p.message) for p in problems] == [("-x", "unknown option")]


@pytest.mark.parametrize("arg", ["--=3", "--.seed=3", "--train.=3", "--train..seed=3"])
def test_malformed_keys(arg):
    _, _, problems = parse_overrides([arg])
    assert [(p.where, p.message) for p in problems] == [(arg, "is not a valid key")]


# --------------------------------------------------------------------------- through resolution


def test_report_to_string_becomes_a_list():
    assert resolve("--report_to=wandb").config.train.report_to == ["wandb"]
    assert resolve("--report_to", "wandb,tensorboard").config.train.report_to == ["wandb", "tensorboard"]
    assert resolve("--report_to=[wandb]").config.train.report_to == ["wandb"]
    assert resolve().config.train.report_to == ["tensorboard"]  # the built-in default


def test_string_number_is_validated_against_the_real_type():
    r = resolve("--learning_rate", "3e-5", "--num_train_epochs=2", "--seed", "7")
    t = r.config.train
    assert (t.learning_rate, t.num_train_epochs, t.seed) == (3e-5, 2.0, 7)
    assert isinstance(t.learning_rate, float) and isinstance(t.seed, int)


def test_dotted_and_flat_keys_reach_their_section():
    r = resolve("--lora.r=32", "--lora.alpha", "64", "--train.learning_rate=1e-4", "--model.dtype=float32",
                "--mix_seed=5", profile="lora,cpu")
    assert (r.config.lora.r, r.config.lora.alpha) == (32, 64)
    assert r.config.train.learning_rate == 1e-4
    assert r.config.model.dtype == "float32"
    assert r.config.data.mix_seed == 5
    assert r.source_of("lora", "r") == "override --lora.r"
    assert r.source_of("train", "learning_rate") == "override --train.learning_rate"
    assert r.source_of("data", "mix_seed") == "override --mix_seed"


def test_flat_key_of_another_section_is_routed_by_name():
    r = resolve("--model_name_or_path=/models/x", "--load_in_4bit=true", profile="qlora,cpu")
    assert r.config.model.model_name_or_path == "/models/x"
    assert r.config.model.load_in_4bit is True
    assert r.source_of("model", "model_name_or_path") == "override --model_name_or_path"


def test_value_with_equals_reaches_the_config():
    assert resolve("--hub_model_id=org/name=v2").config.train.hub_model_id == "org/name=v2"


def test_wrong_types_and_unknown_keys_are_all_reported():
    found = problems_of("--learning_rate=abc", "--lora.rr=3", "--packing", "--num_train_epochs=-1",
                        "--lerning_rate=1")
    assert set(found) == {"train.learning_rate", "lora.rr", "--packing", "train.num_train_epochs", "lerning_rate"}
    assert "got 'abc'" in found["train.learning_rate"].message
    assert found["train.learning_rate"].source == "override --learning_rate"
    assert found["lora.rr"].fix == "did you mean 'r'?"
    assert found["lerning_rate"].message == "unknown key"
    assert "'learning_rate'" in found["lerning_rate"].fix
    assert found["train.num_train_epochs"].message.startswith("Input should be greater than 0")


def test_dpo_key_in_an_sft_run_says_so():
    found = problems_of("--beta=0.1")
    assert found["beta"].message == "is a DPO setting, not a SFT one"
    found = problems_of("--packing=true", task="dpo")
    assert found["packing"].message == "is a SFT setting, not a DPO one"


def test_owned_fields_point_at_their_owner():
    found = problems_of("--deepspeed=ds.json", "--model_init_kwargs={a: 1}", "--recipe=x", "--hub_token=hf_x")
    assert found["hub_token"].message == "is not set here"
    assert "export HF_TOKEN" in found["hub_token"].fix
    assert found["deepspeed"].message == "is not set here"
    assert "--profile full" in found["deepspeed"].fix
    assert "model section" in found["model_init_kwargs"].fix
    assert found["recipe"].fix == "use --recipe instead of a config key"


def test_unknown_section_key_and_bad_choice():
    found = problems_of("--lr_scheduler_type=cosin", "--model.dtpye=float32")
    assert "'cosin' is not one of" in found["train.lr_scheduler_type"].message
    assert "did you mean 'cosine'" in found["train.lr_scheduler_type"].message
    assert found["model.dtpye"].fix == "did you mean 'dtype'?"


def test_positional_yaml_path_is_a_config_file(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("train:\n  learning_rate: 7.0e-4\n")
    r = resolve(str(f), "--seed=9")
    assert r.config.train.learning_rate == 7e-4
    assert r.source_of("train", "learning_rate") == f"{f}:2"
    assert r.config.train.seed == 9


def test_positional_that_is_not_a_file():
    found = problems_of("not-a-config")
    assert found["not-a-config"].message == "unexpected argument"
    found = problems_of(str("/nonexistent/dir/missing.yaml"))
    assert found["/nonexistent/dir/missing.yaml"].message == "file not found"
