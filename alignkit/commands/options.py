"""Options that several commands share, declared once (typer ``Annotated`` aliases and defaults).

A command module uses them as ``recipe: options.Recipe = None``; its own options stay in its module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

# commands that take config overrides after their options (`--learning_rate=1e-5`, `--lora.r=32`)
RUN_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}
OVERRIDES_HELP = (
    "Any config key can follow as an override: --learning_rate=1e-5, --lora.r=32, --report_to=wandb "
    "(values are YAML: 3e-5, true, [a, b]). A bare .yaml path is a config file (the handbook's form). "
    "Layers, lowest first: defaults < recipe < profile < --config files < overrides. "
    "All keys: `alignkit config fields --task sft|dpo`."
)

Recipe = Annotated[Optional[str], typer.Option("--recipe", "-r", help="Shipped recipe (see `alignkit recipes list`).")]
Profile = Annotated[Optional[str], typer.Option(
    "--profile", "-p", help="full | lora | qlora | lora-zero3 | cpu, or a stack such as qlora,cpu (default: full).")]
ConfigFiles = Annotated[Optional[List[Path]], typer.Option(
    "--config", "-c", help="Your YAML, layered over recipe and profile (repeatable).")]
NumGpus = Annotated[Optional[int], typer.Option(
    "--num-gpus", "--num-processes", help="Processes per node (default: GPUs visible; 1 on the cpu profile).")]
NumNodes = Annotated[Optional[int], typer.Option("--num-nodes", help="Machines (default 1).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the plan and the exact command; start nothing.")]
Json = Annotated[bool, typer.Option("--json", help="With --dry-run: one JSON object on stdout.")]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", help="Start over in an output dir that holds a different run (deletes its checkpoints).")]
PushToHub = Annotated[bool, typer.Option("--push-to-hub", help="Push the result to the Hub (checks for a token first).")]
