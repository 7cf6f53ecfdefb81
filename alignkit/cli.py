"""The `alignkit` command: parse, call, render. Nothing else lives here.

Start-up must stay light (`alignkit --help` well under a second): torch, transformers, trl, peft,
datasets and bitsandbytes are imported inside the commands that use them, never at module level.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from alignkit import __version__
from alignkit.config import docs as field_docs

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

RUN_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}
OVERRIDES_HELP = (
    "Any config key can follow as an override: --learning_rate=1e-5, --lora.r=32, --report_to=wandb "
    "(values are YAML: 3e-5, true, [a, b]). A bare .yaml path is a config file (the handbook's form). "
    "Layers, lowest first: defaults < recipe < profile < --config files < overrides. "
    "All keys: `alignkit config fields --task sft|dpo`."
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


# --------------------------------------------------------------------------- sft / dpo


def _run_command(task: str, ctx: typer.Context, recipe, profile, config, num_gpus, num_nodes, dry_run, as_json,
                 overwrite, push_to_hub) -> None:
    from alignkit.commands import train as train_cmd

    code = train_cmd.run(task, recipe=recipe, profile=profile, config_files=[str(c) for c in config or []],
                         extra=list(ctx.args), num_gpus=num_gpus, num_nodes=num_nodes, dry_run=dry_run,
                         as_json=as_json, overwrite=overwrite, push_to_hub=push_to_hub, argv=sys.argv)
    raise typer.Exit(code)


_RECIPE = typer.Option(None, "--recipe", "-r", help="Shipped recipe (see `alignkit recipes list`).")
_PROFILE = typer.Option(None, "--profile", "-p",
                        help="full | lora | qlora | lora-zero3 | cpu, or a stack such as qlora,cpu "
                        "(default: full).")
_CONFIG = typer.Option(None, "--config", "-c", help="Your YAML, layered over recipe and profile (repeatable).")
_NUM_GPUS = typer.Option(None, "--num-gpus", "--num-processes",
                         help="Processes per node (default: GPUs visible; 1 on the cpu profile).")
_NUM_NODES = typer.Option(None, "--num-nodes", help="Machines (default 1).")
_DRY = typer.Option(False, "--dry-run", help="Print the plan and the exact command; start nothing.")
_JSON = typer.Option(False, "--json", help="With --dry-run: one JSON object on stdout.")
_OVERWRITE = typer.Option(False, "--overwrite",
                          help="Start over in an output dir that holds a different run (deletes its checkpoints).")
_PUSH = typer.Option(False, "--push-to-hub", help="Push the result to the Hub (checks for a token first).")


@app.command(context_settings=RUN_CONTEXT, epilog=field_docs.epilog("sft", OVERRIDES_HELP))
def sft(ctx: typer.Context, recipe: Optional[str] = _RECIPE, profile: Optional[str] = _PROFILE,
        config: Optional[List[Path]] = _CONFIG, num_gpus: Optional[int] = _NUM_GPUS,
        num_nodes: Optional[int] = _NUM_NODES, dry_run: bool = _DRY, as_json: bool = _JSON,
        overwrite: bool = _OVERWRITE, push_to_hub: bool = _PUSH) -> None:
    """Supervised fine-tuning (step 1): validate, write the run, launch accelerate into TRL's SFTTrainer."""
    _run_command("sft", ctx, recipe, profile, config, num_gpus, num_nodes, dry_run, as_json, overwrite, push_to_hub)


@app.command(context_settings=RUN_CONTEXT, epilog=field_docs.epilog("dpo", OVERRIDES_HELP))
def dpo(ctx: typer.Context, recipe: Optional[str] = _RECIPE, profile: Optional[str] = _PROFILE,
        config: Optional[List[Path]] = _CONFIG, num_gpus: Optional[int] = _NUM_GPUS,
        num_nodes: Optional[int] = _NUM_NODES, dry_run: bool = _DRY, as_json: bool = _JSON,
        overwrite: bool = _OVERWRITE, push_to_hub: bool = _PUSH) -> None:
    """Direct preference optimization (step 2): from an SFT model or adapter, into TRL's DPOTrainer."""
    _run_command("dpo", ctx, recipe, profile, config, num_gpus, num_nodes, dry_run, as_json, overwrite, push_to_hub)


@app.command(context_settings=RUN_CONTEXT, epilog=OVERRIDES_HELP)
def validate(
    ctx: typer.Context,
    recipe: Optional[str] = _RECIPE,
    task: Optional[str] = typer.Option(None, "--task", "-t", help="sft or dpo (default: both of the recipe)."),
    profile: Optional[str] = _PROFILE,
    config: Optional[List[Path]] = _CONFIG,
    num_gpus: Optional[int] = _NUM_GPUS,
    num_nodes: Optional[int] = _NUM_NODES,
) -> None:
    """Check a config or recipe and report every problem at once (exit 2 if any)."""
    from alignkit.commands import train as train_cmd

    train_cmd.validate(recipe=recipe, task=task, profile=profile, config_files=[str(c) for c in config or []],
                       extra=list(ctx.args), num_gpus=num_gpus, num_nodes=num_nodes)


