"""Speed defaults: what is on by default, what the training machine decides, and what the dry run says.

The measured gains behind them are in bench/RESULTS.md (bench_tokens.py: group_by_length 1.59x useful tokens/s
at loss parity); these tests pin the decisions, not the speed.
"""

from __future__ import annotations

import pytest

from alignkit.config.resolve import resolve_config
from alignkit.launch.build import plan_run


def _notes(task="sft", overrides=(), profile="cpu"):
    return " | ".join(plan_run(task, recipe="tiny", profile=profile, overrides=list(overrides)).notes)


def test_sft_groups_batches_by_length_by_default_and_the_user_can_turn_it_off():
    assert resolve_config("sft", recipe="tiny", profile="cpu").config.train.train_sampling_strategy == \
        "group_by_length"
    assert "group_by_length" in _notes()
    off = resolve_config("sft", recipe="tiny", profile="cpu", overrides=["--train_sampling_strategy=random"])
    assert off.config.train.train_sampling_strategy == "random"
    assert "group_by_length" not in _notes(overrides=["--train_sampling_strategy=random"])


def test_dpo_keeps_trls_sampler():
    # TRL 1.16's DPO cannot infer lengths (it would need a length column and remove_unused_columns=false,
    # measured 1.09x): alignkit leaves DPO's batching as TRL has it
    train = resolve_config("dpo", recipe="tiny", profile="cpu").config.train
    assert "train_sampling_strategy" not in train.model_fields_set
    assert "group_by_length" not in _notes("dpo")


@pytest.mark.parametrize("setting, expect", [(None, "when liger-kernel is installed on CUDA"),
                                             ("true", "Liger kernels on"), ("false", None)])
def test_dry_run_says_how_liger_is_decided(setting, expect):
    notes = _notes(overrides=[f"--use_liger_kernel={setting}"] if setting else [])
    if expect:
        assert expect in notes
    else:
        assert "Liger" not in notes


def test_packing_note_says_what_is_on():
    assert "packing off" in _notes()
    assert "packing on (bfd)" in _notes(overrides=["--packing=true"])


def _args(tmp_path, overrides=(), task="sft"):
    """The TRL config the training process builds from the run file."""
    from trl import DPOConfig, SFTConfig

    from alignkit.launch.run.file import RunFile
    from alignkit.train import common

    plan = plan_run(task, recipe="tiny", profile="cpu", overrides=[f"--output_dir={tmp_path}/o", *overrides])
    run_file = tmp_path / "run.yaml"
    run_file.write_text(RunFile(task=task, config=plan.config).to_yaml())
    run = common.load_run(common.parse_args(["--run", str(run_file)]), task)
    from alignkit.train import loading

    return loading.trainer_args(run, SFTConfig if task == "sft" else DPOConfig)


def test_liger_turns_on_only_on_cuda_with_the_package_and_never_over_the_config(tmp_path, monkeypatch):
    from alignkit.train import loading

    monkeypatch.setattr(loading, "liger_on_cuda", lambda: False)
    args = _args(tmp_path)
    assert args.use_liger_kernel is False
    assert args.train_sampling_strategy == "group_by_length"

    monkeypatch.setattr(loading, "liger_on_cuda", lambda: True)
    assert _args(tmp_path).use_liger_kernel is True
    assert _args(tmp_path, task="dpo").use_liger_kernel is True
    assert _args(tmp_path, ["--use_liger_kernel=false"]).use_liger_kernel is False


def test_liger_check_needs_both_cuda_and_the_package(monkeypatch):
    import importlib.util

    import torch

    from alignkit.train.loading import liger_on_cuda

    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return object() if name == "liger_kernel" and installed else (
            None if name == "liger_kernel" else real_find_spec(name, *args))

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    for cuda in (False, True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        for installed in (False, True):
            assert liger_on_cuda() is (cuda and installed), (cuda, installed)


@pytest.mark.parametrize("overrides, expect", [
    ([], False),  # the tiny recipe turns it off
    (["--gradient_checkpointing=true"], True),  # the handbook's name
    (["--activation_checkpointing=true"], True),  # transformers 5.23's name
    (["--gradient_checkpointing=true", "--activation_checkpointing=false"], False),  # the new name wins
])
def test_checkpointing_reaches_transformers_by_its_current_name_without_a_warning(tmp_path, overrides, expect):
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*gradient_checkpointing.*deprecated")
        args = _args(tmp_path, overrides)
    assert args.activation_checkpointing is expect and args.gradient_checkpointing is expect
    from alignkit.config.train import checkpointing_on

    train = plan_run("sft", recipe="tiny", profile="cpu", overrides=[f"--output_dir={tmp_path}/o", *overrides])
    assert ("activation checkpointing on" in " ".join(train.notes)) is expect
    assert checkpointing_on(resolve_config("sft", recipe="tiny", profile="cpu", overrides=overrides).config.train) \
        is expect


def test_trls_default_checkpointing_is_kept(tmp_path):
    # TRL's SFTConfig turns checkpointing on by default; without the tiny recipe's false, it stays on
    from trl import SFTConfig

    from alignkit.train.loading import _checkpointing_by_its_current_name

    kwargs: dict = {}
    _checkpointing_by_its_current_name(kwargs, SFTConfig)
    assert kwargs == {"activation_checkpointing": True}
