"""Handbook and old-TRL keys, translated to current fields.

The alignment-handbook's YAML files (both its older `run_*.py` style and its newer TrlParser style) are
accepted unmodified. Each old key is translated once, with a note saying what it became; keys with no
current meaning are dropped with a warning saying why — never silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Translation:
    """What one layer's old keys became."""

    values: list[tuple[str, Any]] = field(default_factory=list)  # (section.field, value)
    notes: list[str] = field(default_factory=list)  # translated: said once
    warnings: list[str] = field(default_factory=list)  # dropped: said loudly
    env: list[tuple[str, str]] = field(default_factory=list)  # (variable, value) for the training processes
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (where, message, fix): refused


def _rename(target: str, why: str) -> Callable[[str, Any, Translation], None]:
    def apply(key: str, value: Any, out: Translation) -> None:
        out.values.append((target, value))
        out.notes.append(f"{key} → {target} ({why})")

    return apply


def _drop(why: str) -> Callable[[str, Any, Translation], None]:
    def apply(key: str, value: Any, out: Translation) -> None:
        out.warnings.append(f"{key} dropped: {why}")

    return apply


def _flash(key: str, value: Any, out: Translation) -> None:
    if value:
        out.values.append(("model.attn_implementation", "flash_attention_2"))
        out.notes.append(f"{key} → model.attn_implementation: flash_attention_2")
    else:
        out.notes.append(f"{key}: false → attention left to the profile (sdpa or eager)")


def _truncation_side(key: str, value: Any, out: Translation) -> None:
    mode = {"left": "keep_end", "right": "keep_start"}.get(str(value))
    if mode is None:
        out.warnings.append(f"{key}: {value!r} dropped: expected left or right")
        return
    out.values.append(("train.truncation_mode", mode))
    out.notes.append(f"{key}: {value} → train.truncation_mode: {mode}")


def null_dtype(key: str, out: Translation) -> None:
    """`torch_dtype: null` (or `dtype: null`): the handbook's default. Its scripts passed the null on to
    `from_pretrained(torch_dtype=None)`, which in the transformers it pinned (4.35 to 4.53) loaded the
    weights in torch's default dtype, float32 (`bf16: true` then trains them in mixed precision; under
    DeepSpeed ZeRO-3 with bf16, DeepSpeed holds them in bf16). transformers 5 reads a null as "auto"
    instead, so the null is written out as what it meant then (TRL 1.x's own ModelConfig keeps float32 as
    its `dtype` default for the same reason)."""
    out.values.append(("model.dtype", "float32"))
    out.notes.append(f"{key}: null → model.dtype: float32 (the handbook passed no dtype to from_pretrained, which "
                     "loaded float32 weights in the transformers it pinned; bf16 mixed precision and DeepSpeed's "
                     "bf16 apply on top as they did there; set model.dtype: auto for the checkpoint's own dtype)")


def _torch_dtype(key: str, value: Any, out: Translation) -> None:
    if value is None:
        null_dtype(key, out)
        return
    out.values.append(("model.dtype", value))
    out.notes.append(f"{key} → model.dtype (transformers renamed it)")


# Keys of scripts built on the handbook (open-r1's `init_wandb_training`, the SmolLM3 files) that no parser of
# the handbook's own ever had: they set W&B's environment variables before training.
WANDB_ENV = {"wandb_entity": "WANDB_ENTITY", "wandb_project": "WANDB_PROJECT", "wandb_run_group": "WANDB_RUN_GROUP"}


def _wandb(key: str, value: Any, out: Translation) -> None:
    var = WANDB_ENV[key]
    if value is None:
        out.notes.append(f"{key}: null → {var} not set")
        return
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        out.problems.append((key, f"expected a name, got {type(value).__name__}",
                             f"write {key}: NAME (it sets {var} for the training processes)"))
        return
    out.env.append((var, str(value)))
    out.notes.append(f"{key} → environment variable {var}={value} for the training processes "
                     "(W&B reads it when train.report_to includes wandb)")


