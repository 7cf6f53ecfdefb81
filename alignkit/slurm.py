"""Run a planned launch on a Slurm cluster: render the sbatch script, submit, watch, cancel, read logs.

The script runs one task per node. Each task runs the plan's ``accelerate launch`` with the multi-node
flags filled in *on that node* (``--machine_rank "$SLURM_NODEID"`` is expanded by the per-task shell,
not once in the batch shell), with the first host of the allocation, resolved to an address, as the
rendezvous point.

Preemption: the job is submitted ``--requeue`` with ``--signal=B:USR1@<lead>``. On USR1 (the time
limit is near) the batch shell sends SIGTERM to the job step; the trainer saves a checkpoint and exits;
the script then runs ``scontrol requeue`` and the next start resumes from that checkpoint (re-running
the same run file resumes). A SIGTERM from Slurm itself (scancel, ``scontrol requeue``, preemption)
reaches the trainer directly; the script does not requeue then: Slurm decides.

Nothing secret is written into the script: HF_TOKEN and friends reach the job through sbatch's default
``--export=ALL`` from the submitting environment.

This module is imported by the CLI: standard library only at module level.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time as _time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from alignkit.errors import Problem, RuntimeFailure, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from alignkit.launch.plan import LaunchPlan

# Flags of `accelerate launch` that the script sets per node; any value the plan carries is replaced.
_VALUE_FLAGS = ("num_machines", "num_processes", "machine_rank", "main_process_ip", "main_process_port",
                "rdzv_backend")
_BOOL_FLAGS = ("same_network",)
STATUS_FILE = "status.json"  # the trainer's <output_dir>/alignkit/status.json (alignkit.train.common)
DEFAULT_SIGNAL_LEAD = 300  # seconds before the time limit that USR1 arrives (checkpoint time)
MIN_SIGNAL_LEAD = 30
ACTIVE_STATES = {"PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD",
                 "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}
_SECRETISH = re.compile(r"(TOKEN|API_KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|_KEY)$", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


# --------------------------------------------------------------------------- validation helpers


def _check_line(where: str, value: str) -> str:
    """A value that goes into one #SBATCH line (or one shell word): no newline or other control char."""
    if not isinstance(value, str):
        value = str(value)
    if _CONTROL.search(value):
        bad = "a newline" if ("\n" in value or "\r" in value) else "a control character"
        raise UsageError(Problem(where, f"contains {bad}: {value!r}",
                                 "remove it: a value must fit on one line of the batch script"))
    return value


_SBATCH_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def sbatch_quote(value: str) -> str:
    """Quote one word for an ``#SBATCH`` line as sbatch parses it (quotes group, backslash escapes,
    an unquoted ``#`` starts a comment). Never evaluated by a shell."""
    if _SBATCH_SAFE.match(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _sbatch(flag: str, value: Any = None, *, where: str) -> str:
    if value is None:
        return f"#SBATCH {flag}"
    value = _check_line(where, str(value))
    return f"#SBATCH {flag}={sbatch_quote(value)}"


def _slurm_path(where: str, path: str) -> str:
    """A path for --output: absolute, on one line, with '%' kept literal (Slurm expands %j etc.)."""
    path = _check_line(where, path)
    if "\\" in path:
        raise UsageError(Problem(where, f"contains a backslash: {path!r}",
                                 "Slurm treats a backslash in an output path specially; choose a path without one"))
    return path.replace("%", "%%")


_TIME_FORMS = (
    (re.compile(r"^(\d+)$"), lambda m: int(m[1]) * 60),
    (re.compile(r"^(\d+):(\d+)$"), lambda m: int(m[1]) * 60 + int(m[2])),
    (re.compile(r"^(\d+):(\d+):(\d+)$"), lambda m: int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])),
    (re.compile(r"^(\d+)-(\d+)$"), lambda m: int(m[1]) * 86400 + int(m[2]) * 3600),
    (re.compile(r"^(\d+)-(\d+):(\d+)$"), lambda m: int(m[1]) * 86400 + int(m[2]) * 3600 + int(m[3]) * 60),
    (re.compile(r"^(\d+)-(\d+):(\d+):(\d+)$"),
     lambda m: int(m[1]) * 86400 + int(m[2]) * 3600 + int(m[3]) * 60 + int(m[4])),
)


