"""The sbatch script of a job array: one task per run (a sweep's points), ``--array=0-(N-1)%cap``.

It is the single-run script (``render``) with three changes:
  * ``#SBATCH --array=<indices>%<cap>`` and the log ``<log dir>/slurm-%A_%a.out`` (array id, task id);
  * ``select_run``: the batch shell picks the run dir of task ``$SLURM_ARRAY_TASK_ID`` from a list, exports it
    as ALIGNKIT_RUN_DIR and exits at once when that run already completed;
  * the launch command, the run-file check and the requeue check name ``"$ALIGNKIT_RUN_DIR"`` where the single
    script names one run dir (every run of the array must share the launch shape: the caller checks).

Each task is requeued and resumed after preemption exactly like a single job: its own ``$SLURM_JOB_ID`` is
signalled and requeued, and its port comes from that id. Standard library only: imported by the CLI.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import TYPE_CHECKING, Any, Sequence

from alignkit.errors import Problem, UsageError
from alignkit.launch.slurm import layout, render
from alignkit.launch.slurm.values import check_line, sbatch_directive, slurm_path

if TYPE_CHECKING:  # pragma: no cover
    from alignkit.launch.spec import LaunchPlan

ARRAY_LOG_NAME = "slurm-%A_%a.out"  # %A: the array's job id, %a: the task id
_SENTINEL = "ALIGNKITRUNDIRSENTINEL"  # shell-safe: shlex.join leaves it unquoted, replaced after
_RUN_DIR_WORD = '"$ALIGNKIT_RUN_DIR"'


def array_log_pattern(log_dir: str | os.PathLike) -> str:
    return slurm_path("log dir", os.path.abspath(os.fspath(log_dir))) + "/" + ARRAY_LOG_NAME


def array_spec(indices: Sequence[int], max_concurrent: int | None) -> str:
    """``0-3%2``, ``1,3%2``: the task ids, as ranges where they run on, and the concurrency cap."""
    if not indices:
        raise UsageError(Problem("--array", "no task to run", "every run of the array already completed"))
    if max_concurrent is not None and max_concurrent < 1:
        raise UsageError(Problem("--max-concurrent", f"must be at least 1, got {max_concurrent}",
                                 "pass --max-concurrent N with N >= 1"))
    ids = sorted(set(int(i) for i in indices))
    parts, start, prev = [], ids[0], ids[0]
    for i in ids[1:] + [None]:  # type: ignore[list-item]
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts) + (f"%{max_concurrent}" if max_concurrent else "")


def select_run(run_dirs: Sequence[str]) -> list[str]:
    """Pick this task's run dir; a task whose run already completed has nothing to do."""
    body = ["# this task's run: one run dir per array task id"]
    body.append("alignkit_run_dirs=(")
    for d in run_dirs:
        body.append(f"    {shlex.quote(check_line('run dir', d))}")
    body.append(")")
    body.append("alignkit_task=${SLURM_ARRAY_TASK_ID:-}")
    body.append("if [ -z \"$alignkit_task\" ] || [ \"$alignkit_task\" -ge \"${#alignkit_run_dirs[@]}\" ]; then")
    body.append("    alignkit_log \"not a task of this array (SLURM_ARRAY_TASK_ID=${alignkit_task:-unset}); "
                "submit it with sbatch --array\"")
    body.append("    exit 2")
    body.append("fi")
    body.append("ALIGNKIT_RUN_DIR=${alignkit_run_dirs[$alignkit_task]}")
    body.append("export ALIGNKIT_RUN_DIR")
    body.append("alignkit_log \"array task $alignkit_task: run dir $ALIGNKIT_RUN_DIR\"")
    body.append("if sed -n 's/.*\"state\": *\"\\([a-z_]*\\)\".*/\\1/p' \"$ALIGNKIT_RUN_DIR/"
                f"{layout.STATUS_FILE}\" 2>/dev/null | grep -qx completed; then")
    body.append("    alignkit_log \"this run already completed; nothing to do\"")
    body.append("    exit 0")
    body.append("fi")
    return body


def render_array_sbatch(
    plan: "LaunchPlan",
    *,
    run_dirs: Sequence[str | os.PathLike],
    indices: Sequence[int],
    max_concurrent: int | None = None,
    **options: Any,
) -> str:
    """The array script. ``plan`` is the plan of the run in ``run_dirs[0]`` (its launch, with that run dir
    replaced, is every task's); task ``i`` runs the run in ``run_dirs[i]``; ``indices`` are the tasks to
    submit; ``options`` are ``render.render_sbatch``'s (job name, shape, log dir, sbatch options...), all but
    ``run_file``, which is each task's own. Raises UsageError naming the option for a value that cannot go
    into the script."""
    if not run_dirs:
        raise UsageError(Problem("--array", "no run to put in the array", "give at least one run"))
    run_dirs = [os.path.abspath(os.fspath(d)) for d in run_dirs]
    extra_sbatch_args = options.get("extra_sbatch_args", ())
    for extra in (a for a in extra_sbatch_args if str(a).lstrip("-").startswith(("array", "a=", "output", "o="))):
        raise UsageError(Problem(f"--sbatch-arg={extra}", "is set by the job array itself",
                                 "drop it (--max-concurrent caps the concurrent tasks)"))
    tasks = Tasks(run_dirs, array_spec(indices, max_concurrent))
    return render.render_sbatch(plan, run_file=os.path.join(run_dirs[0], layout.RUN_FILE), variant=tasks, **options)


class Tasks(render.Variant):
    """The three changes of the module docstring: the array's directives, ``select_run``, and every path of
    the first run dir written as ``"$ALIGNKIT_RUN_DIR"``, the task's own."""

    def __init__(self, run_dirs: list[str], spec: str) -> None:
        self.run_dirs, self.spec, self.first = run_dirs, spec, run_dirs[0]
        self.node: list[str] = []

    def header(self, lines: list[str], job: render.Job) -> list[str]:
        lines = [sbatch_directive("--output", array_log_pattern(job.log_dir), where="log dir")
                 if ln.startswith("#SBATCH --output=") else ln for ln in lines]
        at = next(i for i, ln in enumerate(lines) if ln.startswith("#SBATCH --job-name")) + 1
        lines.insert(at, sbatch_directive("--array", self.spec, where="--array"))
        lines[1] = lines[1].replace("# alignkit: ", f"# alignkit job array ({len(self.run_dirs)} runs): ", 1)
        return lines

    def select_run(self) -> list[str]:
        return select_run(self.run_dirs)

    def node_command(self, job: render.Job) -> list[str]:
        def generic(tok: str) -> str:
            return tok.replace(self.first, _SENTINEL)

        launch = render.Launch([generic(t) for t in job.launch.prefix], [generic(t) for t in job.launch.flags],
                               [generic(t) for t in job.launch.target], job.port)
        self.node = render.node_command(launch, os.path.join(_SENTINEL, layout.RUN_FILE),
                                        os.path.join(_SENTINEL, layout.RUN_FILE))
        return [ln.replace(_SENTINEL, _RUN_DIR_WORD) for ln in self.node]

    def status_file_word(self, job: render.Job) -> str:
        return f"{_RUN_DIR_WORD}/{layout.STATUS_FILE}"

    def checked(self, text: str) -> str:
        if _SENTINEL in text or re.search(re.escape(self.first) + r"/", "\n".join(self.node)):
            raise UsageError(Problem("launch command", "the run dir could not be made per task",
                                     "report this: the launch command has an unexpected form"))
        return text