def unknown_key_fix(key: str) -> str | None:
    """The fix for an unknown key that a did-you-mean would only mislead on (a W&B setting is no TRL field)."""
    if key.lower().startswith("wandb_") and key not in WANDB_ENV:
        return (f"W&B reads its settings from the environment: export {key.upper()}=... before the run "
                f"(alignkit maps only {', '.join(WANDB_ENV)} from a config)")
    return None


def _warmup_ratio(key: str, value: Any, out: Translation) -> None:
    out.values.append(("train.warmup_steps", value))
    out.notes.append(f"{key} → train.warmup_steps (transformers 5 takes a ratio in [0, 1) there)")


# Single keys, accepted at the top level (handbook files are flat) and inside their section.
KEYS: dict[str, Callable[[str, Any, Translation], None]] = {
    "max_seq_length": _rename("train.max_length", "TRL renamed it"),
    "evaluation_strategy": _rename("train.eval_strategy", "transformers renamed it"),
    "torch_dtype": _torch_dtype,
    "wandb_entity": _wandb,
    "wandb_project": _wandb,
    "wandb_run_group": _wandb,
    "use_flash_attention_2": _flash,
    "hub_model_revision": _rename("train.hub_revision", "transformers' name"),
    "warmup_ratio": _warmup_ratio,
    "truncation_side": _truncation_side,
    "preprocessing_num_workers": _rename("data.preprocessing_num_workers", "data section"),
    "dataset_num_proc": _rename("data.preprocessing_num_workers", "data section"),
    "chat_template": _rename("data.chat_template", "data section"),
    "chat_template_path": _rename("data.chat_template", "data section: a path or a template string"),
    "auto_insert_empty_system_msg": _rename("data.auto_insert_empty_system_msg", "data section"),
    "use_peft": _rename("lora.enabled", "lora section"),
    "lora_r": _rename("lora.r", "lora section"),
    "lora_alpha": _rename("lora.alpha", "lora section"),
    "lora_dropout": _rename("lora.dropout", "lora section"),
    "lora_target_modules": _rename("lora.target_modules", "lora section"),
    "lora_modules_to_save": _rename("lora.modules_to_save", "lora section"),
    "use_bnb_nested_quant": _rename("model.bnb_4bit_use_double_quant", "model section"),
    "overwrite_output_dir": _drop(
        "removed from transformers; alignkit resumes a matching run and refuses a different one "
        "unless you pass --overwrite"
    ),
    "max_prompt_length": _drop(
        "removed in TRL 1.x; prompt + completion are truncated together to train.max_length "
        "(train.truncation_mode picks the side)"
    ),
    "max_completion_length": _drop("removed in TRL 1.x; see train.max_length"),
    "logging_dir": _drop("removed from transformers; TensorBoard logs go to <output_dir>/runs"),
    "base_model_revision": _drop("the base of an adapter is read from its adapter_config.json"),
    "model_code_revision": _drop("no current meaning"),
    "text_column": _drop("conversations are read from `messages`; use data.mixture[].columns (training on a "
                         "text column is continued pretraining: `alignkit cpt`)"),
    "dataset_text_field": _drop("alignkit trains on conversations (`messages`), not a text column (training on "
                                "a text column is continued pretraining: `alignkit cpt`)"),
}

def _text_column(key: str, value: Any, out: Translation) -> None:
    out.values.append(("data.text_column", value))
    out.notes.append(f"{key} → data.text_column (the column continued pretraining reads its text from)")


# Per task: keys translated differently from KEYS, or (None) keys that are current fields of that task's TRL config.
TASK_KEYS: dict[str, dict[str, Callable[[str, Any, Translation], None] | None]] = {
    "orpo": {
        "max_completion_length": None,  # a field of TRL 1.16's ORPOConfig
        "max_prompt_length": _drop(
            "removed in TRL 1.x; ORPO truncates the prompt first to keep prompt + completion within "
            "train.max_length (train.max_completion_length caps the completion)"
        ),
    },
    "cpt": {
        "text_column": _text_column,
        "dataset_text_field": _text_column,
    },
}


