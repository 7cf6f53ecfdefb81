"""Job arrays: one ``JobInfo`` per task (``123_0``, ``123_1``...), from the controller while it remembers
them, then the jobcomp file or sacct, then the task's run status file (the registry knows each task's run).

``scontrol -o show job 123`` prints one line per task of array 123 that has started (each with its own
JobId and ``ArrayJobId=123 ArrayTaskId=N``) and one line for the tasks still pending together
(``ArrayTaskId=2-5%2``): the pending ones are listed one row each.
Standard library only: imported by the CLI.
"""

from __future__ import annotations

import json
import re
from typing import Any

from alignkit.launch.slurm import logs, query
from alignkit.launch.slurm.query import JobInfo

# a run's state (status.json) as a Slurm state, for tasks Slurm no longer knows
_RUN_STATES = {"completed": "COMPLETED", "failed": "FAILED", "preempted": "PREEMPTED", "running": "UNKNOWN"}


def split_task_id(job_id: str) -> tuple[str, str | None]:
    """``123_4`` -> (``123``, ``4``); ``123`` -> (``123``, None)."""
    base, _, task = str(job_id).partition("_")
    return base, (task or None)


def expand_task_ids(spec: str) -> list[int]:
    """``2-5%2`` / ``[1,3,7-8]`` -> the task ids (the ``%cap`` and step ``:n`` honoured, brackets dropped)."""
    spec = (spec.split() or [""])[0].strip("[]").split("%", 1)[0]  # the value alone, whatever follows it
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        if not m:
            continue
        lo = int(m[1])
        hi = int(m[2]) if m[2] else lo
        step = int(m[3]) if m[3] else 1
        out += list(range(lo, min(hi, lo + 100000) + 1, max(step, 1)))
    return out


def _scontrol_tasks(array_id: str) -> dict[int, JobInfo]:
    res = query.run(["scontrol", "-o", "show", "job", array_id])
    if res.returncode != 0:
        return {}
    found: dict[int, JobInfo] = {}
    for line in res.stdout.strip().splitlines():
        kv = query.parse_keyvals(line, query.SCONTROL_KEYS)
        if kv.get("ArrayJobId") != array_id:
            continue
        spec = (kv.get("ArrayTaskId", "").split() or [""])[0]
        for task in expand_task_ids(spec):
            info = query.info_from_scontrol(kv, f"{array_id}_{task}")
            if not spec.isdigit():  # the pending tasks' shared record: its StdOut names no task
                info.stdout = None
            found[task] = info
    return found


def _jobcomp_task(array_id: str, task: int) -> JobInfo | None:
    """A finished task from the jobcomp file, when its lines name the array (newer Slurm writes
    ``ArrayJobId``/``ArrayTaskId``)."""
    lines = query.jobcomp_lines()
    if lines is None:
        return None
    keys = [*query.JOBCOMP_KEYS, "ArrayJobId", "ArrayTaskId", "ArrayTaskStr"]
    found = None
    for line in lines:
        if f"ArrayJobId={array_id} " not in line:
            continue
        kv = query.parse_keyvals(line, keys)
        if kv.get("ArrayJobId") == array_id and kv.get("ArrayTaskId") == str(task):
            found = kv
    if found is None:
        return None
    return JobInfo(job_id=f"{array_id}_{task}", name=found.get("Name", ""), state=found.get("JobState", "UNKNOWN"),
                   time_limit=found.get("TimeLimit", ""), nodes=found.get("NodeCnt", ""),
                   node_list=found.get("NodeList", ""), exit_code=found.get("ExitCode", ""), source="jobcomp")


def _from_run(job_id: str, output_dir: str | None) -> JobInfo | None:
    """What the task's run says of itself, once Slurm has forgotten the task."""
    if not output_dir:
        return None
    from alignkit.launch.slurm import layout

    try:
        state = json.loads(layout.status_file(output_dir).read_text()).get("state")
    except (OSError, ValueError, AttributeError):
        return None
    return JobInfo(job_id=job_id, state=_RUN_STATES.get(str(state), "UNKNOWN"), source="run", output_dir=output_dir)


def array_tasks(array_id: str, rec: dict[str, Any] | None) -> list[JobInfo]:
    """Every task of array ``array_id``: those the registry record lists (all submitted tasks), else those
    Slurm shows. Empty when ``array_id`` is not an array Slurm or the registry knows."""
    live = _scontrol_tasks(array_id)
    dirs: dict[str, str] = (rec or {}).get("output_dirs") or {}
    wanted = [int(t) for t in (rec or {}).get("tasks") or []] or sorted(live)
    out = []
    for task in wanted:
        job_id = f"{array_id}_{task}"
        info = (live.get(task) or _jobcomp_task(array_id, task) or query.from_sacct(job_id)
                or _from_run(job_id, dirs.get(str(task))) or JobInfo(job_id=job_id, source="registry"))
        info.output_dir = info.output_dir or dirs.get(str(task))
        pattern = info.stdout or (rec or {}).get("log")
        if pattern:
            info.stdout = logs.expand_pattern(pattern, job_id, info.name)
        out.append(info)
    return out


def task_info(job_id: str, rec: dict[str, Any] | None) -> JobInfo | None:
    """One task (``123_4``) of an array alignkit submitted, when the controller does not answer for it."""
    array_id, task = split_task_id(job_id)
    if task is None:
        return None
    dirs = (rec or {}).get("output_dirs") or {}
    info = _jobcomp_task(array_id, int(task)) or _from_run(job_id, dirs.get(task))
    if info is not None:
        info.output_dir = info.output_dir or dirs.get(task)
    return info
