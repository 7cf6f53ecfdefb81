"""Asking Slurm: run its commands (``scontrol``, ``sacct``, ``squeue``) and parse their answers into
``JobInfo``. Nothing here knows about alignkit's runs; ``jobs`` adds the registry and the run's progress.

Array tasks (``123_4``) are valid job ids everywhere a job id is taken.
Standard library only: imported by the CLI.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from alignkit.errors import Problem, RuntimeFailure, UsageError

ACTIVE_STATES = {"PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD",
                 "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}


@dataclass
class JobInfo:
    job_id: str
    name: str = ""
    state: str = "UNKNOWN"
    reason: str = ""
    elapsed: str = ""
    time_limit: str = ""
    nodes: str = ""
    node_list: str = ""
    restarts: int = 0
    exit_code: str = ""
    stdout: str | None = None
    output_dir: str | None = None
    source: str = ""  # scontrol | squeue | jobcomp | sacct | registry
    progress: dict[str, Any] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra", None)
        return d


# --------------------------------------------------------------------------- running Slurm commands


def run(argv: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run one Slurm command; a missing command or a silent controller is a RuntimeFailure (exit 1)."""
    exe = shutil.which(argv[0])
    if exe is None:
        raise RuntimeFailure(Problem(argv[0], "Slurm command not found on PATH",
                                     "run this on a Slurm login node (or load the slurm module); for a local "
                                     "cluster: scripts/local-slurm.sh start"))
    try:
        return subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeFailure(Problem(" ".join(argv[:2]), f"no answer from Slurm in {timeout:.0f} s",
                                     "check that the controller is up (`scontrol ping`)")) from None