def keys_for(task: str) -> dict[str, Callable[[str, Any, Translation], None]]:
    """The single-key translations that apply to `task`."""
    keys = dict(KEYS)
    for key, how in TASK_KEYS.get(task, {}).items():
        if how is None:
            keys.pop(key, None)
        else:
            keys[key] = how
    return keys


def mixer_columns(task: str, raw: dict[str, Any]) -> list[str]:
    """What the handbook's old scripts kept of each dataset_mixer source: the chat columns, or (its run_cpt.py)
    only the text column."""
    if task == "cpt":
        column = raw.get("text_column") or raw.get("dataset_text_field") or "text"
        return [str(column)]
    return list(CHAT_COLUMNS)


# Keys translated together (they only mean something as a group).
MIX_KEYS = ("dataset_mixer", "datasets_mixer", "dataset_splits", "dataset_configs", "dataset_mixture",
            "dataset_name", "dataset_config", "dataset_train_split", "dataset_test_split")

# TRL fields another section owns: a clear error, not a silent translation.
OWNED = {
    "model_init_kwargs": "set the model section instead (model.dtype, model.attn_implementation, "
    "model.load_in_4bit, …)",
    "deepspeed": "DeepSpeed configs come from the profile (--profile full | lora-zero3)",
    "fsdp": "FSDP is not supported; use a DeepSpeed profile (--profile full)",
    "fsdp_config": "FSDP is not supported; use a DeepSpeed profile (--profile full)",
    "parallelism_config": "set by the launcher",
    "local_rank": "set by the launcher",
    "hub_token": "export HF_TOKEN=... instead: secrets never go into configs, run files or logs",
}


# What the handbook's old run_sft.py / run_dpo.py kept of every dataset_mixer source (data.py's
# `columns_to_keep`, 2024-01 to 2025-07): the other columns were removed, so that sources with different extra
# columns could be concatenated.
CHAT_COLUMNS = ["messages", "chosen", "rejected", "prompt", "completion", "label"]
# The seed of the handbook's DatasetMixtureConfig when a dataset_mixture gives none.
HANDBOOK_MIX_SEED = 0


