"""What a run leaves besides the model: status, env.json, model.json, the model card, the Hub upload."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING, Any

from alignkit.fsutil import write_atomic, write_json_atomic

if TYPE_CHECKING:  # pragma: no cover
    from alignkit.train.common import Run


def write_status(run: Run, state: str, **extra: Any) -> None:
    run.layout.write_status(state, **extra)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def write_env(run: Run, state) -> None:
    from alignkit.envinfo import collect

    info = collect()
    info.update(git_commit=git_commit(), argv=run.file.argv, world_size=state.num_processes,
                distributed_type=str(state.distributed_type), python_executable=sys.executable)
    info.pop("accelerate_default_config", None)
    write_json_atomic(run.layout.env_file, info)


def describe_model(model) -> dict[str, Any]:
    """What was actually loaded: parameter counts (ZeRO-3 aware) and quantized linear layers."""
    counts: dict[str, int] = {}
    total = trainable = 0
    for module in model.modules():
        cls = type(module)
        if cls.__module__.startswith("bitsandbytes") and cls.__name__ in ("Linear4bit", "Linear8bitLt"):
            counts[cls.__name__] = counts.get(cls.__name__, 0) + 1
    for p in model.parameters():
        n = getattr(p, "ds_numel", None) or p.numel()
        if type(p).__name__ == "Params4bit":
            n *= 2  # two 4-bit values per stored byte
        total += n
        trainable += n if p.requires_grad else 0
    return {"class": type(model).__name__, "total_params": total, "trainable_params": trainable,
            "quantized_linear": counts, "dtype": str(next(model.parameters()).dtype),
            "zero3_partitioned": any(hasattr(p, "ds_id") for p in model.parameters())}


def speed_settings(trainer) -> dict[str, Any]:
    """The speed-related choices in effect, as the trainer has them (what the dry run said would be decided
    on the training machine: attention kernel, Liger, padding-free, batching, checkpointing)."""
    args = trainer.args
    model = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
    return {"attn_implementation": getattr(getattr(model, "config", None), "_attn_implementation", None),
            "use_liger_kernel": bool(args.use_liger_kernel),
            "padding_free": bool(getattr(trainer, "padding_free", False)),
            "packing": bool(getattr(args, "packing", False)),
            "train_sampling_strategy": str(getattr(args, "train_sampling_strategy", "random")),
            "gradient_checkpointing": bool(args.gradient_checkpointing)}


def write_model_summary(run: Run, trainer) -> dict[str, Any]:
    info = {**describe_model(trainer.model), "speed": speed_settings(trainer)}
    write_json_atomic(run.layout.model_file, info)
    return info


def finalize_model(trainer, tokenizer) -> None:
    """eos on the generation config and use_cache back on, so the saved model generates well."""
    model = trainer.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base, "generation_config", None) is not None and tokenizer.eos_token_id is not None:
        base.generation_config.eos_token_id = tokenizer.eos_token_id
        base.generation_config.pad_token_id = tokenizer.pad_token_id
    base.config.use_cache = True


def write_model_card(trainer, run: Run, base_model: str, datasets: list[str]) -> None:
    """TRL's model card plus what alignkit knows: recipe, profile, version, the command."""
    from alignkit import __version__

    try:
        trainer.create_model_card(model_name=run.output_dir.name, dataset_name=", ".join(datasets) or None,
                                  tags=["alignkit", run.config.task])
    except Exception:  # noqa: BLE001 - the card is documentation, never a reason to lose a trained model
        pass
    readme = run.output_dir / "README.md"
    head = readme.read_text() if readme.exists() else f"# {run.output_dir.name}\n"
    argv = " ".join(run.file.argv)
    section = (
        "\n## Trained with alignkit\n\n"
        f"- alignkit {__version__}, task `{run.config.task}`, recipe `{run.config.recipe}`, "
        f"profile `{run.config.profile}`\n"
        f"- base model: `{base_model}`\n"
        f"- datasets: {', '.join(f'`{d}`' for d in datasets) or '-'}\n"
        f"- command: `{argv}`\n"
        f"- full resolved config: `alignkit/run.yaml`; library versions: `alignkit/env.json`\n"
    )
    write_atomic(readme, head.rstrip() + "\n" + section)


def push_to_hub(run: Run) -> None:
    """Upload the final model from the main process only (never inside a collective: handbook #198)."""
    from huggingface_hub import HfApi

    train = run.config.train
    repo = train.hub_model_id or run.output_dir.name
    api = HfApi()
    api.create_repo(repo, private=bool(train.hub_private_repo), exist_ok=True)
    api.upload_folder(folder_path=str(run.output_dir), repo_id=repo, revision=train.hub_revision,
                      ignore_patterns=["checkpoint-*", "runs/*", "alignkit/lock", "alignkit/data/*"])


def dataset_names(run: Run) -> list[str]:
    return list(dict.fromkeys(s.name for s in run.config.data.mixture))
