"""`alignkit sft|dpo|orpo|cpt|validate`: resolve, plan, show or launch."""

from __future__ import annotations

import os
import shlex
import sys
from typing import Annotated, Any, Optional

import typer

from alignkit import ui
from alignkit.commands import options
from alignkit.errors import EXIT_PREEMPTED, ConfigError, Problem
from alignkit.launch.spec import LaunchPlan

HUB_TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# the plan's notes validate repeats: how the profile was chosen and what it changed, what needs a GPU, a model
# dir still to be written (the rest describe the launch, which validate does not show)
NOTES_IN_VALIDATE = ("profile ", "train.", "model.", "needs a GPU")


def _overrides(extra: list[str], push_to_hub: bool) -> list[str]:
    return extra + (["--push_to_hub=true"] if push_to_hub else [])


def plan(task: str, *, recipe, profile, config_files, extra, num_gpus, num_nodes, dry_run, push_to_hub=False):
    from alignkit.launch.build import plan_run

    return plan_run(task, recipe=recipe, profile=profile, config_files=config_files,
                    overrides=_overrides(extra, push_to_hub), num_gpus=num_gpus, num_nodes=num_nodes,
                    dry_run=dry_run)


def hub_token_problems(push_to_hub: bool, when: str = "") -> list[Problem]:
    """A run that pushes to the Hub needs a token before it starts, not after hours of training."""
    if push_to_hub and not any(os.environ.get(v) for v in HUB_TOKEN_VARS):
        return [Problem("train.push_to_hub", "is on (from the recipe, a config file or --push-to-hub) but no Hub "
                        "token is set", f"export HF_TOKEN=... (a write token){when}, or add --push_to_hub=false "
                        "to train without pushing")]
    return []


def check_hub_token(push_to_hub: bool, when: str = "") -> None:
    if problems := hub_token_problems(push_to_hub, when):
        raise ConfigError(problems)


def run(task: str, *, recipe, profile, config_files, extra, num_gpus, num_nodes, dry_run, as_json, overwrite,
        push_to_hub, argv) -> int:
    p = plan(task, recipe=recipe, profile=profile, config_files=config_files, extra=extra, num_gpus=num_gpus,
             num_nodes=num_nodes, dry_run=dry_run, push_to_hub=push_to_hub)
    if as_json and not dry_run:
        raise ConfigError(Problem("--json", "only goes with --dry-run", "add --dry-run"))
    token = [] if dry_run else hub_token_problems(p.config.train.push_to_hub)
    check_inputs(p, dry_run=dry_run, also=token)  # before anything is written, started or asked of the network
    if dry_run:
        if as_json:
            ui.print_json(p.to_json())
        else:
            render_summary(p)
            ui.print_out(shlex.join(p.command))
            ui.info("dry run: nothing was written or started")
        return 0
    from alignkit.launch import spawn

    render_summary(p)
    build_demo_assets_if_used(p.config)

    already = []

    def started(claim) -> None:
        if claim.note:
            ui.warn(claim.note)
        if claim.completed:
            already.append(True)
            ui.info(f"[green]already completed[/green]: {_esc(p.output_dir)} holds this run's final model "
                    "(pass --overwrite to train it again)")
            return
        verb = "resuming" if claim.resume else "starting"
        out = _esc(p.output_dir)
        ui.info(f"[bold]{verb}[/bold] {task} → {out}  (run files in {out}/alignkit/)")

    from alignkit.launch.preflight import preflight

    code = spawn.run(p, overwrite=overwrite, argv=argv, on_start=started, check=preflight)
    if already:
        return 0
    from alignkit.launch.run import RunDir

    status = RunDir.of(p.output_dir).read_status()
    if status.get("state") == "completed" and code == 130:
        code = 0  # Ctrl-C after the model was saved and the run marked complete: nothing was lost
    if status.get("state") == "preempted":
        ui.info(f"[yellow]stopped by a signal[/yellow] after saving {status.get('checkpoint')}: re-run the same "
                "command to resume")
        return EXIT_PREEMPTED
    if code == 0:
        ui.info(f"[green]done:[/green] {_esc(p.output_dir)}")
    elif code == 130:
        ui.info("[yellow]interrupted[/yellow]: re-run the same command to resume from the last checkpoint")
    else:
        ui.info(f"[red]training exited with code {code}[/red]; re-run the same command to resume from the "
                "last complete checkpoint")
    return code


