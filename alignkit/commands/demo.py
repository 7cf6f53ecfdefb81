"""`alignkit demo`: the embedded tiny SFT -> DPO run on this CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def run(output: Path, overwrite: bool = False) -> int:
    from alignkit.demo.run import run_demo

    run_demo(output, overwrite=overwrite)
    return 0


def demo_command(
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR",
                                         help="Where the demo's models and summary go.")] = Path("runs/demo"),
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Train both stages again from scratch (by default a stage an earlier demo completed "
                            "is kept and its numbers are measured again).")] = False,
) -> None:
    """A tiny SFT then DPO on this CPU, with before/after numbers.

    Train a tiny chat model on this CPU, SFT then DPO, and show that DPO changed what it prefers.
    """
    raise typer.Exit(run(output, overwrite))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
