"""The launch plan: everything needed to start a run, computed without starting anything.

A plan is pure data: the accelerate config, the DeepSpeed config, the batch arithmetic and the exact
argv of ``accelerate launch``. ``alignkit sft/dpo --dry-run`` prints it; a real run writes it into
``<output_dir>/alignkit/`` and spawns it; ``alignkit slurm submit`` renders it per node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from alignkit.config.run import RunConfig
    from alignkit.launch.run.file import DataBuild


def profile_label(name: str, reason: str | None) -> str:
    """``profile NAME``, with why it was chosen when no --profile named it: a refusal about a profile the user
    never typed says where it came from."""
    return f"profile {name}, chosen because {reason}," if reason else f"profile {name}"


@dataclass
class BatchMath:
    """How the global batch is kept constant across cluster shapes."""

    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    world_size: int
    global_batch_size: int
    tuned_for: int | None  # the global batch size the recipe was tuned for (None: not recorded)
    adjusted: bool  # True when gradient_accumulation_steps was recomputed for this world size


@dataclass
class LaunchPlan:
    task: str  # "sft" | "dpo"
    profile: str
    num_nodes: int
    gpus_per_node: int
    num_gpus_note: str | None  # e.g. "no GPU visible: using the recipe's reference count, 8"
    world_size: int
    batch: BatchMath
    accelerate_config: dict[str, Any]
    deepspeed_config: dict[str, Any] | None
    config: RunConfig  # the resolved, validated run config with the plan's shape edits (what run.yaml holds)
    output_dir: str
    # argv that `alignkit sft|dpo` runs: `accelerate launch ... -m alignkit.train.<task> --run <run.yaml>`, or
    # for one process without DeepSpeed `python -m alignkit.train.<task> --run <run.yaml>` with accelerate's
    # launch environment in `env`. The file paths in it point into <output_dir>/alignkit/.
    command: list[str]
    # always the `accelerate launch` form (Slurm renders it per node)
    accelerate_command: list[str] = field(default_factory=list)
    # the per-node flags slurm replaces (--machine_rank etc.) are added by alignkit.launch.slurm.render, not here
    env: dict[str, str] = field(default_factory=dict)  # non-secret env the child needs
    notes: list[str] = field(default_factory=list)  # what was enabled/changed and why
    translations: list[str] = field(default_factory=list)  # handbook keys translated to current ones
    warnings: list[str] = field(default_factory=list)  # keys dropped, with why
    overridden: dict[str, str] = field(default_factory=dict)  # section.key -> the layer that set it
    # the mixed data the run trains on, built into the run dir by the preflight (alignkit.launch.preflight)
    data: DataBuild | None = None
    # why a run without --profile got this profile (the file's load_in_4bit / use_peft); None when --profile named it
    profile_reason: str | None = None

    @property
    def profile_label(self) -> str:
        """`profile NAME`, and why it was chosen when no --profile named it (for messages about it)."""
        return profile_label(self.profile, self.profile_reason)

    @property
    def direct(self) -> bool:
        """True when the training process is started without `accelerate launch` (one process, no DeepSpeed)."""
        return bool(self.accelerate_command) and self.command != self.accelerate_command

    @property
    def global_batch_size(self) -> int:
        return self.batch.global_batch_size

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "profile": self.profile,
            "command": self.command,
            "accelerate_command": self.accelerate_command,
            "accelerate_config": self.accelerate_config,
            "deepspeed_config": self.deepspeed_config,
            "config": self.config.to_dict(),
            "world_size": self.world_size,
            "num_nodes": self.num_nodes,
            "gpus_per_node": self.gpus_per_node,
            "global_batch_size": self.batch.global_batch_size,
            "per_device_train_batch_size": self.batch.per_device_train_batch_size,
            "gradient_accumulation_steps": self.batch.gradient_accumulation_steps,
            "output_dir": self.output_dir,
            "env": self.env,
            "notes": self.notes,
            "translations": self.translations,
            "warnings": self.warnings,
            "overridden": self.overridden,
        }