def slurm_error(text: str) -> str:
    """Slurm's message from a command's stderr, without the ``sbatch: error:`` prefixes."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for ln in lines:
        if "submission failed" in ln.lower():
            return ln.split("submission failed:", 1)[-1].strip() or ln
    lines = [re.sub(r"^(sbatch|scancel|scontrol|squeue|sacct): (error|fatal): ", "", ln) for ln in lines]
    return "; ".join(lines) or "no message"


def config() -> dict[str, str]:
    """``scontrol show config`` as a dict; empty when Slurm does not answer."""
    try:
        res = run(["scontrol", "show", "config"], timeout=30)
    except RuntimeFailure:
        return {}
    out = {}
    for line in res.stdout.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


_CLUSTER: dict[str, str | None] = {}


def cluster_name() -> str | None:
    """The ClusterName of the cluster SLURM_CONF points at (asked once per SLURM_CONF)."""
    key = os.environ.get("SLURM_CONF", "")
    if key not in _CLUSTER:
        _CLUSTER[key] = config().get("ClusterName")
    return _CLUSTER[key]


def forget_cluster_name() -> None:
    _CLUSTER.clear()


# --------------------------------------------------------------------------- parsing Slurm's answers


SCONTROL_KEYS = (
    "JobId JobName UserId GroupId MCS_label Priority Nice Account QOS WCKey JobState Reason Dependency Requeue "
    "Restarts BatchFlag Reboot ExitCode DerivedExitCode RunTime TimeLimit TimeMin SubmitTime EligibleTime "
    "AccrueTime StartTime EndTime Deadline SuspendTime SecsPreSuspend LastSchedEval Scheduler Partition "
    "AllocNode:Sid ReqNodeList ExcNodeList NodeList BatchHost NumNodes NumCPUs NumTasks CPUs/Task "
    "ReqB:S:C:T TRES Socks/Node NtasksPerN:B:S:C CoreSpec MinCPUsNode MinMemoryNode MinMemoryCPU MinTmpDiskNode "
    "Features DelayBoot OverSubscribe Contiguous Licenses Network Command WorkDir StdErr StdIn StdOut Power "
    "Comment AdminComment TresPerNode TresPerJob TresPerTask TresBind MailUser MailType CpusPerTres MemPerTres "
    "NtasksPerTRES Reservation ArrayJobId ArrayTaskId ArrayTaskThrottle HetJobId HetJobOffset Container ContainerID"
).split()

JOBCOMP_KEYS = (
    "JobId UserId GroupId Name JobState Partition TimeLimit StartTime EndTime NodeList NodeCnt ProcCnt WorkDir "
    "ReservationName Tres Account QOS WcKey Cluster SubmitTime EligibleTime DerivedExitCode ExitCode"
).split()


def parse_keyvals(line: str, keys: Sequence[str]) -> dict[str, str]:
    """Parse Slurm's `Key=value Key=value` lines, where a value may contain spaces (a job name):
    only the keys Slurm prints start a new field."""
    alternatives = "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))
    pattern = re.compile(rf"(?:^|\s)({alternatives})=")
    matches = list(pattern.finditer(line))
    out: dict[str, str] = {}
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(line)
        out.setdefault(m.group(1), line[m.end():end].strip())
    return out


def _elapsed_between(start: str, end: str) -> str:
    try:
        s = dt.datetime.fromisoformat(start)
        e = dt.datetime.fromisoformat(end)
    except ValueError:
        return ""
    return _fmt_seconds(max(0, int((e - s).total_seconds())))


def _fmt_seconds(sec: int) -> str:
    d, rem = divmod(sec, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return (f"{d}-" if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def check_job_id(job_id: str) -> str:
    """A job id as sbatch prints it (``123``) or an array task (``123_4``); anything else is exit 2."""
    job_id = str(job_id).strip()
    if not re.fullmatch(r"\d+(_\d+)?", job_id):
        raise UsageError(Problem("JOBID", f"not a Slurm job id: {job_id!r}", "pass the number sbatch printed"))
    return job_id


def from_scontrol(job_id: str) -> JobInfo | None:
    """The controller's view of a job (or of one array task, ``123_4``) it still remembers; None once it
    forgot it."""
    res = run(["scontrol", "-o", "show", "job", job_id])
    if res.returncode != 0 or not res.stdout.strip():
        return None
    base, _, task = job_id.partition("_")
    for line in res.stdout.strip().splitlines():
        kv = parse_keyvals(line, SCONTROL_KEYS)
        if not task and kv.get("JobId") == job_id:
            return info_from_scontrol(kv, job_id)
        if task and kv.get("ArrayJobId") == base and _task_in(task, kv.get("ArrayTaskId", "")):
            info = info_from_scontrol(kv, job_id)
            if not (kv.get("ArrayTaskId", "").split() or [""])[0].isdigit():  # the pending tasks' shared record
                info.stdout = None
            return info
    return None


def _task_in(task: str, spec: str) -> bool:
    """Whether array task ``task`` is one of ``spec`` (``4``, ``2-5%2``, ``[1,3]``)."""
    from alignkit.launch.slurm.tasks import expand_task_ids

    return task.isdigit() and int(task) in expand_task_ids(spec)


def info_from_scontrol(kv: dict[str, str], job_id: str) -> JobInfo:
    """One parsed ``scontrol -o show job`` line as the JobInfo of ``job_id`` (an array task: ``123_4``)."""
    state = kv.get("JobState", "UNKNOWN")
    try:
        restarts = int(kv.get("Restarts", "0"))
    except ValueError:
        restarts = 0
    return JobInfo(
        job_id=job_id, name=kv.get("JobName", ""), state=state, reason=kv.get("Reason", ""),
        elapsed=kv.get("RunTime", ""), time_limit=kv.get("TimeLimit", ""), nodes=kv.get("NumNodes", ""),
        node_list=kv.get("NodeList", ""), restarts=restarts, exit_code=kv.get("ExitCode", ""),
        stdout=kv.get("StdOut") or None, source="scontrol",
        extra={"Command": kv.get("Command", ""), "WorkDir": kv.get("WorkDir", ""),
               "ArrayJobId": kv.get("ArrayJobId", ""), "ArrayTaskId": kv.get("ArrayTaskId", "")},
    )


def jobcomp_lines() -> list[str] | None:
    """The lines of the jobcomp/filetxt file (the local cluster keeps one); None when there is none to read."""
    cfg = config()
    if cfg.get("JobCompType") != "jobcomp/filetxt" or not cfg.get("JobCompLoc"):
        return None
    try:
        return Path(cfg["JobCompLoc"]).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None


def from_jobcomp(job_id: str) -> JobInfo | None:
    """A finished job from the jobcomp/filetxt file; its last record wins."""
    lines = jobcomp_lines()
    if lines is None:
        return None
    found = None
    for line in lines:
        if line.startswith(f"JobId={job_id} "):
            found = parse_keyvals(line, JOBCOMP_KEYS)
    if found is None:
        return None
    return JobInfo(
        job_id=job_id, name=found.get("Name", ""), state=found.get("JobState", "UNKNOWN"),
        elapsed=_elapsed_between(found.get("StartTime", ""), found.get("EndTime", "")),
        time_limit=found.get("TimeLimit", ""), nodes=found.get("NodeCnt", ""), node_list=found.get("NodeList", ""),
        exit_code=found.get("ExitCode", ""), source="jobcomp", extra={"WorkDir": found.get("WorkDir", "")},
    )


def from_sacct(job_id: str) -> JobInfo | None:
    """A finished job from the accounting database (real clusters); None without sacct."""
    if shutil.which("sacct") is None:
        return None
    res = run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,JobName,State,Elapsed,NNodes,NodeList,ExitCode"])
    if res.returncode != 0:
        return None
    for line in res.stdout.splitlines():
        parts = line.split("|")
        if len(parts) >= 7 and parts[0] == job_id:
            name = "|".join(parts[1:len(parts) - 5])
            state, elapsed, nnodes, nodelist, exit_code = parts[len(parts) - 5:]
            return JobInfo(job_id=job_id, name=name, state=state.split()[0] if state else "UNKNOWN",
                           elapsed=elapsed, nodes=nnodes, node_list=nodelist, exit_code=exit_code, source="sacct")
    return None


def from_squeue() -> list[JobInfo]:
    """The current user's jobs in the queue (pending, running, completing), one row per squeue line."""
    sep = "\x1f"
    fmt = sep.join(["%i", "%T", "%M", "%l", "%D", "%R", "%j"])
    res = run(["squeue", "--me", "--noheader", f"--format={fmt}"])
    if res.returncode != 0:
        raise RuntimeFailure(Problem("squeue", slurm_error(res.stderr), "check that Slurm answers (`sinfo`)"))
    jobs = []
    for line in res.stdout.splitlines():
        parts = line.split(sep, 6)
        if len(parts) < 7:
            continue
        jid, state, elapsed, limit, nnodes, where, name = parts
        running = state in ("RUNNING", "COMPLETING")
        jobs.append(JobInfo(job_id=jid.strip(), name=name, state=state, elapsed=elapsed, time_limit=limit,
                            nodes=nnodes, node_list=where if running else "",
                            reason="" if running else where.strip("()"), source="squeue"))
    return jobs