def check_inputs(p: LaunchPlan, *, dry_run: bool, also: list[Problem] | None = None) -> None:
    """What this machine and the file system can tell without the network or reading data. A real run: the GPUs
    and GPU-only settings, before anything is written (the local paths and loggers are the preflight's, after the
    output dir is claimed; a refused run removes what it created). A plan (--dry-run, validate): the GPU-only
    settings as notes, the local model, tokenizer and data paths and the loggers as problems. Every problem at
    once (with ``also``, the caller's own); the notes join the plan's."""
    from alignkit.config.profiles import load_stack
    from alignkit.launch.build import detect_gpus
    from alignkit.launch.hardware import hardware_check, logger_problems
    from alignkit.launch.preflight import local_problems

    cpu = load_stack(p.profile).cpu
    hw_problems, hw_notes = hardware_check(p, dry_run=dry_run, profile_cpu=cpu)
    also = list(also or [])
    if not dry_run:  # a real run: the rest is the preflight's, once the output dir is claimed
        if hw_problems or also:
            raise ConfigError(hw_problems + also)
        return
    problems, notes = local_problems(p, planning=True)
    loggers = logger_problems(getattr(p.config.train, "report_to", None))
    if loggers and not cpu and detect_gpus() == 0:
        # a plan for another machine (a GPU profile, no GPU here): what it must have installed is a note
        notes += [f"train.report_to: {pr.message}: the training machine needs it ({pr.fix})" for pr in loggers]
        loggers = []
    if hw_problems or problems or loggers or also:
        raise ConfigError(hw_problems + problems + loggers + also)
    p.notes += notes + hw_notes


def build_demo_assets_if_used(config) -> None:
    """The tiny recipe's `demo:` paths point into a cache that is built on first use."""
    from alignkit.demo.assets import demo_root, ensure_demo_assets

    root = str(demo_root())
    paths = [config.model.model_name_or_path, *(s.path or "" for s in config.data.mixture)]
    if any(str(p).startswith(root) for p in paths):
        ensure_demo_assets()


def _esc(value: Any) -> str:
    """User-controlled text (paths, keys, `file:line` tags) must not be read as rich markup."""
    from rich.markup import escape

    return escape(str(value))


