"""alignkit's jobs: submit a script, remember what was submitted (the registry), and answer status,
cancel and logs for one job with what Slurm and the run's output dir know.

The registry (``~/.cache/alignkit/slurm-jobs.jsonl``, or under $ALIGNKIT_CACHE) holds one JSON line per
submitted job: id, script, cluster, output dir, log pattern and what the caller adds. Finished jobs that
the controller forgot are found through it, and so are the jobs still busy in an output dir.
Standard library only: imported by the CLI.
"""

from __future__ import annotations

import json
import os
import time as _time
from pathlib import Path
from typing import Any, Iterator

from alignkit.errors import Problem, RuntimeFailure, UsageError
from alignkit.launch.slurm import layout, logs, query, tasks
from alignkit.launch.slurm.query import JobInfo

# --------------------------------------------------------------------------- submit


def write_script(path: str | os.PathLike, text: str) -> Path:
    from alignkit.fsutil import write_atomic

    path = Path(path)
    write_atomic(path, text, mode=0o755)
    return path


def submit(script_path: str | os.PathLike, *, record: dict[str, Any] | None = None) -> str:
    """``sbatch --parsable SCRIPT`` → job id, recorded in the registry with ``record``'s fields.
    A rejection raises RuntimeFailure with Slurm's reason."""
    script_path = Path(script_path)
    res = query.run(["sbatch", "--parsable", str(script_path)])
    if res.returncode != 0:
        reason = query.slurm_error(res.stderr or res.stdout)
        raise RuntimeFailure(Problem(f"sbatch {script_path}", f"Slurm rejected the job: {reason}",
                                     _rejection_fix(reason)), title="job not submitted")
    first = (res.stdout.strip().splitlines() or [""])[-1]
    job_id = first.split(";", 1)[0].strip()
    if not job_id.isdigit():
        raise RuntimeFailure(Problem(f"sbatch {script_path}", f"unexpected answer from sbatch: {res.stdout!r}",
                                     "check `squeue --me`"), title="job not submitted")
    rec = {"job_id": job_id, "script": str(script_path.resolve()), "cluster": query.cluster_name(),
           "submitted": _time.strftime("%Y-%m-%dT%H:%M:%S"), **(record or {})}
    _record_job(rec)
    return job_id


def _rejection_fix(reason: str) -> str:
    r = reason.lower()
    if "partition" in r:
        return "choose a partition `sinfo -s` lists (--partition)"
    if "node count" in r or "node configuration" in r or "nodes" in r:
        return "ask for fewer nodes or smaller nodes (--nodes, --gpus-per-node, --constraint); see `sinfo -N -l`"
    if "time limit" in r:
        return "lower --time to the partition's limit (`sinfo -o '%P %l'`)"
    if "account" in r or "association" in r:
        return "pass an account you belong to (--account); see `sacctmgr show assoc user=$USER`"
    if "qos" in r:
        return "pass a QOS your account may use (--qos)"
    if "gres" in r or "gpu" in r:
        return "this partition has no such GPUs: check --gpus-per-node and --partition against `sinfo -o '%P %G'`"
    return "fix the option Slurm names and submit again (--dry-run shows the script)"


# --------------------------------------------------------------------------- the job registry


def registry_path() -> Path:
    """JSONL of jobs alignkit submitted (id, script, log, output dir): status and logs of finished jobs
    need it once the controller has forgotten them."""
    base = os.environ.get("ALIGNKIT_CACHE") or os.path.expanduser("~/.cache/alignkit")
    return Path(base) / "slurm-jobs.jsonl"


def _record_job(rec: dict[str, Any]) -> None:
    from alignkit.fsutil import append_jsonl

    try:
        append_jsonl(registry_path(), rec)
    except OSError:
        pass  # the registry is a convenience; the job is submitted either way


def _records() -> list[dict[str, Any]]:
    try:
        lines = registry_path().read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _recorded(job_id: str) -> dict[str, Any] | None:
    """The newest registry record of ``job_id`` on this cluster."""
    found = None
    cluster = None
    job_id = str(job_id).partition("_")[0]  # an array task (123_4) is recorded as its array (123)
    for rec in _records():
        if str(rec.get("job_id")) == job_id:
            if cluster is None:
                cluster = query.cluster_name() or ""
            if rec.get("cluster") and cluster and rec["cluster"] != cluster:
                continue
            found = rec
    return found


