"""The whole run: one typed model from the command line to the trainer.

    model   what is loaded            (alignkit.config.model.ModelConfig)
    lora    how it is adapted         (alignkit.config.model.LoraConfig)
    data    what it trains on         (alignkit.config.data.DataConfig)
    train   TRL's SFTConfig/DPOConfig/ORPOConfig (alignkit.config.train, TRL's own field names; cpt: SFTConfig)
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
from alignkit.config.tasks import DEFAULT_TEXT_COLUMN, trl_config
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

    task: Literal["sft", "dpo", "orpo", "cpt"]
    recipe: str | None = Field(None, description="Shipped recipe this run started from.")
    profile: str = Field(..., description="Launch profile(s), e.g. full, qlora, or qlora,cpu.")
    description: str | None = Field(None, description="Free text, shown by `alignkit recipes list`.")
    model: ModelConfig
    lora: LoraConfig = Field(default_factory=LoraConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    launch: LaunchConfig = Field(default_factory=LaunchConfig)

    def to_dict(self) -> dict[str, Any]:
        """The config as run.yaml and `--dry-run --json` hold it, with TRL's field names. `train` holds what
        some layer set (TRL's defaults apply to the rest); a disabled `lora` is just `{enabled: false}`."""
        out: dict[str, Any] = {"task": self.task, "recipe": self.recipe, "profile": self.profile}
        if self.description:
            out["description"] = self.description
        for s in SECTIONS:
            out[s] = getattr(self, s).model_dump(mode="json", exclude_unset=(s == "train"))
        if not self.lora.enabled:
            out["lora"] = {"enabled": False}
        return out


# The typed config of one run (the subclass for a task, with its `train` section, is run_model(task)).
RunConfig = _RunBase


# Each check names the fields it reads, so that it can run while other fields have errors: a field whose
# value was invalid (and replaced by its default to check the rest) is "unknown", and no check reading it
# runs. A check returns its problem or None.
def _quantized_needs_lora(run):
    if (run.model.load_in_4bit or run.model.load_in_8bit) and not run.lora.enabled:
        return Problem("model.load_in_4bit", "quantized weights cannot be trained fully",
                       "set lora.enabled=true, or use --profile qlora")


def _needs_data(run):
    if not run.data.mixture:
        return Problem("data.mixture", "no data sources", "add at least one source (id or path)")


def _one_precision(run):
    if run.train.bf16 and run.train.fp16:
        return Problem("train.bf16", "bf16 and fp16 are both set", "choose one")


def _eval_needs_split(run):
    data, train = run.data, run.train
    has_eval = any(s.is_test for s in data.mixture) or bool(data.test_split_size)
    if train.eval_strategy != "no" and data.mixture and not has_eval:
        return Problem("train.eval_strategy", f"is {train.eval_strategy} but the data has no eval split",
                       "add a test source, set data.test_split_size, or set train.eval_strategy=no")


def _best_model_needs_eval(run):
    if run.train.load_best_model_at_end and run.train.eval_strategy == "no":
        return Problem("train.load_best_model_at_end", "needs evaluation", "set train.eval_strategy=steps or epoch")


def _one_weight_per_loss(run):
    train = run.train
    if run.task == "dpo" and train.loss_weights is not None and len(train.loss_weights) != len(train.loss_type):
        return Problem("train.loss_weights", f"has {len(train.loss_weights)} weights for {len(train.loss_type)} "
                       f"loss type(s) {train.loss_type}", "give one weight per loss_type, or --loss_weights=null")


def _precompute_without_lora(run):
    if run.task == "dpo" and run.train.precompute_ref_log_probs and run.lora.enabled:
        return Problem("train.precompute_ref_log_probs",
                       "with LoRA the reference is the adapter-free policy already; precomputing buys nothing",
                       "set train.precompute_ref_log_probs=false")


def _text_column_is_cpt(run):
    if run.task != "cpt" and run.data.text_column is not None:
        return Problem("data.text_column", f"only means something for continued pretraining (`alignkit cpt`); "
                       f"{run.task} reads {'conversations (messages)' if run.task == 'sft' else 'preference pairs'}",
                       "remove it, or run `alignkit cpt` for training on a text column")


def _cpt_text_field(run):
    field = getattr(run.train, "dataset_text_field", None)
    if run.task == "cpt" and "dataset_text_field" in run.train.model_fields_set and field != "text":
        column = run.data.text_column or DEFAULT_TEXT_COLUMN
        return Problem("train.dataset_text_field", "is set by alignkit for CPT (the data build holds the text "
                       "in a `text` column)", f"name the source column with data.text_column: {field or column}")


CROSS_CHECKS: list[tuple[tuple[str, ...], Any]] = [
    (("model.load_in_4bit", "model.load_in_8bit", "lora.enabled"), _quantized_needs_lora),
    (("data.mixture",), _needs_data),
    (("train.bf16", "train.fp16"), _one_precision),
    (("data.mixture", "data.test_split_size", "train.eval_strategy"), _eval_needs_split),
    (("train.load_best_model_at_end", "train.eval_strategy"), _best_model_needs_eval),
    (("train.loss_weights", "train.loss_type"), _one_weight_per_loss),
    (("train.precompute_ref_log_probs", "lora.enabled"), _precompute_without_lora),
    (("data.text_column",), _text_column_is_cpt),
    (("train.dataset_text_field", "data.text_column"), _cpt_text_field),
]


def cross_field_problems(run: Any, unknown: set[str] | frozenset[str] = frozenset()) -> list[Problem]:
    """Checks across sections, each naming the field and the fix. ``unknown``: fields ("section.key", or a
    whole "section") whose value is not the user's because it failed validation; checks reading them are
    skipped, the rest run, so that every error is reported in one round."""
    problems: list[Problem] = []
    for reads, check in CROSS_CHECKS:
        if any(f in unknown or f.split(".", 1)[0] in unknown for f in reads):
            continue
        found = check(run)
        if found is not None:
            problems.append(found)
    return problems


@lru_cache(maxsize=8)
def run_model(task: str) -> type[RunConfig]:
    """The pydantic model of a whole run for one task."""
    return create_model(  # type: ignore[call-overload]
        f"{task.upper()}Run",
        __base__=_RunBase,
        train=(train_model(task), Field(..., description=f"TRL {trl_config(task).upper()}Config fields.")),
    )


def section_model(task: str, section: str) -> type[BaseModel]:
    return train_model(task) if section == "train" else SECTION_MODELS[section]


def section_fields(task: str) -> dict[str, set[str]]:
    return {s: set(section_model(task, s).model_fields) for s in SECTIONS}
