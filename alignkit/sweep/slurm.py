"""Run a planned sweep on Slurm as one job array: task ``i`` trains point ``i`` (``--array=0-(N-1)%cap``).

Every point is claimed, preflighted and its run files written here, as ``alignkit slurm submit`` does for
one run; completed points are left out of the array. The script and the logs (``slurm-<array>_<task>.out``)
go into ``SWEEP_DIR/slurm/``; the manifest records the array's id. Each task is requeued and resumed after
preemption like a single job (alignkit.launch.slurm.array).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from alignkit.errors import ConfigError, Problem
from alignkit.sweep import manifest as manifest_mod
from alignkit.sweep import runs
from alignkit.sweep.plan import SweepPlan

SLURM_SUBDIR = "slurm"


@dataclass
class ArrayOptions:
    nodes: int = 1
    gpus_per_node: int = 1
    max_concurrent: int | None = None
    job_name: str | None = None
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    exclusive: bool = False
    cpus_per_task: int | None = None
    sbatch_args: list[str] = field(default_factory=list)
    env_setup: str | None = None
    signal_lead: int | None = None


@dataclass
class Submitted:
    job_id: str | None  # None: every point already completed, nothing submitted
    script: Path
    log_pattern: str
    tasks: list[int]
    skipped: list[int]


def check_same_launch(sp: SweepPlan) -> None:
    """Every task of an array runs the same launch (world size, profile, environment); a swept key that
    changes it cannot share an array."""
    first = runs.launch_shape(sp.points[0].plan)
    problems = []
    for pp in sp.points[1:]:
        shape = runs.launch_shape(pp.plan)
        if shape != first:
            what = ", ".join(k for k in first if first[k] != shape.get(k))
            problems.append(Problem(f"[{pp.point.label}]", f"launches differently from point 0 ({what})",
                                    "sweep keys that change the launch (processes, nodes, profile, launcher) in "
                                    "separate sweeps, or run this one without --slurm"))
    if problems:
        raise ConfigError(problems, title="invalid sweep")


def job_name(sp: SweepPlan, opts: ArrayOptions) -> str:
    return opts.job_name or f"alignkit-sweep-{sp.spec.task}-{sp.sweep_dir.name}"


def render(sp: SweepPlan, opts: ArrayOptions, indices: list[int]) -> str:
    from alignkit.launch import slurm

    return slurm.render_array_sbatch(
        sp.points[0].plan, run_dirs=[str(runs.run_dir(pp.output_dir)) for pp in sp.points], indices=indices,
        max_concurrent=opts.max_concurrent, job_name=job_name(sp, opts), nodes=opts.nodes,
        gpus_per_node=opts.gpus_per_node, log_dir=sp.sweep_dir / SLURM_SUBDIR, partition=opts.partition,
        time=opts.time, account=opts.account, qos=opts.qos, constraint=opts.constraint, exclusive=opts.exclusive,
        extra_sbatch_args=tuple(opts.sbatch_args), env_setup=opts.env_setup, cpus_per_task=opts.cpus_per_task,
        signal_lead=opts.signal_lead)


def script_path(sp: SweepPlan, opts: ArrayOptions) -> Path:
    import re

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", job_name(sp, opts)).strip("._") or "sweep"
    return sp.sweep_dir / SLURM_SUBDIR / f"{safe}.sbatch"


def submit(sp: SweepPlan, opts: ArrayOptions, *, overwrite: bool, argv: list[str],
           say: Callable[[str], None]) -> Submitted:
    """Claim, preflight and write every point, write the array script, submit it, record it."""
    from alignkit.launch import slurm

    check_same_launch(sp)
    render(sp, opts, list(range(len(sp.points))))  # a value that cannot go into the script: refused first
    busy = slurm.busy_jobs(str(sp.sweep_dir))
    if busy:
        raise ConfigError(Problem(str(sp.sweep_dir), f"job {', '.join(busy)} already runs this sweep",
                                  "wait for it, cancel it (`alignkit slurm cancel JOBID`), or choose another --output"))
    previous = manifest_mod.claim(sp.sweep_dir, sp.manifest, overwrite=overwrite)
    if previous is not None:
        sp.manifest.created = previous.created
    from alignkit import ui
    from alignkit.sweep.local import prepare_all

    with ui.stdout_to_stderr():  # stdout is the job id alone
        indices, skipped = prepare_all(sp, overwrite=overwrite, argv=argv, write=True)
    manifest_mod.write(sp.sweep_dir, sp.manifest)
    for pp in sp.points:
        done = pp.point.index in skipped
        say(f"{pp.point.label}: {'already completed' if done else 'ready'} in {pp.output_dir}")
    path = script_path(sp, opts)
    log = slurm.array_log_pattern(sp.sweep_dir / SLURM_SUBDIR)
    if not indices:
        return Submitted(None, path, log, [], skipped)
    slurm.write_script(path, render(sp, opts, indices))
    record = {"array": True, "sweep": True, "output_dir": str(sp.sweep_dir), "log": log, "tasks": indices,
              "output_dirs": {str(pp.point.index): str(pp.output_dir) for pp in sp.points},
              "task": sp.spec.task, "job_name": job_name(sp, opts), "nodes": opts.nodes,
              "gpus_per_node": opts.gpus_per_node}
    job_id = slurm.submit(path, record=record)
    sp.manifest.slurm = {"job_id": job_id, "script": str(path), "log": log, "tasks": indices}
    manifest_mod.write(sp.sweep_dir, sp.manifest)
    return Submitted(job_id, path, log, indices, skipped)
