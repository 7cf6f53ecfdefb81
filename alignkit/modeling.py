"""What a model directory is: a full model or a PEFT adapter, and where its base and tokenizer are.

Pure file inspection (no torch): training, evaluation, generation and merging all ask these questions.
"""

from __future__ import annotations

import contextlib
import json
import re
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


# --------------------------------------------------------------------------- local paths, checked without loading

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def local_path(name: str | None) -> Path | None:
    """The path when ``name`` means a local path, else None (a Hub id). Local: absolute, ``./``, ``~``, an
    existing path, or anything a Hub id cannot be (``runs/tiny/sft``: a Hub id is ``name`` or ``org/name``)."""
    if not name:
        return None
    path = Path(name).expanduser()
    if path.is_absolute() or name.startswith((".", "~")) or path.exists():
        return path
    return None if _HUB_ID.match(name) else path


def model_problems(model: dict, missing_fix: str | None = None) -> list[Problem]:
    """What is wrong with a local model (and tokenizer) directory, read from the files only: it exists, is a
    directory, holds a config and weights (or an adapter and its base), and a tokenizer. Hub ids are left to
    the Hub. ``missing_fix``: the fix to name when the model directory does not exist (e.g. the command that
    writes it)."""
    where = "model.model_name_or_path"
    path = local_path(model.get("model_name_or_path"))
    if path is None:
        return []
    fix = "point it at a directory written by save_pretrained (or an SFT output dir), or use a Hub id (org/name)"
    if not path.is_dir():
        if path.exists():
            return [Problem(where, f"{path}: not a directory", fix)]
        return [Problem(where, f"{path}: no such directory", missing_fix or fix)]
    problems = []
    if not _readable_dir(path):
        return [Problem(where, f"{path}: cannot be read (permission denied)", "fix its permissions")]
    if is_adapter_dir(path):
        if not any((path / f).is_file() for f in ADAPTER_FILES):
            problems.append(Problem(where, f"{path} has adapter_config.json but no adapter weights "
                                    f"({' or '.join(ADAPTER_FILES)})", fix))
        try:
            base_dir = local_path(adapter_base(path))
        except ConfigError as exc:
            problems += exc.problems
        else:
            if base_dir is not None and not (base_dir / "config.json").is_file():
                problems.append(Problem(f"{path}/adapter_config.json", f"its base model {base_dir} is not a model "
                                        "directory", "restore the base model there, or edit base_model_name_or_path"))
    else:
        if not (path / "config.json").is_file():
            problems.append(Problem(where, f"{path} has no config.json: not a saved model", fix))
        if not any((path / f).is_file() for f in WEIGHT_FILES) and not any(path.glob("*.safetensors")):
            problems.append(Problem(where, f"{path} has no model weights (model.safetensors or pytorch_model.bin)",
                                    fix))
    if model.get("tokenizer_name_or_path"):
        tok_key, tok = "model.tokenizer_name_or_path", local_path(model["tokenizer_name_or_path"])
    else:
        tok_key, tok = where, path
    if tok is not None and not tok.is_dir():
        problems.append(Problem(tok_key, f"{tok}: no such directory", "give a tokenizer directory or a Hub id"))
    elif tok is not None and not has_tokenizer(tok):
        problems.append(Problem(tok_key, f"{tok} has no tokenizer ({', '.join(TOKENIZER_FILES)})",
                                "save the tokenizer there (tokenizer.save_pretrained) or set "
                                "model.tokenizer_name_or_path"))
    return problems


def _readable_dir(path: Path) -> bool:
    import os

    return os.access(path, os.R_OK | os.X_OK)