def busy_jobs(output_dir: str) -> list[str]:
    """Jobs alignkit submitted into ``output_dir`` that are still queued or running, as "ID (STATE)"."""
    recs = {str(rec["job_id"]): rec for rec in _records() if rec.get("output_dir") == output_dir and rec.get("job_id")}
    busy = []
    for jid, rec in recs.items():
        if rec.get("array"):
            live = [r for r in tasks.array_tasks(jid, rec) if r.active]
            if live:
                busy.append(f"{jid} ({len(live)} task{'s' if len(live) > 1 else ''} {live[0].state})")
            continue
        info = query.from_scontrol(jid)
        if info is not None and info.active:
            busy.append(f"{jid} ({info.state})")
    return busy


# --------------------------------------------------------------------------- status


def job_info(job_id: str, *, with_progress: bool = True) -> JobInfo:
    """What Slurm knows about one job: the controller while it remembers, then the jobcomp file or
    sacct. Unknown job → RuntimeFailure (exit 1)."""
    job_id = query.check_job_id(job_id)
    rec = _recorded(job_id)
    info = query.from_scontrol(job_id) or query.from_jobcomp(job_id) or query.from_sacct(job_id)
    if info is None and "_" in job_id:
        info = tasks.task_info(job_id, rec)
    if info is None:
        raise RuntimeFailure(Problem(f"job {job_id}", "Slurm does not know this job (never submitted, or "
                                     "finished long enough ago that the controller forgot it)",
                                     "list your jobs with `alignkit slurm status`"), title="unknown job")
    if rec:
        task = job_id.partition("_")[2]
        info.output_dir = info.output_dir or ((rec.get("output_dirs") or {}).get(task) if task else None) \
            or (None if rec.get("array") else rec.get("output_dir"))
        info.stdout = info.stdout or rec.get("log")
    if info.stdout:
        info.stdout = logs.expand_pattern(info.stdout, job_id, info.name)
    if info.output_dir is None:
        info.output_dir = layout.output_dir_from_script(info.extra.get("Command", ""))
    if with_progress and info.output_dir:
        info.progress = run_progress(info.output_dir)
    if with_progress and info.active and info.stdout:
        live = logs.log_progress(info.stdout)  # the trainer state is only written with checkpoints
        if live:
            info.progress = {**(info.progress or {}), **live}
    return info


def list_jobs() -> list[JobInfo]:
    """The current user's jobs in the queue (pending, running, completing)."""
    return query.from_squeue()


def status(job_id: str | None = None) -> list[JobInfo]:
    """One job (``job_id``), every task of a job array (one row each), or the queue."""
    if job_id is None:
        return list_jobs()
    job_id = query.check_job_id(job_id)
    if "_" not in job_id:
        rows = array_status(job_id)
        if rows:
            return rows
    return [job_info(job_id)]


def array_status(array_id: str, *, with_progress: bool = True) -> list[JobInfo]:
    """One JobInfo per task when ``array_id`` is a job array (Slurm says so, or alignkit submitted it as
    one); [] for a plain job."""
    rec = _recorded(array_id)
    if not (rec and rec.get("array")) and not _looks_like_array(array_id):
        return []
    rows = tasks.array_tasks(array_id, rec)
    for info in rows:
        if with_progress and info.output_dir:
            info.progress = run_progress(info.output_dir)
        if with_progress and info.active and info.stdout:
            live = logs.log_progress(info.stdout)
            if live:
                info.progress = {**(info.progress or {}), **live}
    return rows


def _looks_like_array(job_id: str) -> bool:
    res = query.run(["scontrol", "-o", "show", "job", job_id])
    return res.returncode == 0 and f"ArrayJobId={job_id} " in res.stdout and "ArrayTaskId=" in res.stdout


