"""`alignkit sweep sft|dpo|status|report`: a grid over config keys, each point an ordinary run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from alignkit import ui
from alignkit.commands import options
from alignkit.errors import Problem, UsageError

app = typer.Typer(help="A grid (or a seeded random sample of it) over any config keys; each point is one ordinary "
                  "run with its own output dir, on this machine one after another or on Slurm as one job array.",
                  no_args_is_help=True, rich_markup_mode=None)

_EPILOG = ("Example: alignkit sweep dpo --recipe zephyr-7b-beta --profile full --output runs/scan "
           "--grid loss_type=sigmoid,ipo --grid beta=0.01,0.1 --max_steps=500 --dry-run. Values are YAML, as in "
           "overrides (commas inside [..] do not split). Any other --key=value applies to every point. "
           "Re-running the same command skips finished points and resumes the interrupted one. "
           "See docs/sweep.md.")

Output = Annotated[Optional[str], typer.Option(
    "--output", "-o", help="The sweep dir: sweep.yaml and one run dir per point (default: the recipe's "
    "output_dir + '-sweep').")]
Grid = Annotated[Optional[List[str]], typer.Option(
    "--grid", "-g", help="key=v1,v2,... (repeatable; every combination is a point).")]
Random = Annotated[Optional[int], typer.Option("--random", help="Only N points of the grid, drawn with --seed.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the --random draw (the training seed of every point: --train.seed=N).")]
Slurm = Annotated[bool, typer.Option("--slurm", help="Submit the points as one Slurm job array.")]
Nodes = Annotated[int, typer.Option("--nodes", "-N", help="With --slurm: nodes per point.")]
GpusPerNode = Annotated[Optional[int], typer.Option(
    "--gpus-per-node", "-G", help="With --slurm: processes per node (GPUs; CPU processes on a cpu profile).")]
Eval = Annotated[bool, typer.Option(
    "--eval", help="After each point: its offline eval on the test split (eval loss for SFT, preference accuracy "
    "for DPO), shown in `sweep status`/`report`. On Slurm: `alignkit sweep eval SWEEP_DIR` afterwards.")]
EvalLimit = Annotated[Optional[int], typer.Option("--eval-limit", min=1, help="Only the first N test rows.")]
MaxConcurrent = Annotated[Optional[int], typer.Option(
    "--max-concurrent", help="With --slurm: points running at once (sbatch --array=...%N).")]


def _esc(value) -> str:
    from rich.markup import escape

    return escape(str(value))


def _launch(task: str, ctx: typer.Context, *, recipe, profile, config, output, grid, random, seed, num_gpus,
            num_nodes, dry_run, as_json, overwrite, slurm, nodes, gpus_per_node, max_concurrent, job_name,
            partition, time, account, qos, constraint, exclusive, cpus_per_task, sbatch_arg, env_setup,
            signal_lead, evaluate=False, eval_limit=None) -> int:
    from alignkit.sweep import plan as sweep_plan

    if as_json and not dry_run:
        raise UsageError(Problem("--json", "only goes with --dry-run", "add --dry-run"))
    if not grid:
        raise UsageError(Problem("--grid", "no grid given", "pass --grid key=v1,v2 (repeatable)"))
    if slurm and evaluate:
        raise UsageError(Problem("--eval", "runs after each point on this machine",
                                 "drop --eval and run `alignkit sweep eval SWEEP_DIR` once the job array is done"))
    if slurm:
        if gpus_per_node is None:
            raise UsageError(Problem("--gpus-per-node", "is required with --slurm",
                                     "pass the processes per node of each point, e.g. --gpus-per-node 8"))
        if num_gpus is not None or num_nodes is not None:
            raise UsageError(Problem("--num-gpus/--num-nodes", "are for local sweeps",
                                     "with --slurm use --gpus-per-node and --nodes"))
        num_gpus, num_nodes = gpus_per_node, nodes
    elif any(v is not None for v in (gpus_per_node, max_concurrent, job_name, partition, time, account, qos,
                                      constraint, cpus_per_task, env_setup, signal_lead)) or sbatch_arg or exclusive:
        raise UsageError(Problem("--slurm", "Slurm options were given without --slurm",
                                 "add --slurm to submit a job array, or drop them"))
    spec = sweep_plan.SweepSpec(task=task, recipe=recipe, profile=profile, config_files=[str(c) for c in config or []],
                                overrides=list(ctx.args), grid=list(grid), random=random, seed=seed, output=output,
                                num_gpus=num_gpus, num_nodes=num_nodes, slurm=slurm)
    sp = sweep_plan.plan_sweep(spec, dry_run=dry_run)
    opts = None
    if slurm:
        from alignkit.sweep import slurm as sweep_slurm

        opts = sweep_slurm.ArrayOptions(
            nodes=nodes, gpus_per_node=gpus_per_node, max_concurrent=max_concurrent, job_name=job_name,
            partition=partition, time=time, account=account, qos=qos, constraint=constraint, exclusive=exclusive,
            cpus_per_task=cpus_per_task, sbatch_args=list(sbatch_arg or []),
            env_setup=str(env_setup) if env_setup else None, signal_lead=signal_lead)
        if env_setup is not None and not Path(env_setup).is_file():
            raise UsageError(Problem("--env-setup", f"{env_setup} is not a file", "pass a shell file to source"))
    if dry_run:
        return _dry_run(sp, opts, as_json)
    from alignkit.commands import train as train_cmd
    from alignkit.sweep import runs

    train_cmd.check_hub_token(any(runs.push_to_hub(pp.plan) for pp in sp.points))
    train_cmd.render_summary(sp.points[0].plan)
    ui.info(f"[bold]sweep[/bold] of {len(sp.points)} points → {_esc(sp.sweep_dir)}")
    if opts is not None:
        return _submit(sp, opts, overwrite)
    from alignkit.sweep import local

    return local.run_sweep(sp, overwrite=overwrite, argv=list(sys.argv), say=lambda t: ui.info(_esc(t)),
                           warn=lambda t: ui.warn(_esc(t)), evaluate=evaluate, eval_limit=eval_limit)


def _dry_run(sp, opts, as_json: bool) -> int:
    from alignkit.sweep import plan as sweep_plan

    script = None
    if opts is not None:
        from alignkit.sweep import slurm as sweep_slurm

        sweep_slurm.check_same_launch(sp)
        script = sweep_slurm.render(sp, opts, list(range(len(sp.points))))
    if as_json:
        data = sp.to_json()
        if script is not None:
            data["sbatch_script"] = script
        ui.print_json(data)
        return 0
    from alignkit.commands import train as train_cmd

    train_cmd.render_summary(sp.points[0].plan)
    ui.info(f"[dim]dry run: {len(sp.points)} points into {_esc(sp.sweep_dir)}; nothing written or started[/dim]")
    lines = []
    for pp in sp.points:
        lines.append(f"{pp.point.label}")
        lines.append(f"  output dir: {pp.output_dir}")
        lines.append(f"  command:    {sweep_plan.command_text(pp, sp.spec)}")
    ui.print_out("\n".join(lines))
    if script is not None:
        ui.info(f"[dim]the job array script ({_esc(sweep_slurm.script_path(sp, opts))}):[/dim]")
        ui.print_out(script)
    return 0


def _submit(sp, opts, overwrite: bool) -> int:
    from alignkit.sweep import slurm as sweep_slurm

    sub = sweep_slurm.submit(sp, opts, overwrite=overwrite, argv=list(sys.argv), say=lambda t: ui.info(_esc(t)))
    if sub.job_id is None:
        ui.info(f"[green]every point already completed[/green] in {_esc(sp.sweep_dir)}; nothing submitted")
        return 0
    ui.info(f"[green]submitted[/green] job array {sub.job_id}: {len(sub.tasks)} points"
            + (f", at most {opts.max_concurrent} at once" if opts.max_concurrent else "")
            + (f" ({len(sub.skipped)} already completed)" if sub.skipped else ""))
    ui.info(f"  script: {_esc(sub.script)}")
    ui.info(f"  logs:   {_esc(sub.log_pattern.replace('%%', '%'))}")
    ui.info(f"  watch:  alignkit sweep status {_esc(sp.sweep_dir)}   ·   alignkit slurm status {sub.job_id}")
    ui.print_out(sub.job_id)
    return 0


def _task_command(task: str):
    def command(
        ctx: typer.Context, recipe: options.Recipe = None, profile: options.Profile = None,
        config: options.ConfigFiles = None, output: Output = None, grid: Grid = None, random: Random = None,
        seed: Seed = 0, num_gpus: options.NumGpus = None, num_nodes: options.NumNodes = None,
        dry_run: options.DryRun = False, as_json: options.Json = False, overwrite: options.Overwrite = False,
        slurm: Slurm = False, nodes: Nodes = 1, gpus_per_node: GpusPerNode = None,
        max_concurrent: MaxConcurrent = None,
        job_name: Annotated[Optional[str], typer.Option("--job-name", "-J", help="With --slurm.")] = None,
        partition: Annotated[Optional[str], typer.Option("--partition")] = None,
        time: Annotated[Optional[str], typer.Option("--time", help="Time limit per point (Slurm format).")] = None,
        account: Annotated[Optional[str], typer.Option("--account")] = None,
        qos: Annotated[Optional[str], typer.Option("--qos")] = None,
        constraint: Annotated[Optional[str], typer.Option("--constraint")] = None,
        exclusive: Annotated[bool, typer.Option("--exclusive", help="Whole nodes.")] = False,
        cpus_per_task: Annotated[Optional[int], typer.Option("--cpus-per-task")] = None,
        sbatch_arg: Annotated[Optional[List[str]], typer.Option("--sbatch-arg", help="Any other sbatch option.")] = None,
        env_setup: Annotated[Optional[Path], typer.Option("--env-setup", help="Shell file sourced in each task.")] = None,
        signal_lead: Annotated[Optional[int], typer.Option("--signal-lead")] = None,
        evaluate: Eval = False, eval_limit: EvalLimit = None,
    ) -> None:
        code = _launch(task, ctx, recipe=recipe, profile=profile, config=config, output=output, grid=grid,
                       random=random, seed=seed, num_gpus=num_gpus, num_nodes=num_nodes, dry_run=dry_run,
                       as_json=as_json, overwrite=overwrite, slurm=slurm, nodes=nodes, gpus_per_node=gpus_per_node,
                       max_concurrent=max_concurrent, job_name=job_name, partition=partition, time=time,
                       account=account, qos=qos, constraint=constraint, exclusive=exclusive,
                       cpus_per_task=cpus_per_task, sbatch_arg=sbatch_arg, env_setup=env_setup,
                       signal_lead=signal_lead, evaluate=evaluate, eval_limit=eval_limit)
        raise typer.Exit(code)

    command.__doc__ = (f"Sweep {task.upper()} runs over a grid: validate every point, then train them here one "
                       "after another (or --slurm: one job array).")
    return command


def status_command(
    sweep_dir: Annotated[Path, typer.Argument(metavar="SWEEP_DIR", help="The --output of the sweep.")],
    as_json: options.JsonOpt = False,
) -> None:
    """Each point: swept values, state, steps, final train/eval loss, reward accuracy (DPO)."""
    from alignkit.sweep import status as sweep_status

    m, rows = sweep_status.sweep_status(sweep_dir)
    if as_json:
        ui.print_json({"task": m.task, "grid": m.grid, "slurm": m.slurm, "points": [r.to_json() for r in rows]})
        return
    header, table = sweep_status.table(m, rows)
    ui.print_table(header, table)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    ui.info(f"{len(rows)} points: " + ", ".join(f"{n} {s}" for s, n in counts.items())
            + (f" · job array {m.slurm['job_id']}" if m.slurm else ""))


def eval_command(
    sweep_dir: Annotated[Path, typer.Argument(metavar="SWEEP_DIR", help="The --output of the sweep.")],
    eval_limit: EvalLimit = None,
    again: Annotated[bool, typer.Option("--again", help="Evaluate points that already have results too.")] = False,
) -> None:
    """Each completed point's offline eval on its test split (eval loss for SFT, preference accuracy and the
    implicit reward for DPO), into <point>/eval/; `sweep status` and `report` show it."""
    from alignkit.sweep import evaluate, status as sweep_status

    m, rows = sweep_status.sweep_status(sweep_dir)
    done = [r for r in rows if r.state == "completed"]
    if not done:
        raise UsageError(Problem(str(sweep_dir), "no point has completed yet", "wait for the sweep, or check "
                                 "`alignkit sweep status`"))
    failed = []
    for r in done:
        if evaluate.results_path(r.output_dir, m.task).is_file() and not again:
            ui.info(f"p{r.index:02d}: already evaluated ({_esc(evaluate.results_path(r.output_dir, m.task))})")
            continue
        ui.info(f"p{r.index:02d}: offline eval ({evaluate.BENCH[m.task]})")
        code = evaluate.evaluate_point(r.output_dir, m.task, limit=eval_limit)
        if code == 130:
            raise typer.Exit(130)
        if code:
            failed.append(f"p{r.index:02d}")
    if len(done) < len(rows):
        ui.info(f"{len(rows) - len(done)} point(s) not completed yet: not evaluated")
    if failed:
        ui.warn(f"the eval failed for {', '.join(failed)}")
        raise typer.Exit(1)


def report_command(
    sweep_dir: Annotated[Path, typer.Argument(metavar="SWEEP_DIR", help="The --output of the sweep.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Default: SWEEP_DIR/report.")] = None,
) -> None:
    """The status table as markdown, each point's curves and each final metric against each swept value (PNG)."""
    from alignkit.sweep import report as sweep_report

    res = sweep_report.make_report(sweep_dir, output)
    ui.print_out(res["table"].rstrip("\n"))
    ui.info(f"[green]wrote[/green] {_esc(res['report'])}")
    for p in res["plots"]:
        ui.info(f"  {_esc(p)}")


def register(root: typer.Typer) -> None:
    for task in ("sft", "dpo"):
        app.command(task, context_settings=options.RUN_CONTEXT, epilog=_EPILOG)(_task_command(task))
    app.command("status")(status_command)
    app.command("eval")(eval_command)
    app.command("report")(report_command)
    root.add_typer(app, name="sweep")
