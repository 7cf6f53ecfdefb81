"""The `alignkit` command: parse, call, render. Nothing else lives here.

Start-up must stay light (`alignkit --help` well under a second): torch, transformers, trl, peft,
datasets and bitsandbytes are imported inside the commands that use them, never at module level.
"""

from __future__ import annotations

import sys

import typer

from alignkit import __version__
from alignkit.commands.options import set_metavars

app = typer.Typer(
    name="alignkit",
    help="Turn an open base LLM into a chat model: SFT then DPO, the Zephyr way.\n\n"
    "Start with `alignkit demo` (a tiny model, on this CPU, in minutes) or "
    "`alignkit sft --recipe zephyr-7b-beta --profile full --dry-run`.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"alignkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    pass


# --------------------------------------------------------------------------- commands

# Every command module registers itself the same way: ``register(app)`` adds its command(s) or group.
# The order here is the order of `alignkit --help`. Each module is light at import (typer, rich at most):
# heavy imports live inside its commands.
COMMAND_MODULES = ("train", "recipes", "envinfo", "demo", "merge", "mix", "eval", "slurm", "sweep", "aif", "plan")


def _register_all() -> None:
    from importlib import import_module

    for name in COMMAND_MODULES:
        import_module(f"alignkit.commands.{name}").register(app)


#: the line each command gets in `alignkit --help` (typer would cut a longer first sentence with "...")
SUMMARIES = {
    "sft": "Supervised fine-tuning, step 1 (TRL's SFTTrainer).",
    "dpo": "Direct preference optimization, step 2 (TRL's DPOTrainer).",
    "orpo": "Odds-ratio preference optimization from a base model (ORPO).",
    "cpt": "Continued pretraining on raw text (packing on).",
    "validate": "Check a config or recipe: every problem at once.",
    "env": "Versions, GPUs and accelerate config, for bug reports.",
    "demo": "A tiny SFT then DPO on this CPU, with before/after numbers.",
    "merge": "Merge a LoRA/QLoRA adapter into its base model.",
    "report": "Curves and eval results of runs, side by side.",
    "plan": "Per-GPU memory of a run, and what would make it fit.",
    "recipes": "The shipped recipes: list, show resolved, copy to edit.",
    "config": "The config schema: every key, its type and default.",
    "mix": "Data mixtures: preview, build, decontaminate.",
    "eval": "Evaluate a model: MT-Bench, AlpacaEval, prefs, loss, lm-eval.",
    "slurm": "The same launch on a Slurm cluster, preemption-safe.",
    "sweep": "A grid of runs (e.g. loss_type x beta): run, status, report.",
    "aif": "AI-feedback data: distill, generate, judge, binarize.",
}


def _summarize(t: typer.Typer) -> None:
    for info in [*t.registered_commands, *t.registered_groups]:
        if info.name in SUMMARIES and not info.short_help:
            info.short_help = SUMMARIES[info.name]


_register_all()
_summarize(app)
set_metavars(app)


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every AlignkitError becomes its message and exit code, no traceback
    (ALIGNKIT_DEBUG=1 shows one)."""
    try:
        app(args=argv, prog_name="alignkit")
    except (Exception, KeyboardInterrupt) as exc:
        from alignkit import ui
        from alignkit.errors import AlignkitError

        if ui.debug_enabled() and not isinstance(exc, KeyboardInterrupt):  # the message, then the traceback
            if isinstance(exc, AlignkitError):
                ui.print_error(exc)
            raise
        sys.exit(report(exc))


def report(exc: BaseException) -> int:
    """What the user sees of an exception that ends a command, printed to stderr; returns the exit code. An
    AlignkitError is its message (exit 2 for what the user can fix, 1 for a runtime failure), Ctrl-C is 130,
    anything else is a bug in alignkit, said so (exit 1)."""
    from alignkit import ui
    from alignkit.errors import EXIT_INTERRUPTED, EXIT_RUNTIME, AlignkitError

    if isinstance(exc, AlignkitError):
        ui.print_error(exc)
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    from rich.markup import escape

    ui.err_console().print(
        f"[bold red]internal error:[/bold red] {type(exc).__name__}: {escape(ui.redact(str(exc)))}\n"
        "This is a bug in alignkit. Re-run with ALIGNKIT_DEBUG=1 for the traceback and report it."
    )
    return EXIT_RUNTIME


if __name__ == "__main__":
    main()