def render_summary(p: LaunchPlan) -> None:
    from rich.table import Table

    cfg = p.config
    t = Table(title=f"alignkit {p.task}", show_header=False, title_justify="left", box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")  # long paths wrap, never "…"
    t.add_row("recipe", _esc(cfg.recipe or "(none: config files)"))
    t.add_row("profile", _esc(p.profile))
    t.add_row("model", _esc(cfg.model.model_name_or_path))
    adapt = "full fine-tuning"
    if cfg.lora.enabled:
        adapt = f"LoRA r={cfg.lora.r} alpha={cfg.lora.alpha}"
        if cfg.model.load_in_4bit:
            adapt = "Q" + adapt + " (4-bit base)"
    t.add_row("adaptation", adapt)
    t.add_row("world size", f"{p.world_size} = {p.num_nodes} node(s) x {p.gpus_per_node} process(es)")
    t.add_row("global batch",
              f"{p.global_batch_size} = {p.batch.per_device_train_batch_size} per device x "
              f"{p.batch.gradient_accumulation_steps} accumulation x {p.world_size}")
    t.add_row("engine", "one process, no distributed engine" if p.direct else
              p.accelerate_config.get("distributed_type", "?") + (" (ZeRO-3)" if p.deepspeed_config else ""))
    t.add_row("output dir", _esc(p.output_dir))
    if p.overridden:
        t.add_row("overridden", _esc(", ".join(f"{k} ({v})" for k, v in p.overridden.items())))
    con = ui.err_console()
    con.print(t)
    for n in p.notes:
        ui.info(f"  [cyan]note:[/cyan] {_esc(n)}")
    for n in p.translations:
        ui.info(f"  [magenta]translated:[/magenta] {_esc(n)}")
    for w in p.warnings:
        ui.warn(w)


def validate(*, recipe, task, profile, config_files, extra, num_gpus, num_nodes) -> None:
    from alignkit.config import recipes

    tasks = [task] if task else ([f.task for f in recipes.files(recipe)] if recipe else ["sft"])
    tasks = list(dict.fromkeys(tasks))
    problems: list[Problem] = []
    for t in tasks:
        try:
            p = plan(t, recipe=recipe, profile=profile, config_files=config_files, extra=extra,
                     num_gpus=num_gpus, num_nodes=num_nodes, dry_run=True)
            check_inputs(p, dry_run=True)
        except ConfigError as exc:
            problems += [Problem(f"[{t}] {pr.where}", pr.message, pr.fix, pr.source) for pr in exc.problems]
            continue
        ui.info(f"[green]valid[/green] {t}: profile {_esc(p.profile)}, world size {p.world_size}, "
                f"global batch {p.global_batch_size}, output {_esc(p.output_dir)}")
        for n in p.notes:
            if n.startswith(NOTES_IN_VALIDATE):
                ui.info(f"  [cyan]note:[/cyan] {_esc(n)}")
        for n in p.translations:  # what the dry run says of the file's old keys, said here too
            ui.info(f"  [magenta]translated:[/magenta] {_esc(n)}")
        for w in p.warnings:
            ui.warn(w)
    if problems:
        raise ConfigError(problems)


# --------------------------------------------------------------------------- the commands


def _field_epilog(task: str) -> str:
    from alignkit.config import docs as field_docs

    return field_docs.epilog(task, options.OVERRIDES_HELP)


def _run_command(task: str, ctx: typer.Context, recipe, profile, config, num_gpus, num_nodes, dry_run, as_json,
                 overwrite, push_to_hub) -> None:
    code = run(task, recipe=recipe, profile=profile, config_files=[str(c) for c in config or []],
               extra=list(ctx.args), num_gpus=num_gpus, num_nodes=num_nodes, dry_run=dry_run, as_json=as_json,
               overwrite=overwrite, push_to_hub=push_to_hub, argv=sys.argv)
    raise typer.Exit(code)


def sft_command(ctx: typer.Context, recipe: options.Recipe = None, profile: options.Profile = None,
                config: options.ConfigFiles = None, num_gpus: options.NumGpus = None,
                num_nodes: options.NumNodes = None, dry_run: options.DryRun = False, as_json: options.Json = False,
                overwrite: options.Overwrite = False, push_to_hub: options.PushToHub = False) -> None:
    """Supervised fine-tuning (step 1): validate, write the run, launch accelerate into TRL's SFTTrainer."""
    _run_command("sft", ctx, recipe, profile, config, num_gpus, num_nodes, dry_run, as_json, overwrite, push_to_hub)


def dpo_command(ctx: typer.Context, recipe: options.Recipe = None, profile: options.Profile = None,
                config: options.ConfigFiles = None, num_gpus: options.NumGpus = None,
                num_nodes: options.NumNodes = None, dry_run: options.DryRun = False, as_json: options.Json = False,
                overwrite: options.Overwrite = False, push_to_hub: options.PushToHub = False) -> None:
    """Direct preference optimization (step 2): from an SFT model or adapter, into TRL's DPOTrainer."""
    _run_command("dpo", ctx, recipe, profile, config, num_gpus, num_nodes, dry_run, as_json, overwrite, push_to_hub)


def orpo_command(ctx: typer.Context, recipe: options.Recipe = None, profile: options.Profile = None,
                 config: options.ConfigFiles = None, num_gpus: options.NumGpus = None,
                 num_nodes: options.NumNodes = None, dry_run: options.DryRun = False, as_json: options.Json = False,
                 overwrite: options.Overwrite = False, push_to_hub: options.PushToHub = False) -> None:
    """Odds-ratio preference optimization: SFT and preference in one step from a base model, on DPO's pairs,
    without a reference model (TRL's ORPOTrainer)."""
    _run_command("orpo", ctx, recipe, profile, config, num_gpus, num_nodes, dry_run, as_json, overwrite, push_to_hub)


def cpt_command(ctx: typer.Context, recipe: options.Recipe = None, profile: options.Profile = None,
                config: options.ConfigFiles = None, num_gpus: options.NumGpus = None,
                num_nodes: options.NumNodes = None, dry_run: options.DryRun = False, as_json: options.Json = False,
                overwrite: options.Overwrite = False, push_to_hub: options.PushToHub = False) -> None:
    """Continued pretraining on a text column (data.text_column, default text), packed, into TRL's SFTTrainer."""
    _run_command("cpt", ctx, recipe, profile, config, num_gpus, num_nodes, dry_run, as_json, overwrite, push_to_hub)


def validate_command(
    ctx: typer.Context,
    recipe: options.Recipe = None,
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="sft, dpo, orpo or cpt (default: every task of the recipe).")] = None,
    profile: options.Profile = None,
    config: options.ConfigFiles = None,
    num_gpus: options.NumGpus = None,
    num_nodes: options.NumNodes = None,
) -> None:
    """Check a config or recipe and report every problem at once (exit 2 if any)."""
    validate(recipe=recipe, task=task, profile=profile, config_files=[str(c) for c in config or []],
             extra=list(ctx.args), num_gpus=num_gpus, num_nodes=num_nodes)


def register(app: typer.Typer) -> None:
    app.command("sft", context_settings=options.RUN_CONTEXT, epilog=_field_epilog("sft"))(sft_command)
    app.command("dpo", context_settings=options.RUN_CONTEXT, epilog=_field_epilog("dpo"))(dpo_command)
    app.command("orpo", context_settings=options.RUN_CONTEXT, epilog=_field_epilog("orpo"))(orpo_command)
    app.command("cpt", context_settings=options.RUN_CONTEXT, epilog=_field_epilog("cpt"))(cpt_command)
    app.command("validate", context_settings=options.RUN_CONTEXT, epilog=options.OVERRIDES_HELP)(validate_command)