# --------------------------------------------------------------------------- recipes / config

recipes_app = typer.Typer(help="The shipped recipes: list, show resolved, copy to edit.", no_args_is_help=True)
app.add_typer(recipes_app, name="recipes")


@recipes_app.command("list")
def recipes_list(as_json: bool = typer.Option(False, "--json", help="JSON on stdout.")) -> None:
    """Table of recipes: name, task, variants, what each is."""
    from alignkit.commands import recipes as cmd

    cmd.list_recipes(as_json=as_json)


@recipes_app.command("show")
def recipes_show(
    name: str = typer.Argument(..., help="Recipe name."),
    task: str = typer.Option("sft", "--task", "-t", help="sft or dpo."),
    profile: Optional[str] = _PROFILE,
    raw: bool = typer.Option(False, "--raw", help="The shipped file as is, with its comments."),
    explain: bool = typer.Option(False, "--explain", help="A comment line with each key's description."),
) -> None:
    """The resolved config of a recipe, each value with the layer it came from."""
    from alignkit.commands import recipes as cmd

    cmd.show(name, task=task, profile=profile, raw=raw, explain=explain)


@recipes_app.command("copy")
def recipes_copy(
    name: str = typer.Argument(..., help="Recipe name."),
    dest: Path = typer.Argument(..., help="Directory to copy the recipe's YAML files into."),
) -> None:
    """Copy a recipe's YAML files to edit them, then run with --config."""
    from alignkit.commands import recipes as cmd

    cmd.copy(name, dest)


config_app = typer.Typer(help="The config schema: every key, its type, default and meaning.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("fields")
def config_fields(
    task: str = typer.Option("sft", "--task", "-t", help="sft or dpo."),
    section: Optional[str] = typer.Argument(None, help="model | lora | data | train | launch (default: all)."),
    search: Optional[str] = typer.Option(None, "--search", "-s", help="Only keys containing this text."),
) -> None:
    """Every config key with type, default and description."""
    from alignkit.commands import recipes as cmd

    cmd.fields(task, section, search)


@config_app.command("schema")
def config_schema(task: str = typer.Option("sft", "--task", "-t", help="sft or dpo.")) -> None:
    """The JSON schema of a run config (for editors and CI)."""
    from alignkit.commands import recipes as cmd

    cmd.schema(task)


# --------------------------------------------------------------------------- env / demo / merge


@app.command()
def env(as_json: bool = typer.Option(False, "--json", help="JSON on stdout.")) -> None:
    """Versions, GPUs and accelerate's default config, for bug reports."""
    from alignkit.commands import envinfo

    envinfo.show(as_json=as_json)


@app.command()
def demo(
    output: Path = typer.Option(Path("runs/demo"), "--output", "-o", help="Where the demo's models and summary go."),
) -> None:
    """Train a tiny chat model on this CPU, SFT then DPO, and show that DPO changed what it prefers."""
    from alignkit.commands import demo as cmd

    raise typer.Exit(cmd.run(output))


@app.command()
def merge(
    adapter: Path = typer.Argument(..., help="A LoRA/QLoRA adapter dir (e.g. an SFT output)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where the merged full model is written."),
    dtype: str = typer.Option("bfloat16", "--dtype", help="Dtype of the merged weights (bfloat16, float16, float32)."),
) -> None:
    """Merge a LoRA/QLoRA adapter into its base (dequantized) and save a full model."""
    from alignkit.commands import merge as cmd

    cmd.run(adapter, output, dtype)


# --------------------------------------------------------------------------- subcommand groups


# Each group's module is light at import: heavy imports live inside its commands.
from alignkit.commands import aif as _aif_cmd  # noqa: E402
from alignkit.commands import eval as _eval_cmd  # noqa: E402
from alignkit.commands import mix as _mix_cmd  # noqa: E402
from alignkit.commands import plan as _plan_cmd  # noqa: E402
from alignkit.commands import slurm as _slurm_cmd  # noqa: E402

app.add_typer(_mix_cmd.app, name="mix")
app.add_typer(_eval_cmd.app, name="eval")
app.add_typer(_slurm_cmd.app, name="slurm")
app.add_typer(_aif_cmd.app, name="aif")
app.command("report")(_eval_cmd.report)
_plan_cmd.register(app)


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every AlignkitError becomes its message and exit code, no traceback
    (ALIGNKIT_DEBUG=1 shows one)."""
    from alignkit.errors import EXIT_INTERRUPTED, EXIT_RUNTIME, AlignkitError

    try:
        app(args=argv, prog_name="alignkit")
    except AlignkitError as exc:
        from alignkit import ui

        ui.print_error(exc)
        if ui.debug_enabled():
            raise
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # a bug in alignkit: say so plainly
        from alignkit import ui

        if ui.debug_enabled():
            raise
        from rich.markup import escape

        ui.err_console().print(
            f"[bold red]internal error:[/bold red] {type(exc).__name__}: {escape(ui.redact(str(exc)))}\n"
            "This is a bug in alignkit. Re-run with ALIGNKIT_DEBUG=1 for the traceback and report it."
        )
        sys.exit(EXIT_RUNTIME)


if __name__ == "__main__":
    main()
