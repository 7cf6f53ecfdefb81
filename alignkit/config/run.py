"""The whole run: one typed model from the command line to the trainer.

    model   what is loaded            (alignkit.config.model.ModelConfig)
    lora    how it is adapted         (alignkit.config.model.LoraConfig)
    data    what it trains on         (alignkit.config.data.DataConfig)
    train   TRL's SFTConfig/DPOConfig (alignkit.config.train, TRL's own field names)
    launch  cluster shape and batch   (alignkit.config.launch.LaunchConfig)

Cross-field checks live here (cross_field_problems) and name the fix.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from alignkit.config.data import DataConfig
from alignkit.config.launch import LaunchConfig
from alignkit.config.model import LoraConfig, ModelConfig
from alignkit.config.train import train_model
from alignkit.errors import Problem

SECTIONS = ("model", "lora", "data", "train", "launch")
SECTION_MODELS: dict[str, type[BaseModel]] = {
    "model": ModelConfig,
    "lora": LoraConfig,
    "data": DataConfig,
    "launch": LaunchConfig,
}


class _RunBase(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    task: Literal["sft", "dpo"]
    recipe: str | None = Field(None, description="Shipped recipe this run started from.")
    profile: str = Field(..., description="Launch profile(s), e.g. full, qlora, or qlora,cpu.")
    description: str | None = Field(None, description="Free text, shown by `alignkit recipes list`.")
    model: ModelConfig
    lora: LoraConfig = Field(default_factory=LoraConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    launch: LaunchConfig = Field(default_factory=LaunchConfig)


def cross_field_problems(run: Any) -> list[Problem]:
    """Checks across sections, each naming the field and the fix. Runs after per-field validation."""
    problems: list[Problem] = []
    train, model, lora, data = run.train, run.model, run.lora, run.data
    if (model.load_in_4bit or model.load_in_8bit) and not lora.enabled:
        problems.append(Problem(
            "model.load_in_4bit", "quantized weights cannot be trained fully",
            "set lora.enabled=true, or use --profile qlora"))
    if not data.mixture:
        problems.append(Problem("data.mixture", "no data sources", "add at least one source (id or path)"))
    if train.bf16 and train.fp16:
        problems.append(Problem("train.bf16", "bf16 and fp16 are both set", "choose one"))
    has_eval = any(s.is_test for s in data.mixture) or bool(data.test_split_size)
    if train.eval_strategy != "no" and data.mixture and not has_eval:
        problems.append(Problem(
            "train.eval_strategy", f"is {train.eval_strategy} but the data has no eval split",
            "add a test source, set data.test_split_size, or set train.eval_strategy=no"))
    if train.load_best_model_at_end and train.eval_strategy == "no":
        problems.append(Problem(
            "train.load_best_model_at_end", "needs evaluation", "set train.eval_strategy=steps or epoch"))
    if run.task == "dpo" and train.loss_weights is not None and len(train.loss_weights) != len(train.loss_type):
        problems.append(Problem(
            "train.loss_weights", f"has {len(train.loss_weights)} weights for {len(train.loss_type)} loss type(s) "
            f"{train.loss_type}", "give one weight per loss_type, or --loss_weights=null"))
    if run.task == "dpo" and train.precompute_ref_log_probs and lora.enabled:
        problems.append(Problem(
            "train.precompute_ref_log_probs",
            "with LoRA the reference is the adapter-free policy already; precomputing buys nothing",
            "set train.precompute_ref_log_probs=false"))
    return problems


@lru_cache(maxsize=2)
def run_model(task: str) -> type[_RunBase]:
    """The pydantic model of a whole run for one task."""
    return create_model(  # type: ignore[call-overload]
        f"{task.upper()}Run",
        __base__=_RunBase,
        train=(train_model(task), Field(..., description=f"TRL {task.upper()}Config fields.")),
    )


def section_model(task: str, section: str) -> type[BaseModel]:
    return train_model(task) if section == "train" else SECTION_MODELS[section]


def section_fields(task: str) -> dict[str, set[str]]:
    return {s: set(section_model(task, s).model_fields) for s in SECTIONS}
