"""`alignkit env`: what a bug report needs, and nothing secret."""

from __future__ import annotations

from typing import Annotated

import typer

from alignkit import ui
from alignkit.envinfo import collect


def show(as_json: bool) -> None:
    info = collect()
    if as_json:
        ui.print_json(info)
        return
    from rich.table import Table

    t = Table(title="alignkit env", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    for k in ("alignkit", "python", "platform", "cpu_count", "cuda", "cuda_available", "gpus", "bf16_supported",
              "hub_token_set", "offline"):
        if k in info:
            t.add_row(k, str(info[k]))
    for pkg, ver in info["packages"].items():
        t.add_row(pkg, ver or "-")
    t.add_row("accelerate default config", info["accelerate_default_config"] or "(none)")
    ui.out_console().print(t)


def env_command(as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False) -> None:
    """Versions, GPUs and accelerate config, for bug reports.

    Versions, GPUs (nvidia-smi: torch is not imported) and accelerate's default config, for bug reports."""
    show(as_json=as_json)


def register(app: typer.Typer) -> None:
    app.command("env")(env_command)
