"""Terminal output: one stderr console for humans, stdout for what scripts consume (commands, JSON).

rich is imported on first use, not at CLI start-up.
"""

from __future__ import annotations

import json
import os
import sys
from functools import lru_cache
from typing import Any, Sequence

from alignkit.secrets import redact


@lru_cache(maxsize=1)
def err_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=False)


@lru_cache(maxsize=1)
def out_console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(redact(json.dumps(data, indent=2, default=str)) + "\n")
    sys.stdout.flush()


def print_out(text: str) -> None:
    sys.stdout.write(redact(text) + ("" if text.endswith("\n") else "\n"))
    sys.stdout.flush()


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Rows on stdout: a rich table on a terminal (cells never read as markup), else one tab-separated
    line per row after the header line, never wrapped (for scripts)."""
    if sys.stdout.isatty():
        from rich.markup import escape
        from rich.table import Table

        t = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for col in header:
            t.add_column(col)
        for row in rows:
            t.add_row(*(escape(str(v)) for v in row))
        out_console().print(t)
    else:
        print_out("\n".join("\t".join(str(v) for v in row) for row in [header, *rows]))


def info(text: str) -> None:
    err_console().print(redact(text))


def warn(text: str) -> None:
    from rich.markup import escape

    err_console().print(f"[yellow]warning:[/yellow] {escape(redact(text))}")


def print_error(exc: BaseException) -> None:
    """Render an AlignkitError: a title line and one line per problem, with its fix."""
    from rich.markup import escape

    from alignkit.errors import AlignkitError

    con = err_console()
    if isinstance(exc, AlignkitError):
        n = len(exc.problems)
        con.print(f"[bold red]error:[/bold red] {escape(exc.title)} ({n} problem{'s' if n != 1 else ''})")
        for p in exc.problems:
            src = f" [dim](from {escape(redact(p.source))})[/dim]" if p.source else ""
            con.print(f"  [bold]{escape(redact(p.where))}[/bold]: {escape(redact(p.message))}{src}")
            if p.fix:
                con.print(f"    [green]fix:[/green] {escape(redact(p.fix))}")
    else:
        con.print(f"[bold red]error:[/bold red] {escape(redact(str(exc)))}")


def debug_enabled() -> bool:
    return os.environ.get("ALIGNKIT_DEBUG", "") not in ("", "0", "false")


def stdout_to_stderr():
    """While libraries run in the CLI process (model and data checks), whatever they print goes to stderr:
    stdout stays the command's result alone (a job id, JSON), safe to capture in a script."""
    import contextlib

    return contextlib.redirect_stdout(sys.stderr)
