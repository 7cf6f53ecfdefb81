"""DPO loss variants are chosen from config with TRL's names, checked before anything launches."""

import pytest

from alignkit.config.resolve import resolve_config
from alignkit.config.train import dpo_loss_types
from alignkit.errors import ConfigError


def test_trl_loss_types_are_known():
    types = dpo_loss_types()
    for name in ("sigmoid", "ipo", "hinge", "robust", "sft"):
        assert name in types


@pytest.mark.parametrize("value, expected", [("ipo", ["ipo"]), ("hinge", ["hinge"]),
                                             ("[sigmoid, sft]", ["sigmoid", "sft"])])
def test_loss_type_from_an_override(value, expected):
    weights = "--loss_weights=null" if len(expected) == 1 else "--loss_weights=[1.0, 1.0]"
    r = resolve_config("dpo", recipe="tiny", profile="cpu", overrides=[f"--loss_type={value}", weights])
    assert r.config.train.loss_type == expected


def test_unknown_loss_type_names_the_fix():
    with pytest.raises(ConfigError) as exc:
        resolve_config("dpo", recipe="tiny", profile="cpu", overrides=["--loss_type=ipoo"])
    (problem,) = exc.value.problems
    assert problem.where == "train.loss_type" and "did you mean 'ipo'" in problem.message


def test_loss_weights_must_match_loss_types():
    with pytest.raises(ConfigError) as exc:  # the tiny recipe weighs [sigmoid, sft]; one type left
        resolve_config("dpo", recipe="tiny", profile="cpu", overrides=["--loss_type=ipo"])
    (problem,) = exc.value.problems
    assert problem.where == "train.loss_weights" and "--loss_weights=null" in problem.fix
    ok = resolve_config("dpo", recipe="tiny", profile="cpu", overrides=["--loss_type=ipo", "--loss_weights=null"])
    assert ok.config.train.loss_weights is None
