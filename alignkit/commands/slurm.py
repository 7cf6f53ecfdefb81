"""`alignkit slurm submit|status|cancel|logs`: the same launch as `alignkit sft/dpo`, on a Slurm cluster."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from alignkit import ui
from alignkit.errors import ConfigError, Problem, UsageError

app = typer.Typer(help="The same launch on a Slurm cluster, multi-node, preemption-safe.", no_args_is_help=True,
                  rich_markup_mode=None)

_RUN_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}
_EPILOG = ("Any config key can follow as an override, as with `alignkit sft`: --learning_rate=1e-5, "
           "--output_dir=/shared/runs/x. The output dir must be on a filesystem every node sees. "
           "The job is requeueable: USR1 arrives --signal-lead seconds before --time runs out, the trainer "
           "saves a checkpoint, the job requeues itself and resumes from it.")


def _esc(value) -> str:
    """User text (paths, job names) must not be read as rich markup."""
    from rich.markup import escape

    return escape(str(value))


@app.command(context_settings=_RUN_CONTEXT, epilog=_EPILOG)
def submit(
    ctx: typer.Context,
    task: str = typer.Option(..., "--task", "-t", help="sft, dpo, orpo or cpt."),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="Shipped recipe (`alignkit recipes list`)."),
    config: Optional[List[Path]] = typer.Option(None, "--config", "-c", help="Your YAML (repeatable)."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="full | lora | qlora | lora-zero3 | cpu ..."),
    nodes: int = typer.Option(1, "--nodes", "-N", help="Nodes (one task per node)."),
    gpus_per_node: int = typer.Option(..., "--gpus-per-node", "-G",
                                      help="Processes per node: GPUs (on a cpu profile: CPU processes, no GPU "
                                      "requested)."),
    job_name: Optional[str] = typer.Option(None, "--job-name", "-J", help="Default: alignkit-<task>-<output dir>."),
    partition: Optional[str] = typer.Option(None, "--partition"),
    time: Optional[str] = typer.Option(None, "--time", help="Time limit (Slurm format, e.g. 2:00:00)."),
    account: Optional[str] = typer.Option(None, "--account"),
    qos: Optional[str] = typer.Option(None, "--qos"),
    constraint: Optional[str] = typer.Option(None, "--constraint"),
    exclusive: bool = typer.Option(False, "--exclusive", help="Whole nodes."),
    cpus_per_task: Optional[int] = typer.Option(None, "--cpus-per-task", help="CPUs for each node's launcher."),
    sbatch_arg: Optional[List[str]] = typer.Option(None, "--sbatch-arg",
                                                   help="Any other sbatch option, e.g. --sbatch-arg=--mem=500G "
                                                   "(repeatable)."),
    env_setup: Optional[Path] = typer.Option(None, "--env-setup",
                                             help="Shell file sourced in the job first (module load ..., "
                                             "source venv/bin/activate)."),
    signal_lead: Optional[int] = typer.Option(None, "--signal-lead",
                                              help="Seconds before the time limit to checkpoint and requeue "
                                              "(default 300, less for short limits)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the script; write and submit nothing."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Start over in an output dir that holds a different run."),
) -> None:
    """Validate like `alignkit sft/dpo/orpo/cpt`, write the run and an sbatch script into <output_dir>/alignkit/, submit."""
    from alignkit.commands import train as train_cmd
    from alignkit.launch import build, slurm
    from alignkit.launch.slurm import layout

    from alignkit.config.tasks import check_task_option

    check_task_option(task)
    if nodes < 1:
        raise UsageError(Problem("--nodes", f"must be at least 1, got {nodes}", "pass --nodes N with N >= 1"))
    if gpus_per_node < 1:
        raise UsageError(Problem("--gpus-per-node", f"must be at least 1, got {gpus_per_node}",
                                 "pass the processes per node (GPUs; CPU processes on a cpu profile)"))
    if env_setup is not None and not env_setup.is_file():
        raise UsageError(Problem("--env-setup", f"{env_setup} is not a file",
                                 "pass a shell file to source, e.g. one with `module load cuda` and "
                                 "`source /path/venv/bin/activate`"))
    plan = build.plan_run(task, recipe=recipe, profile=profile, config_files=[str(c) for c in config or []],
                          overrides=list(ctx.args), num_gpus=gpus_per_node, num_nodes=nodes, dry_run=dry_run,
                          via_accelerate=True)
    if not dry_run:
        train_cmd.check_hub_token(plan.config.train.push_to_hub, " before submitting (the job inherits it; it is "
                                  "never written into the script)")
    out_dir = Path(plan.output_dir)
    name = job_name if job_name is not None else f"alignkit-{task}-{out_dir.name}"
    script_path = layout.script_path(out_dir, name)
    log_dir = layout.log_dir(out_dir)
    # render first: a value that cannot go into the script is refused before anything is written
    text = slurm.render_sbatch(
        plan, job_name=name, nodes=nodes, gpus_per_node=gpus_per_node, partition=partition, time=time,
        account=account, qos=qos, constraint=constraint, exclusive=exclusive,
        extra_sbatch_args=tuple(sbatch_arg or ()), env_setup=str(env_setup) if env_setup else None,
        log_dir=log_dir, run_file=layout.run_file(out_dir), cpus_per_task=cpus_per_task, signal_lead=signal_lead)
    train_cmd.render_summary(plan)
    if dry_run:
        ui.info(f"[dim]dry run: would write {_esc(script_path)} and submit it; the log would be "
                f"{_esc(slurm.log_file(log_dir, '<jobid>'))}[/dim]")
        ui.print_out(text)
        return

    busy = slurm.busy_jobs(str(out_dir))
    if busy:
        raise ConfigError(Problem(str(out_dir), f"job {', '.join(busy)} already uses this output dir",
                                  "wait for it, cancel it (`alignkit slurm cancel JOBID`), or choose another "
                                  "--output_dir"))
    from alignkit.launch import spawn
    from alignkit.launch.preflight import preflight
    from alignkit.launch.run import RunDir

    claim = spawn.claim_output_dir(plan, overwrite)
    try:
        if claim.resume and RunDir.of(plan.output_dir).read_status().get("state") == "completed":
            # as `alignkit sft/dpo`: the same run already finished; nothing to submit
            ui.info(f"[green]already completed[/green]: {_esc(out_dir)} holds this run's final model (pass "
                    "--overwrite to train again); nothing submitted")
            return
        # the checks `alignkit sft/dpo` make before launching (model dir, chat template, the data loaded and
        # validated as the trainer loads it), here and now rather than in the job's log after the queue wait
        with ui.stdout_to_stderr():
            train_cmd.build_demo_assets_if_used(plan.config)
            try:
                preflight(plan)
            except BaseException:
                claim.undo()  # refused: nothing it created stays (the output dir, the run dir, a data build)
                raise
        spawn.write_run_files(plan, resume=claim.resume, argv=list(sys.argv))
        RunDir.of(out_dir).clear_status()
        slurm.write_script(script_path, text)
    finally:
        claim.lock_path.unlink(missing_ok=True)
    if claim.note:
        ui.warn(claim.note)
    job_id = slurm.submit(script_path, record={"output_dir": str(out_dir), "log": slurm.log_pattern(log_dir),
                                               "task": task, "job_name": name, "nodes": nodes,
                                               "gpus_per_node": gpus_per_node})
    log = slurm.log_file(log_dir, job_id)
    verb = "resumes" if claim.resume else "starts"
    ui.info(f"[green]submitted[/green] job {job_id} ({_esc(name)}): {task} {verb} in {_esc(out_dir)}")
    ui.info(f"  script: {_esc(script_path)}")
    ui.info(f"  log:    {_esc(log)}")
    ui.info(f"  watch:  alignkit slurm status {job_id}   ·   alignkit slurm logs {job_id} --follow")
    ui.print_out(job_id)


def _progress_text(p: dict | None) -> str:
    if not p:
        return ""
    step = p.get("step")
    total = p.get("max_steps")
    parts = []
    if step is not None:
        parts.append(f"step {step}" + (f"/{total}" if total else ""))
    if p.get("epoch") is not None:
        parts.append(f"epoch {p['epoch']:.3g}")
    text = ", ".join(parts) or "running"
    if p.get("loss") is not None:
        text += f", loss {p['loss']:.4g}" if isinstance(p["loss"], (int, float)) else f", loss {p['loss']}"
    return text


@app.command()
def status(
    job_id: Optional[str] = typer.Argument(None, metavar="[JOBID]", help="A job id; without it, your queued jobs."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """State, elapsed time, nodes and the run's last logged step/loss (a job array: one row per task)."""
    from alignkit.launch import slurm

    jobs = slurm.status(job_id)
    array = job_id is not None and "_" not in job_id and any("_" in j.job_id for j in jobs)
    if as_json:
        ui.print_json([j.to_json() for j in jobs] if job_id is None or array else jobs[0].to_json())
        return
    if job_id is None and not jobs:
        ui.print_out("no jobs in the queue")
        return
    header = ("JOBID", "NAME", "STATE", "ELAPSED", "NODES", "WHERE", "PROGRESS")
    rows = []
    for j in jobs:
        where = j.node_list or (f"({j.reason})" if j.reason and j.reason != "None" else "")
        state = j.state + (f" (restarts {j.restarts})" if j.restarts else "")
        rows.append((j.job_id, j.name, state, j.elapsed, j.nodes, where, _progress_text(j.progress)))
    ui.print_table(header, rows)  # piped: one tab-separated line per job
    if job_id is not None and not array:
        j = jobs[0]
        if j.output_dir:
            ui.print_out(f"output dir: {j.output_dir}")
        if j.stdout:
            ui.print_out(f"log: {j.stdout}")
        if j.exit_code and j.exit_code not in ("0:0", "") and not j.active:
            ui.print_out(f"exit code: {j.exit_code}")


@app.command()
def cancel(job_id: str = typer.Argument(..., metavar="JOBID")) -> None:
    """Cancel a job, a job array (every task) or one task (123_4) and confirm Slurm did (exit 1 for an unknown
    or finished job)."""
    from alignkit.launch import slurm

    info = slurm.cancel(job_id)
    ui.print_out(f"job {info.job_id}: {info.state}")


@app.command()
def logs(
    job_id: str = typer.Argument(..., metavar="JOBID"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the job ends."),
) -> None:
    """Print a job's log (all nodes, one file; requeued starts append to it); a job array's id: every task's."""
    from alignkit.launch import slurm
    from alignkit.secrets import redact

    for chunk in slurm.job_logs(job_id, follow=follow):
        sys.stdout.write(redact(chunk))
        sys.stdout.flush()


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="slurm")