def parse_time_limit(value: str) -> int | None:
    """Seconds in a Slurm time limit ("90", "1:30:00", "2-00:00:00"...); None for no limit.
    Raises UsageError naming --time for anything Slurm would not take."""
    v = _check_line("--time", value).strip()
    if v.upper() in ("INFINITE", "UNLIMITED"):
        return None
    for pattern, seconds in _TIME_FORMS:
        m = pattern.match(v)
        if m:
            s = seconds(m)
            if s <= 0:
                break
            return s
    raise UsageError(Problem("--time", f"not a Slurm time limit: {value!r}",
                             "use minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (e.g. 2:00:00)"))


def signal_lead_for(time_limit: int | None, lead: int | None = None) -> int:
    """Seconds before the time limit at which USR1 asks the trainer to checkpoint."""
    if lead is not None:
        if lead < 1 or lead > 65535:
            raise UsageError(Problem("--signal-lead", f"{lead} is out of range", "use 1..65535 seconds"))
        return lead
    if time_limit is None:
        return DEFAULT_SIGNAL_LEAD
    # short jobs: signal at a quarter of the limit before its end, never closer than MIN_SIGNAL_LEAD
    return max(min(DEFAULT_SIGNAL_LEAD, time_limit // 4), min(MIN_SIGNAL_LEAD, max(time_limit // 2, 1)))


# --------------------------------------------------------------------------- the launch command


@dataclass
class _Launch:
    prefix: list[str]  # up to and including the launcher ("accelerate", "launch")
    flags: list[str]  # accelerate's own flags, without the ones the script sets per node
    target: list[str]  # "-m alignkit.train.sft --run run.yaml" or "script.py args"
    port: str | None  # --main_process_port the plan asked for


def _split_launch(command: Sequence[str]) -> _Launch:
    """Split `accelerate launch <flags> <target>` (or `python -m accelerate.commands.launch ...`)."""
    cmd = [str(c) for c in command]
    start = None
    for i, tok in enumerate(cmd):
        base = os.path.basename(tok)
        if tok == "launch" and i > 0 and os.path.basename(cmd[i - 1]).startswith("accelerate"):
            start = i + 1
            break
        if base == "accelerate-launch" or (tok == "accelerate.commands.launch" and i > 0 and cmd[i - 1] == "-m"):
            start = i + 1
            break
    if start is None:
        raise ValueError(f"not an `accelerate launch` command: {shlex.join(cmd)}")
    rest = cmd[start:]
    end = None
    for i, tok in enumerate(rest):
        if tok in ("-m", "--module", "--no_python", "--no-python") or (not tok.startswith("-") and tok.endswith(".py")):
            end = i
            break
    if end is None:
        raise ValueError(f"no training script or module in the launch command: {shlex.join(cmd)}")
    flags, target = rest[:end], rest[end:]
    kept: list[str] = []
    port = None
    i = 0
    while i < len(flags):
        tok = flags[i]
        name, eq, val = tok[2:].partition("=") if tok.startswith("--") else ("", "", "")
        name = name.replace("-", "_")
        if name in _VALUE_FLAGS:
            if not eq:
                val = flags[i + 1] if i + 1 < len(flags) else ""
                i += 1
            if name == "main_process_port":
                port = val
            i += 1
            continue
        if name in _BOOL_FLAGS:
            i += 1
            continue
        kept.append(tok)
        i += 1
    return _Launch(cmd[:start], kept, target, port)


def _replace_run_file(target: list[str], run_file: str) -> list[str]:
    out = list(target)
    for i, tok in enumerate(out):
        if tok == "--run" and i + 1 < len(out):
            out[i + 1] = run_file
            return out
        if tok.startswith("--run="):
            out[i] = f"--run={run_file}"
            return out
    return out


def _is_cpu_plan(plan: "LaunchPlan") -> bool:
    return "cpu" in str(plan.profile).split(",") or plan.env.get("CUDA_VISIBLE_DEVICES") == ""


# --------------------------------------------------------------------------- render


def render_sbatch(
    plan: "LaunchPlan",
    *,
    job_name: str,
    nodes: int,
    gpus_per_node: int,
    partition: str | None = None,
    time: str | None = None,
    account: str | None = None,
    qos: str | None = None,
    constraint: str | None = None,
    exclusive: bool = False,
    extra_sbatch_args: Sequence[str] = (),
    env_setup: str | None = None,
    log_dir: str | os.PathLike,
    run_file: str | os.PathLike,
    workdir: str | os.PathLike | None = None,
    cpus_per_task: int | None = None,
    signal_lead: int | None = None,
    main_process_port: int | None = None,
    request_gpus: bool | None = None,
) -> str:
    """The sbatch script that runs ``plan`` on ``nodes`` nodes, ``gpus_per_node`` processes each.

    ``env_setup`` is a shell file sourced before the launch (modules, a venv); its path is quoted, its
    content is the user's own. ``run_file`` is the run YAML the trainer reads (it must be on a filesystem
    every node sees; the script checks). GPUs are requested (``--gpus-per-node``) when
    ``gpus_per_node > 0`` and the plan is not a CPU plan (``request_gpus`` forces either way).
    Raises UsageError naming the field for a value that cannot be written safely.
    """
    if nodes < 1:
        raise UsageError(Problem("--nodes", f"must be at least 1, got {nodes}", "pass --nodes N with N >= 1"))
    if gpus_per_node < 1:
        raise UsageError(Problem("--gpus-per-node", f"must be at least 1, got {gpus_per_node}",
                                 "pass the number of processes per node (GPUs; on a CPU profile, CPU processes)"))
    if plan.world_size != nodes * gpus_per_node:
        raise UsageError(Problem(
            "--nodes/--gpus-per-node",
            f"the plan was made for {plan.world_size} processes, the job would run {nodes} x {gpus_per_node}",
            "plan with the same --nodes and --gpus-per-node (the batch arithmetic depends on the world size)"))
    if cpus_per_task is not None and cpus_per_task < 1:
        raise UsageError(Problem("--cpus-per-task", f"must be at least 1, got {cpus_per_task}", "pass N >= 1"))
    limit = parse_time_limit(time) if time is not None else None
    lead = signal_lead_for(limit, signal_lead)
    launch = _split_launch(plan.accelerate_command or plan.command)
    port = main_process_port if main_process_port is not None else launch.port
    if port is not None:
        port = _check_line("--main-process-port", str(port))
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(Problem("main_process_port", f"not a TCP port: {port!r}", "use 1..65535"))

    log_dir = Path(os.path.abspath(os.fspath(log_dir)))
    run_file = os.path.abspath(os.fspath(run_file))
    workdir = os.path.abspath(os.fspath(workdir)) if workdir is not None else os.getcwd()
    job_name = _check_line("--job-name", job_name)
    if not job_name.strip():
        raise UsageError(Problem("--job-name", "is empty", "pass a name, e.g. --job-name zephyr-sft"))
    _check_line("run file", run_file)
    _check_line("--chdir", workdir)
    for tok in plan.accelerate_command or plan.command:
        _check_line("launch command", str(tok))
    _check_line("--profile", str(plan.profile))  # it goes into a comment line
    want_gpus = request_gpus if request_gpus is not None else not _is_cpu_plan(plan)

    out = ["#!/bin/bash"]
    out.append(f"# alignkit: {plan.task} with profile {plan.profile} on {nodes} node(s) x {gpus_per_node} "
               f"process(es), global batch {plan.global_batch_size}")
    out.append("# Submit again with `sbatch <this file>`; a requeued or resubmitted job resumes from the last")
    out.append("# complete checkpoint in the output dir. Secrets (HF_TOKEN...) come from the submitting shell.")
    out.append(_sbatch("--job-name", job_name, where="--job-name"))
    out.append(_sbatch("--nodes", nodes, where="--nodes"))
    out.append(_sbatch("--ntasks-per-node", 1, where="--ntasks-per-node"))
    if want_gpus and gpus_per_node > 0:
        out.append(_sbatch("--gpus-per-node", gpus_per_node, where="--gpus-per-node"))
    if cpus_per_task is not None:
        out.append(_sbatch("--cpus-per-task", cpus_per_task, where="--cpus-per-task"))
    out.append(_sbatch("--output", log_pattern(log_dir), where="log dir"))
    out.append(_sbatch("--open-mode", "append", where="--open-mode"))
    out.append(_sbatch("--chdir", workdir, where="--chdir"))
    out.append("#SBATCH --requeue")
    out.append(_sbatch("--signal", f"B:USR1@{lead}", where="--signal"))
    for flag, value in (("--partition", partition), ("--time", time), ("--account", account),
                        ("--qos", qos), ("--constraint", constraint)):
        if value is not None and str(value) != "":
            out.append(_sbatch(flag, value, where=flag))
    if exclusive:
        out.append("#SBATCH --exclusive")
    for i, arg in enumerate(extra_sbatch_args):
        where = f"--sbatch-arg #{i + 1}"
        arg = _check_line(where, str(arg))
        if not arg.startswith("-"):
            raise UsageError(Problem(where, f"not an sbatch option: {arg!r}",
                                     "pass options such as --sbatch-arg=--mem=64G or --sbatch-arg=--mail-type=END"))
        out.append(f"#SBATCH {sbatch_quote(arg)}")
    out.append("")

    q = shlex.quote
    body: list[str] = []
    body.append("set -uo pipefail")
    body.append("alignkit_log() { printf 'alignkit[%s]: %s\\n' \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\" \"$*\"; }")
    body.append("alignkit_preempted=0")
    body.append("alignkit_srun_pid=")
    # USR1 goes on to every process of the job's steps (not to srun: srun answers SIGTERM by killing the
    # step). The launchers ignore it (see the node command), so each trainer process gets exactly one.
    body.append("alignkit_on_usr1() {")
    body.append("    [ \"$alignkit_preempted\" = 1 ] && return")
    body.append("    alignkit_preempted=1")
    body.append("    alignkit_log \"SIGUSR1: the time limit is near; asking the trainer to save a checkpoint and stop\"")
    body.append("    if [ -n \"$alignkit_srun_pid\" ]; then scancel --signal=USR1 \"$SLURM_JOB_ID\" || true; fi")
    body.append("}")
    body.append("alignkit_on_term() {")
    body.append("    alignkit_log \"SIGTERM: the job is being cancelled, requeued or preempted (the trainer saves a "
                "checkpoint if it has time)\"")
    body.append("}")
    body.append("trap alignkit_on_usr1 USR1")
    body.append("trap alignkit_on_term TERM")
    body.append("")
    body.append("alignkit_log \"job ${SLURM_JOB_ID} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST}\"")
    if env_setup:
        setup = os.path.abspath(os.path.expanduser(_check_line("--env-setup", env_setup)))
        body.append(f"# environment setup (modules, venv): {setup}")
        body.append(f". {q(setup)} || {{ alignkit_log \"environment setup failed: \"{q(setup)}; exit 1; }}")
    for key, value in plan.env.items():
        if not _ENV_NAME.match(key):
            raise UsageError(Problem(f"env {key!r}", "not a valid environment variable name", "rename it"))
        if _SECRETISH.search(key):
            continue  # secrets are inherited from the submitting environment, never written
        body.append(f"export {key}={q(_check_line(f'env {key}', str(value)))}")
    body.append(f"if [ \"${{SLURM_NNODES:-0}}\" != {nodes} ]; then")
    body.append(f"    alignkit_log \"this run was planned for {nodes} node(s) but the job has ${{SLURM_NNODES:-0}}; "
                "the global batch would change\"")
    body.append("    exit 2")
    body.append("fi")
    body.append("# srun does not inherit --cpus-per-task from sbatch (Slurm >= 22.05)")
    body.append("if [ -n \"${SLURM_CPUS_PER_TASK:-}\" ]; then export SRUN_CPUS_PER_TASK=\"$SLURM_CPUS_PER_TASK\"; fi")
    body.append("# rendezvous: the first host of the allocation, as an address (node names need not resolve)")
    body.append("alignkit_resolve() {")
    body.append("    case \"$1\" in")
    body.append("        *[!0-9.]*|'') getent ahostsv4 \"$1\" 2>/dev/null | awk 'NR==1 {print $1}' ;;")
    body.append("        *) printf '%s\\n' \"$1\" ;;")
    body.append("    esac")
    body.append("}")
    body.append("alignkit_head=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n1)")
    body.append("alignkit_addr=$(scontrol show node \"$alignkit_head\" 2>/dev/null "
                "| sed -n 's/.*NodeAddr=\\([^ ]*\\).*/\\1/p' | head -n1)")
    body.append("ALIGNKIT_MAIN_PROCESS_IP=$(alignkit_resolve \"${alignkit_addr:-$alignkit_head}\")")
    body.append("[ -n \"$ALIGNKIT_MAIN_PROCESS_IP\" ] || ALIGNKIT_MAIN_PROCESS_IP=$(alignkit_resolve \"$alignkit_head\")")
    body.append("if [ -z \"$ALIGNKIT_MAIN_PROCESS_IP\" ]; then")
    body.append("    alignkit_log \"cannot resolve the address of $alignkit_head (NodeAddr ${alignkit_addr:-unset})\"")
    body.append("    exit 1")
    body.append("fi")
    if port is not None:
        body.append(f"ALIGNKIT_MAIN_PROCESS_PORT={port}")
    else:
        body.append("# a port per job, so two jobs sharing a node do not collide")
        body.append("ALIGNKIT_MAIN_PROCESS_PORT=$(( 20000 + SLURM_JOB_ID % 20000 ))")
    body.append(f"ALIGNKIT_NUM_PROCESSES=$(( SLURM_NNODES * {gpus_per_node} ))")
    body.append("export ALIGNKIT_MAIN_PROCESS_IP ALIGNKIT_MAIN_PROCESS_PORT ALIGNKIT_NUM_PROCESSES")
    body.append("alignkit_log \"rendezvous ${ALIGNKIT_MAIN_PROCESS_IP}:${ALIGNKIT_MAIN_PROCESS_PORT} ($alignkit_head), "
                "${ALIGNKIT_NUM_PROCESSES} processes on ${SLURM_NNODES} node(s)\"")
    body.append("")

    target = _replace_run_file(launch.target, run_file)
    per_node = [*launch.prefix, *launch.flags]
    # the per-node command, kept literal by the quoted here-document: "$SLURM_NODEID" and the rendezvous
    # variables expand in each task's own shell on its node, never here in the batch shell
    body.append("# what every node runs; expanded by each task's own shell, on its node")
    body.append("read -r -d '' alignkit_node_cmd <<'ALIGNKIT_NODE_CMD'")
    # Slurm signals every process of a step. The launcher (accelerate, torchrun's agent) must outlive the
    # trainer's checkpoint: started with TERM and USR1 ignored, accelerate's simple launcher stays up and
    # torchrun's agent installs its own TERM handler; the trainer installs its own handlers for both.
    body.append("trap '' TERM USR1")
    body.append(f"if [ ! -f {q(run_file)} ]; then")
    body.append(f"    echo \"alignkit: run file \"{q(run_file)}\" not found on $(hostname): the output dir must be "
                "on a filesystem every node shares\" >&2")
    body.append("    exit 2")
    body.append("fi")
    body.append(f"exec {shlex.join(per_node)} \\")
    body.append('    --num_machines "$SLURM_NNODES" --num_processes "$ALIGNKIT_NUM_PROCESSES" \\')
    body.append('    --machine_rank "$SLURM_NODEID" --main_process_ip "$ALIGNKIT_MAIN_PROCESS_IP" \\')
    body.append('    --main_process_port "$ALIGNKIT_MAIN_PROCESS_PORT" --rdzv_backend static --same_network \\')
    body.append(f"    {shlex.join(target)}")
    body.append("ALIGNKIT_NODE_CMD")
    srun = ["srun", "--kill-on-bad-exit=1", "--nodes=\"$SLURM_NNODES\"", "--ntasks=\"$SLURM_NNODES\"",
            "--ntasks-per-node=1"]
    if nodes > 1:
        srun.append("--label")
    body.append("# one task per node")
    body.append(f"{' '.join(srun)} bash -c \"$alignkit_node_cmd\" &")
    body.append("alignkit_srun_pid=$!")
    body.append("if [ \"$alignkit_preempted\" = 1 ]; then sleep 1; scancel --signal=USR1 \"$SLURM_JOB_ID\" || true; fi")
    body.append("# a trapped signal interrupts `wait`: keep waiting until the step is gone")
    body.append("while kill -0 \"$alignkit_srun_pid\" 2>/dev/null; do wait \"$alignkit_srun_pid\"; done")
    body.append("wait \"$alignkit_srun_pid\"")
    body.append("alignkit_rc=$?")
    # after USR1 the trainer saves a checkpoint and stops (exit 0 or not); the run's status file tells a
    # stopped run from a finished one
    status_file = os.path.join(os.path.dirname(run_file), STATUS_FILE)
    body.append(f"alignkit_status_file={q(status_file)}")
    body.append("alignkit_state=$(sed -n 's/.*\"state\": *\"\\([a-z_]*\\)\".*/\\1/p' \"$alignkit_status_file\" "
                "2>/dev/null | head -n1)")
    body.append("if [ \"$alignkit_preempted\" = 1 ] && [ \"$alignkit_state\" != completed ]; then")
    body.append("    alignkit_log \"step stopped (exit $alignkit_rc, run state ${alignkit_state:-unknown}) before the time "
                "limit; requeueing job $SLURM_JOB_ID: the next start resumes from the last complete checkpoint\"")
    body.append("    if scontrol requeue \"$SLURM_JOB_ID\"; then exit 0; fi")
    body.append("    alignkit_log \"scontrol requeue failed; submit this script again to resume\"")
    body.append("    exit 1")
    body.append("fi")
    body.append("alignkit_log \"step finished with exit code $alignkit_rc\"")
    body.append("exit \"$alignkit_rc\"")
    text = "\n".join(out + body) + "\n"
    from alignkit.secrets import redact

    return redact(text)


def log_pattern(log_dir: str | os.PathLike) -> str:
    """The --output pattern: ``<log_dir>/slurm-%j.out`` with any '%' of the directory doubled."""
    return _slurm_path("log dir", os.path.abspath(os.fspath(log_dir))) + "/slurm-%j.out"


def expand_pattern(pattern: str, job_id: str, job_name: str = "", user: str = "") -> str:
    """Expand Slurm's filename pattern (as StdOut shows it) into the real path."""
    if "\\" in pattern:  # a backslash turns expansion off
        return pattern.replace("\\", "")
    values = {"j": job_id, "J": job_id, "A": job_id, "x": job_name, "u": user or os.environ.get("USER", "")}

    def sub(m: re.Match) -> str:
        width, code = m.group(1), m.group(2)
        if code == "%":
            return "%"
        if code not in values:
            return m.group(0)
        v = values[code]
        return v.zfill(int(width)) if width and v.isdigit() else v

    return re.sub(r"%(\d*)([%jJAxu])", sub, pattern)


def write_script(path: str | os.PathLike, text: str) -> Path:
    from alignkit.fsutil import write_atomic

    path = Path(path)
    write_atomic(path, text, mode=0o755)
    return path


# --------------------------------------------------------------------------- running Slurm commands


def _run(argv: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess:
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


def _slurm_error(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for ln in lines:
        if "submission failed" in ln.lower():
            return ln.split("submission failed:", 1)[-1].strip() or ln
    lines = [re.sub(r"^(sbatch|scancel|scontrol|squeue|sacct): (error|fatal): ", "", ln) for ln in lines]
    return "; ".join(lines) or "no message"


def submit(script_path: str | os.PathLike, *, record: dict[str, Any] | None = None) -> str:
    """``sbatch --parsable SCRIPT`` → job id. A rejection raises RuntimeFailure with Slurm's reason."""
    script_path = Path(script_path)
    res = _run(["sbatch", "--parsable", str(script_path)])
    if res.returncode != 0:
        reason = _slurm_error(res.stderr or res.stdout)
        raise RuntimeFailure(Problem(f"sbatch {script_path}", f"Slurm rejected the job: {reason}",
                                     _rejection_fix(reason)), title="job not submitted")
    first = (res.stdout.strip().splitlines() or [""])[-1]
    job_id = first.split(";", 1)[0].strip()
    if not job_id.isdigit():
        raise RuntimeFailure(Problem(f"sbatch {script_path}", f"unexpected answer from sbatch: {res.stdout!r}",
                                     "check `squeue --me`"), title="job not submitted")
    rec = {"job_id": job_id, "script": str(script_path.resolve()), "cluster": _cluster_name(),
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


def _recorded(job_id: str) -> dict[str, Any] | None:
    path = registry_path()
    found = None
    cluster = None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if str(rec.get("job_id")) == str(job_id):
            if cluster is None:
                cluster = _cluster_name() or ""
            if rec.get("cluster") and cluster and rec["cluster"] != cluster:
                continue
            found = rec
    return found


_CLUSTER: dict[str, str | None] = {}


def _cluster_name() -> str | None:
    key = os.environ.get("SLURM_CONF", "")
    if key not in _CLUSTER:
        cfg = _config()
        _CLUSTER[key] = cfg.get("ClusterName")
    return _CLUSTER[key]


def _config() -> dict[str, str]:
    try:
        res = _run(["scontrol", "show", "config"], timeout=30)
    except RuntimeFailure:
        return {}
    out = {}
    for line in res.stdout.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


# --------------------------------------------------------------------------- job state


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


_SCONTROL_KEYS = (
    "JobId JobName UserId GroupId MCS_label Priority Nice Account QOS WCKey JobState Reason Dependency Requeue "
    "Restarts BatchFlag Reboot ExitCode DerivedExitCode RunTime TimeLimit TimeMin SubmitTime EligibleTime "
    "AccrueTime StartTime EndTime Deadline SuspendTime SecsPreSuspend LastSchedEval Scheduler Partition "
    "AllocNode:Sid ReqNodeList ExcNodeList NodeList BatchHost NumNodes NumCPUs NumTasks CPUs/Task "
    "ReqB:S:C:T TRES Socks/Node NtasksPerN:B:S:C CoreSpec MinCPUsNode MinMemoryNode MinMemoryCPU MinTmpDiskNode "
    "Features DelayBoot OverSubscribe Contiguous Licenses Network Command WorkDir StdErr StdIn StdOut Power "
    "Comment AdminComment TresPerNode TresPerJob TresPerTask TresBind MailUser MailType CpusPerTres MemPerTres "
    "NtasksPerTRES Reservation ArrayJobId ArrayTaskId HetJobId HetJobOffset Container ContainerID"
).split()

_JOBCOMP_KEYS = (
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
    import datetime as dt

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


def _check_job_id(job_id: str) -> str:
    job_id = str(job_id).strip()
    if not re.fullmatch(r"\d+(_\d+)?", job_id):
        raise UsageError(Problem("JOBID", f"not a Slurm job id: {job_id!r}", "pass the number sbatch printed"))
    return job_id


def _from_scontrol(job_id: str) -> JobInfo | None:
    res = _run(["scontrol", "-o", "show", "job", job_id])
    if res.returncode != 0 or not res.stdout.strip():
        return None
    kv = parse_keyvals(res.stdout.strip().splitlines()[0], _SCONTROL_KEYS)
    if kv.get("JobId") != job_id:
        return None
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
        extra={"Command": kv.get("Command", ""), "WorkDir": kv.get("WorkDir", "")},
    )


def _from_jobcomp(job_id: str) -> JobInfo | None:
    cfg = _config()
    if cfg.get("JobCompType") != "jobcomp/filetxt" or not cfg.get("JobCompLoc"):
        return None
    try:
        lines = Path(cfg["JobCompLoc"]).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    found = None
    for line in lines:
        if line.startswith(f"JobId={job_id} "):
            found = parse_keyvals(line, _JOBCOMP_KEYS)
    if found is None:
        return None
    return JobInfo(
        job_id=job_id, name=found.get("Name", ""), state=found.get("JobState", "UNKNOWN"),
        elapsed=_elapsed_between(found.get("StartTime", ""), found.get("EndTime", "")),
        time_limit=found.get("TimeLimit", ""), nodes=found.get("NodeCnt", ""), node_list=found.get("NodeList", ""),
        exit_code=found.get("ExitCode", ""), source="jobcomp", extra={"WorkDir": found.get("WorkDir", "")},
    )


def _from_sacct(job_id: str) -> JobInfo | None:
    if shutil.which("sacct") is None:
        return None
    res = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,JobName,State,Elapsed,NNodes,NodeList,ExitCode"])
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


def job_info(job_id: str, *, with_progress: bool = True) -> JobInfo:
    """What Slurm knows about one job: the controller while it remembers, then the jobcomp file or
    sacct. Unknown job → RuntimeFailure (exit 1)."""
    job_id = _check_job_id(job_id)
    info = _from_scontrol(job_id) or _from_jobcomp(job_id) or _from_sacct(job_id)
    rec = _recorded(job_id)
    if info is None:
        raise RuntimeFailure(Problem(f"job {job_id}", "Slurm does not know this job (never submitted, or "
                                     "finished long enough ago that the controller forgot it)",
                                     "list your jobs with `alignkit slurm status`"), title="unknown job")
    if rec:
        info.output_dir = info.output_dir or rec.get("output_dir")
        info.stdout = info.stdout or rec.get("log")
    if info.stdout:
        info.stdout = expand_pattern(info.stdout, job_id, info.name)
    if info.output_dir is None:
        info.output_dir = _output_dir_from_script(info.extra.get("Command", ""))
    if with_progress and info.output_dir:
        info.progress = run_progress(info.output_dir)
    if with_progress and info.active and info.stdout:
        live = log_progress(info.stdout)  # the trainer state is only written with checkpoints
        if live:
            info.progress = {**(info.progress or {}), **live}
    return info


def _output_dir_from_script(command: str) -> str | None:
    # alignkit puts the script in <output_dir>/alignkit/slurm-<name>.sbatch
    if not command:
        return None
    p = Path(command)
    if p.parent.name == "alignkit" and p.name.startswith("slurm-") and p.suffix == ".sbatch":
        return str(p.parent.parent)
    return None


def list_jobs() -> list[JobInfo]:
    """The current user's jobs in the queue (pending, running, completing)."""
    sep = "\x1f"
    fmt = sep.join(["%i", "%T", "%M", "%l", "%D", "%R", "%j"])
    res = _run(["squeue", "--me", "--noheader", f"--format={fmt}"])
    if res.returncode != 0:
        raise RuntimeFailure(Problem("squeue", _slurm_error(res.stderr), "check that Slurm answers (`sinfo`)"))
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


def status(job_id: str | None = None) -> list[JobInfo]:
    if job_id is None:
        return list_jobs()
    return [job_info(job_id)]


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


_LOSS_LINE = re.compile(r"\{'loss': [^{}\n]*\}")


def log_progress(log: str | os.PathLike, tail_bytes: int = 262144) -> dict[str, Any] | None:
    """The newest ``{'loss': ..., 'epoch': ...}`` line the trainer printed into the job's log."""
    import ast

    try:
        with open(log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - tail_bytes))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    for m in reversed(_LOSS_LINE.findall(text)):
        try:
            d = ast.literal_eval(m)
        except (ValueError, SyntaxError):
            continue
        out: dict[str, Any] = {"source": str(log)}
        for key in ("loss", "epoch"):
            try:
                out[key] = float(d[key])
            except (KeyError, TypeError, ValueError):
                pass
        if "loss" in out:
            return out
    return None


# --------------------------------------------------------------------------- cancel


def cancel(job_id: str, *, timeout: float = 30.0) -> JobInfo:
    """Cancel a pending or running job and confirm Slurm took it (scancel exits 0 either way).
    Unknown or already finished → RuntimeFailure (exit 1)."""
    info = job_info(job_id, with_progress=False)
    if not info.active:
        raise RuntimeFailure(Problem(f"job {info.job_id}", f"already finished ({info.state}); nothing to cancel",
                                     f"see `alignkit slurm status {info.job_id}`"), title="not cancelled")
    res = _run(["scancel", info.job_id])
    if res.returncode != 0:
        raise RuntimeFailure(Problem(f"scancel {info.job_id}", _slurm_error(res.stderr),
                                     "check that the job is yours (`squeue --me`)"), title="not cancelled")
    deadline = _time.monotonic() + timeout
    while True:
        now = _from_scontrol(info.job_id) or _from_jobcomp(info.job_id)
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


# --------------------------------------------------------------------------- logs


def log_path(job_id: str) -> Path | None:
    info = job_info(job_id, with_progress=False)
    if not info.stdout:
        return None
    return Path(info.stdout)


def logs(job_id: str, follow: bool = False, *, poll: float = 1.0, idle_exit: float = 2.0) -> Iterator[str]:
    """The job's output, as chunks of text. With ``follow``, keeps reading until the job has ended
    (and a requeued job keeps appending to the same file)."""
    info = job_info(job_id, with_progress=False)
    if not info.stdout:
        raise RuntimeFailure(Problem(f"job {info.job_id}", "no log path known for this job",
                                     "it was not submitted by alignkit, or Slurm forgot it; look in the job's "
                                     "output dir"), title="no log")
    path = Path(info.stdout)
    pos = 0
    ended_at = None
    while True:
        chunk = ""
        try:
            with open(path, "r", encoding="utf-8", errors="replace") as fh:
                fh.seek(pos)
                chunk = fh.read()
                pos = fh.tell()
        except FileNotFoundError:
            if not follow:
                if info.active:
                    yield f"(no output yet: job {info.job_id} is {info.state}; the log will be {path})\n"
                    return
                raise RuntimeFailure(Problem(str(path), "the job's log file does not exist",
                                             "it may have been moved or deleted"), title="no log") from None
        if chunk:
            yield chunk
        if not follow:
            return
        now = _from_scontrol(info.job_id)
        active = now is not None and now.active
        if not active:
            if ended_at is None:
                ended_at = _time.monotonic()
            elif _time.monotonic() - ended_at > idle_exit and not chunk:
                return
        else:
            ended_at = None
        _time.sleep(poll)
