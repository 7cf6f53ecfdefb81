"""`alignkit merge ADAPTER --output DIR`: a LoRA/QLoRA adapter merged into its base, saved as a full model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alignkit import ui
from alignkit.errors import Problem, UsageError

DTYPES = ("bfloat16", "float16", "float32")


def run(adapter: Path, output: Path, dtype: str) -> None:
    problems = []
    if not (adapter / "adapter_config.json").is_file():
        problems.append(Problem(str(adapter), "is not a LoRA/QLoRA adapter dir (no adapter_config.json)",
                                "pass the output dir of an `alignkit sft|dpo` run with a lora/qlora profile"))
    if dtype not in DTYPES:
        problems.append(Problem("--dtype", f"unknown dtype '{dtype}'", f"use one of {', '.join(DTYPES)}"))
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        problems.append(Problem(str(output), "exists and is not empty", "choose a new --output directory"))
    if problems:
        raise UsageError(problems)
    from alignkit.modeling import adapter_base
    from alignkit.train.loading import merge_adapter

    ui.info(f"merging {adapter} into its base {adapter_base(str(adapter))} ({dtype}, dequantized) ...")
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.exists():
        output.rmdir()
    merge_adapter(str(adapter), output, dtype=dtype)
    ui.info(f"[green]merged model:[/green] {output}")


def merge_command(
    adapter: Annotated[Path, typer.Argument(help="A LoRA/QLoRA adapter dir (e.g. an SFT output).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where the merged full model is written.")],
    dtype: Annotated[str, typer.Option("--dtype", help="Dtype of the merged weights (bfloat16, float16, float32).")
                     ] = "bfloat16",
) -> None:
    """Merge a LoRA/QLoRA adapter into its base (dequantized) and save a full model."""
    run(adapter, output, dtype)


def register(app: typer.Typer) -> None:
    app.command("merge")(merge_command)
