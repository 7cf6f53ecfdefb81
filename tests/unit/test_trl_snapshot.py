"""The TRL field snapshot (alignkit/config/trl_fields.json) matches the installed TRL."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from alignkit.config.resolve import resolve_config
from alignkit.config.train import train_model, trl_snapshot
from alignkit.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_gen_trl_fields_check_passes_against_the_installed_trl():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_trl_fields.py"), "--check"],
                          capture_output=True, text=True, timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_snapshot_is_of_the_installed_version():
    assert trl_snapshot()["trl_version"] == metadata.version("trl")


@pytest.mark.parametrize("task", ["sft", "dpo"])
def test_removed_names_are_not_fields(task):
    fields = trl_snapshot()["tasks"][task]
    for gone in ("max_seq_length", "max_prompt_length", "max_completion_length", "evaluation_strategy",
                 "overwrite_output_dir", "torch_dtype"):
        assert gone not in fields
    for current in ("max_length", "eval_strategy", "learning_rate", "gradient_accumulation_steps", "report_to"):
        assert current in fields
    # owned by other sections, so not accepted in `train`
    for owned in ("model_init_kwargs", "deepspeed", "local_rank", "trust_remote_code"):
        assert owned not in fields
    assert set(train_model(task).model_fields) == set(fields)


def test_snapshot_types_validate():
    sft = trl_snapshot()["tasks"]["sft"]
    assert sft["max_length"]["default"] == 1024
    assert "lr_scheduler_type" in sft and "cosine" in sft["lr_scheduler_type"]["choices"]
    dpo = trl_snapshot()["tasks"]["dpo"]
    assert dpo["beta"]["default"] == 0.1
    with pytest.raises(ConfigError) as exc:
        resolve_config("dpo", recipe="tiny", profile="cpu", overrides=["--beta=high", "--max_length=long"])
    assert {p.where for p in exc.value.problems} == {"train.beta", "train.max_length"}
