"""The `train` section: TRL's own SFTConfig / DPOConfig fields, validated without importing TRL.

Importing TRL costs seconds (it pulls in torch), so validation runs against a snapshot of TRL's
fields (``trl_fields.json``, made by ``scripts/gen_trl_fields.py`` and checked against the installed
TRL by a test). Every TRL field is accepted under its current name with its real type; a few fields
are owned by other sections (``model_init_kwargs`` is built from ``model``, ``chat_template_path`` is
``data.chat_template`` …) and are rejected here with a pointer to the owner.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from typing_extensions import Annotated

from alignkit.config.tasks import trl_config
from alignkit.errors import did_you_mean

# alignkit's own descriptions where TRL's are terse or about a different workflow.
_DESCRIPTIONS = {
    "output_dir": "Where the model, checkpoints, logs and alignkit/run.yaml are written.",
    "max_length": "Maximum tokenized length of a training example (prompt + completion); longer "
    "examples are truncated (see `alignkit mix preview` for how many).",
    "report_to": "Loggers: tensorboard (default), wandb, none, … A single string becomes a list.",
    "gradient_accumulation_steps": "Micro-batches per optimizer step. Recomputed from "
    "launch.global_batch_size for the actual number of GPUs unless you set it yourself.",
}

_TYPES: dict[str, Any] = {
    "bool": bool,
    "int": int,
    "float": float,
    "str": str,
    "list[str]": list[str],
    "list[float]": list[float],
    "dict": dict[str, Any],
    "any": Any,
}


def _as_list(value: Any) -> Any:
    if isinstance(value, str) and value not in ("none", "all"):
        return [v.strip() for v in value.split(",")] if "," in value else [value]
    return value


def _py_type(kind: str):
    parts = kind.split("|")
    nullable = "none" in parts
    members = [_TYPES[p] for p in parts if p != "none"]
    tp = members[0] if len(members) == 1 else Union[tuple(members)]  # type: ignore[valid-type]
    return Optional[tp] if nullable else tp


def _choice_validator(name: str, choices: list[str]):
    def check(value: Any) -> Any:
        if value is None or not isinstance(value, str) or value in choices:
            return value
        hint = did_you_mean(value, choices)
        raise ValueError(f"'{value}' is not one of {', '.join(choices)}" + (f"; {hint}" if hint else ""))

    return check


def _loss_types_validator(choices: list[str]):
    check = _choice_validator("loss_type", choices)

    def each(value: Any) -> Any:
        if isinstance(value, list):
            for v in value:
                check(v)
        return value

    return each


def dpo_loss_types() -> list[str]:
    """The DPO loss types TRL offers, read from its own field help (kept current by the snapshot test)."""
    import re

    return re.findall(r"`'([a-z_0-9]+)'`", trl_snapshot()["tasks"]["dpo"]["loss_type"]["help"])


@lru_cache(maxsize=1)
def trl_snapshot() -> dict:
    text = resources.files("alignkit.config").joinpath("trl_fields.json").read_text()
    return json.loads(text)


class _TrainBase(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


@lru_cache(maxsize=8)
def train_model(task: str) -> type[BaseModel]:
    """The pydantic model of the `train` section for a task (its TRL config's fields: cpt has SFTConfig's)."""
    snap = trl_snapshot()
    fields: dict[str, Any] = {}
    for name, spec in snap["tasks"][trl_config(task)].items():
        tp = _py_type(spec["type"])
        validators = []
        if name in ("report_to",) or (task == "dpo" and name == "loss_type"):
            validators.append(BeforeValidator(_as_list))
        if task == "dpo" and name == "loss_type":
            validators.insert(0, BeforeValidator(_loss_types_validator(dpo_loss_types())))
        if spec.get("choices"):
            validators.append(BeforeValidator(_choice_validator(name, spec["choices"])))
        if validators:
            tp = Annotated[tp, *validators]  # type: ignore[misc]
        description = _DESCRIPTIONS.get(name) or spec.get("help") or ""
        default = spec["default"]
        constraints: dict[str, Any] = {}
        if name in ("learning_rate",):
            constraints["gt"] = 0
        if name in ("beta",):
            constraints["gt"] = 0
        if name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            constraints["ge"] = 1
        if name == "num_train_epochs":
            constraints["gt"] = 0
        fields[name] = (tp, Field(default, description=description, **constraints))
    model = create_model(f"{task.upper()}TrainConfig", __base__=_TrainBase, **fields)
    model.__doc__ = f"TRL {snap['trl_version']} {trl_config(task).upper()}Config fields."
    return model


def owned_elsewhere() -> dict[str, str]:
    return dict(trl_snapshot()["owned_elsewhere"])


def checkpointing_on(train: Any) -> bool:
    """Activation checkpointing as transformers 5.23 resolves it: `activation_checkpointing` when set, else its
    deprecated alias `gradient_checkpointing` (the handbook's name, and TRL's default: on)."""
    new = getattr(train, "activation_checkpointing", None)
    return bool(new if new is not None else getattr(train, "gradient_checkpointing", False))