def translate_mixture(raw: dict[str, Any], out: Translation, keep: list[str] | None = None) -> None:
    """Translate the handbook's dataset keys (old and new forms) into data.mixture. `keep`: the columns an old
    dataset_mixer source keeps (default: the chat columns; see mixer_columns)."""
    keep = list(CHAT_COLUMNS) if keep is None else keep
    sources: list[dict[str, Any]] = []
    if "dataset_mixture" in raw:
        mix = raw["dataset_mixture"] or {}
        if not isinstance(mix, dict):
            out.warnings.append("dataset_mixture dropped: expected a mapping with `datasets`")
            return
        items = mix.get("datasets")
        if items is not None and not isinstance(items, list):
            out.problems.append((
                "dataset_mixture.datasets", f"must be a list of sources, got {_kind(items)} {_short(items)}",
                "write `datasets:` followed by one `- id: ORG/NAME` entry per source (with split, config, "
                "columns, weight)",
            ))
            return
        for item in items or []:
            if not isinstance(item, dict):
                out.warnings.append(f"dataset_mixture.datasets entry {item!r} dropped: expected a mapping")
                continue
            src = {k: v for k, v in item.items() if v is not None}
            if "id" in src and _looks_local(str(src["id"])):
                src["path"] = src.pop("id")
            sources.append(src)
        if mix.get("seed") is not None:
            out.values.append(("data.mix_seed", mix["seed"]))
        else:
            out.values.append(("data.mix_seed", HANDBOOK_MIX_SEED))
            out.notes.append(f"dataset_mixture without seed → data.mix_seed: {HANDBOOK_MIX_SEED} (the handbook's "
                             "default; alignkit's own is 42)")
        _test_sources_note(sources, mix.get("test_split_size"), out)
        if mix.get("test_split_size") is not None and not any(_is_test(s) for s in sources):
            out.values.append(("data.test_split_size", mix["test_split_size"]))
        out.notes.append("dataset_mixture → data.mixture (+ data.mix_seed, data.test_split_size)")
    mixer = raw.get("dataset_mixer", raw.get("datasets_mixer"))
    if mixer is not None:
        splits = raw.get("dataset_splits") or ["train", "test"]
        if isinstance(splits, str):
            splits = [splits]
        configs = raw.get("dataset_configs")
        if not isinstance(mixer, dict):
            out.warnings.append("dataset_mixer dropped: expected a mapping {dataset: fraction}")
        else:
            for i, (name, frac) in enumerate(mixer.items()):
                config = configs[i] if isinstance(configs, list) and i < len(configs) else None
                for split in splits:
                    src: dict[str, Any] = {"path" if _looks_local(str(name)) else "id": name, "split": split}
                    if config:
                        src["config"] = config
                    src["keep_columns"] = list(keep)
                    if "test" not in str(split):
                        src["weight"] = frac
                    sources.append(src)
            out.notes.append(
                "dataset_mixer + dataset_splits → data.mixture (train splits take `weight` after a "
                "seeded shuffle, not the first rows as the old handbook did; test splits are kept whole; "
                f"each source keeps only the {'chat ' if keep == CHAT_COLUMNS else ''}columns the old scripts kept: "
                f"{', '.join(keep)})"
            )
    elif "dataset_splits" in raw or "dataset_configs" in raw:
        out.warnings.append("dataset_splits/dataset_configs dropped: they only mean something with dataset_mixer")
    if raw.get("dataset_name"):
        name = raw["dataset_name"]
        loc = "path" if _looks_local(str(name)) else "id"
        base = {loc: name}
        if raw.get("dataset_config"):
            base["config"] = raw["dataset_config"]
        sources.append({**base, "split": raw.get("dataset_train_split") or "train"})
        if raw.get("dataset_test_split"):
            sources.append({**base, "split": raw["dataset_test_split"]})
        out.notes.append("dataset_name (+ dataset_config, dataset_*_split) → data.mixture")
    if sources:
        out.values.append(("data.mixture", sources))


def _kind(value: Any) -> str:
    return "a mapping" if isinstance(value, dict) else "text" if isinstance(value, str) else type(value).__name__


def _short(value: Any) -> str:
    text = repr(dict(value) if isinstance(value, dict) else value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_test(src: dict[str, Any]) -> bool:
    return bool(src["test"]) if src.get("test") is not None else "test" in str(src.get("split", ""))


def _test_sources_note(sources: list[dict[str, Any]], size: Any, out: Translation) -> None:
    """The handbook's new-style mixture trains on every listed split (test_* too); alignkit keeps test splits
    for evaluation. Say which sources that takes out of training, and which then train not at all."""
    tests = [s for s in sources if _is_test(s)]
    if not tests:
        return

    def name(src: dict[str, Any]) -> str:
        return str(src.get("id") or src.get("path"))

    listed = ", ".join(f"{name(s)} ({s.get('split')})" for s in tests)
    plural = len(tests) > 1
    kept = (f"alignkit keeps the test split{'s' if plural else ''} {listed} for evaluation instead of training on "
            f"{'them' if plural else 'it'}")
    if size is not None:
        msg = (f"dataset_mixture.test_split_size dropped: {kept} (the handbook folded every listed split into "
               f"train and carved a random eval split of {size} out of the union)")
    else:
        msg = f"dataset_mixture: {kept} (the handbook trained on every listed split and had no eval split)"
    trained = {name(s) for s in sources if not _is_test(s)}
    gone = list(dict.fromkeys(name(s) for s in tests if name(s) not in trained))
    if gone:
        msg += (f"; {', '.join(gone)} no longer train{'s' if len(gone) == 1 else ''} at all (no train split of "
                f"{'it' if len(gone) == 1 else 'them'} in the mixture)")
    out.warnings.append(msg)


def _looks_local(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", "demo:")) or name.endswith(
        (".json", ".jsonl", ".parquet", ".csv")
    )