def run_progress(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's last logged step and loss: ``<output_dir>/trainer_state.json`` or the newest
    ``checkpoint-*/trainer_state.json``; None when nothing is logged yet."""
    out = Path(output_dir)
    candidates = [out / "trainer_state.json"]
    ckpts = []
    for p in out.glob("checkpoint-*"):
        try:
            ckpts.append((int(p.name.split("-", 1)[1]), p))
        except ValueError:
            continue
    candidates += [p / "trainer_state.json" for _, p in sorted(ckpts, reverse=True)]
    best = None
    for path in candidates:
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        history = state.get("log_history") or []
        last = next((h for h in reversed(history) if "loss" in h), None)
        step = state.get("global_step")
        entry = {"step": step, "max_steps": state.get("max_steps"), "source": str(path)}
        if last is not None:
            entry.update(loss=last.get("loss"), loss_step=last.get("step"))
        if best is None or (step or 0) > (best.get("step") or 0):
            best = entry
    return best


# --------------------------------------------------------------------------- cancel


def cancel(job_id: str, *, timeout: float = 30.0) -> JobInfo:
    """Cancel a pending or running job and confirm Slurm took it (scancel exits 0 either way).
    Unknown or already finished → RuntimeFailure (exit 1). A job array's id cancels every task still queued or
    running (the JobInfo returned is the array's: active while any task is)."""
    job_id = query.check_job_id(job_id)
    if "_" not in job_id and array_status(job_id, with_progress=False):
        return _cancel_array(job_id, timeout)
    info = job_info(job_id, with_progress=False)
    if not info.active:
        raise RuntimeFailure(Problem(f"job {info.job_id}", f"already finished ({info.state}); nothing to cancel",
                                     f"see `alignkit slurm status {info.job_id}`"), title="not cancelled")
    res = query.run(["scancel", info.job_id])
    if res.returncode != 0:
        raise RuntimeFailure(Problem(f"scancel {info.job_id}", query.slurm_error(res.stderr),
                                     "check that the job is yours (`squeue --me`)"), title="not cancelled")
    deadline = _time.monotonic() + timeout
    while True:
        now = query.from_scontrol(info.job_id) or query.from_jobcomp(info.job_id)
        if now is None:  # gone from the controller and from any record: it ended
            info.state = "CANCELLED"
            return info
        if not now.active:
            return now
        if _time.monotonic() > deadline:
            if now.state == "COMPLETING":  # cancelled; its processes are still being stopped
                return now
            raise RuntimeFailure(Problem(f"job {info.job_id}", f"still {now.state} {timeout:.0f} s after scancel",
                                         "check `squeue -j JOBID`; your cluster may refuse the cancel"),
                                 title="not cancelled")
        _time.sleep(0.3)


def _cancel_array(array_id: str, timeout: float) -> JobInfo:
    rows = array_status(array_id, with_progress=False)
    if not any(r.active for r in rows):
        raise RuntimeFailure(Problem(f"job array {array_id}", "every task already finished; nothing to cancel",
                                     f"see `alignkit slurm status {array_id}`"), title="not cancelled")
    res = query.run(["scancel", array_id])
    if res.returncode != 0:
        raise RuntimeFailure(Problem(f"scancel {array_id}", query.slurm_error(res.stderr),
                                     "check that the job is yours (`squeue --me`)"), title="not cancelled")
    deadline = _time.monotonic() + timeout
    while True:
        rows = array_status(array_id, with_progress=False)
        live = [r for r in rows if r.active and r.state != "COMPLETING"]
        if not live:
            states = sorted({r.state for r in rows})
            return JobInfo(job_id=array_id, state="CANCELLED" if states in ([], ["CANCELLED"]) else "/".join(states),
                           source="scontrol")
        if _time.monotonic() > deadline:
            raise RuntimeFailure(Problem(f"job array {array_id}", f"tasks {', '.join(r.job_id for r in live)} still "
                                         f"active {timeout:.0f} s after scancel", "check `squeue -j JOBID`"),
                                 title="not cancelled")
        _time.sleep(0.3)


# --------------------------------------------------------------------------- logs of a job


def log_path(job_id: str) -> Path | None:
    info = job_info(job_id, with_progress=False)
    if not info.stdout:
        return None
    return Path(info.stdout)


def job_logs(job_id: str, follow: bool = False, *, poll: float = 1.0, idle_exit: float = 2.0) -> Iterator[str]:
    """The job's output, as chunks of text. With ``follow``, keeps reading until the job has ended
    (and a requeued job keeps appending to the same file). A job array's id gives every task's log in turn,
    each after a ``==> 123_4 <==`` line; follow one task with its own id."""
    job_id = query.check_job_id(job_id)
    rows = array_status(job_id, with_progress=False) if "_" not in job_id else []
    if not rows:
        return logs.read_log(job_info(job_id, with_progress=False), follow, poll=poll, idle_exit=idle_exit)
    if follow:
        raise UsageError(Problem(f"job array {job_id}", "--follow takes one task of the array",
                                 f"pass a task id, e.g. `alignkit slurm logs {rows[0].job_id} --follow`"))
    return _array_logs(rows)


def _array_logs(rows: list[JobInfo]) -> Iterator[str]:
    for info in rows:
        yield f"==> {info.job_id} ({info.state}) <==\n"
        if not info.stdout or (not Path(info.stdout).exists() and not info.active):
            yield "(no log)\n"
            continue
        yield from logs.read_log(info, False)
