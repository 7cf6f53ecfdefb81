"""What a model directory is: a full model or a PEFT adapter, and where its base and tokenizer are.

Pure file inspection (no torch): training, evaluation, generation and merging all ask these questions.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from alignkit.errors import ConfigError, Problem

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def is_adapter_dir(path: str | Path) -> bool:
    """True when ``path`` is a PEFT adapter directory (it has adapter_config.json)."""
    return (Path(path) / "adapter_config.json").is_file()


def adapter_base(path: str | Path) -> str:
    """The base model an adapter directory was trained on (its ``base_model_name_or_path``)."""
    cfg_file = Path(path) / "adapter_config.json"
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(
            Problem(where=str(cfg_file), message=f"cannot read the adapter config: {e}", fix="re-save the adapter")
        ) from None
    base = cfg.get("base_model_name_or_path") if isinstance(cfg, dict) else None
    if not base:
        raise ConfigError(
            Problem(
                where=f"{cfg_file}: base_model_name_or_path",
                message="the adapter does not say which base model it belongs to",
                fix="set base_model_name_or_path in adapter_config.json to the base model's path or id",
            )
        )
    return str(base)


def has_tokenizer(path: str | Path) -> bool:
    return any((Path(path) / f).is_file() for f in TOKENIZER_FILES)


@contextlib.contextmanager
def quiet_progress():
    """No transformers progress bars ("Loading weights", "Writing model shards") for quick loads/saves."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
