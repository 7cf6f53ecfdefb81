"""The `launch` section: cluster shape and the batch the recipe was tuned for."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LaunchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_gpus: int | None = Field(
        None,
        ge=1,
        description="Processes per node (GPUs; on the cpu profile, CPU processes). Default: the GPUs "
        "visible, or for a dry run without GPUs the recipe's reference_num_gpus.",
    )
    num_nodes: int = Field(1, ge=1, description="Machines in the run.")
    global_batch_size: int | None = Field(
        None,
        ge=1,
        description="Global batch the recipe was tuned for; gradient_accumulation_steps is recomputed "
        "to keep it for the actual world size. null: use gradient_accumulation_steps as given.",
    )
    reference_num_gpus: int | None = Field(
        None, ge=1, description="GPU count the recipe was tuned on (used for dry runs on a laptop)."
    )
    main_process_port: int | None = Field(
        None, ge=1024, le=65535, description="Rendezvous port of the main process (default: accelerate's)."
    )
    launcher: Literal["auto", "accelerate"] = Field(
        "auto",
        description="How the training processes start. auto: one process without DeepSpeed starts "
        "`python -m alignkit.train.<task>` directly, with the environment `accelerate launch` would give it (for one "
        "process accelerate's launcher only sets that environment), which saves the ~2-3 s accelerate's CLI spends "
        "importing torch; several processes, DeepSpeed and Slurm jobs always go through `accelerate launch`. "
        "accelerate: always `accelerate launch`.",
    )
