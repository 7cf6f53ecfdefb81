"""`alignkit demo`: the embedded tiny SFT -> DPO run on this CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def run(output: Path) -> int:
    from alignkit.demo.run import run_demo

    run_demo(output)
    return 0


def demo_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where the demo's models and summary go.")] = Path(
        "runs/demo"),
) -> None:
    """Train a tiny chat model on this CPU, SFT then DPO, and show that DPO changed what it prefers."""
    raise typer.Exit(run(output))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
