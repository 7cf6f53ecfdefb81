"""The sbatch script that runs a launch plan: one task per node, each running the plan's
``accelerate launch`` with the multi-node flags filled in *on that node*.

The script, top to bottom, and the function that writes each part:
  ``header``              #SBATCH directives (shape, log, requeue, the USR1 lead, the user's options)
  ``signal_handlers``     USR1 (time limit near: ask the trainer to checkpoint) and TERM (Slurm decides)
  ``environment``         the user's setup file, the plan's non-secret env, the node-count check
  ``rendezvous``          the first host's address and a port, exported for every node
  ``node_command``        what each node runs (a quoted here-document, expanded on the node)
  ``run_step``            srun, one task per node, waited for through trapped signals
  ``requeue_if_stopped``  after USR1: requeue unless the run's status file says it completed

Every value is checked before anything is written (``validate``): a value that cannot go into the script
safely is a UsageError naming its option. An array job (one task per sweep point) is the same script, through
a ``Variant`` (``array.Tasks``), with an ``--array`` directive and the run file chosen by
``$SLURM_ARRAY_TASK_ID``: ``node_command`` and
``requeue_if_stopped`` take the run file and status file as shell words for that reason.
Standard library only: imported by the CLI.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from alignkit.errors import Problem, UsageError
from alignkit.launch.slurm import layout
from alignkit.launch.slurm.logs import log_pattern
from alignkit.launch.slurm.values import (
    check_line, parse_time_limit, sbatch_directive, sbatch_quote, signal_lead_for,
)

if TYPE_CHECKING:  # pragma: no cover
    from alignkit.launch.spec import LaunchPlan

# Flags of `accelerate launch` that the script sets per node; any value the plan carries is replaced.
_VALUE_FLAGS = ("num_machines", "num_processes", "machine_rank", "main_process_ip", "main_process_port",
                "rdzv_backend")
_BOOL_FLAGS = ("same_network",)
_SECRETISH = re.compile(r"(TOKEN|API_KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|_KEY)$", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
q = shlex.quote


# --------------------------------------------------------------------------- the launch command


@dataclass
class Launch:
    prefix: list[str]  # up to and including the launcher ("accelerate", "launch")
    flags: list[str]  # accelerate's own flags, without the ones the script sets per node
    target: list[str]  # "-m alignkit.train.sft --run run.yaml" or "script.py args"
    port: str | None  # --main_process_port the plan asked for


def split_launch(command: Sequence[str]) -> Launch:
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
    return Launch(cmd[:start], kept, target, port)


def replace_run_file(target: list[str], run_file: str) -> list[str]:
    """The launch target with its ``--run FILE`` pointing at ``run_file``."""
    out = list(target)
    for i, tok in enumerate(out):
        if tok == "--run" and i + 1 < len(out):
            out[i + 1] = run_file
            return out
        if tok.startswith("--run="):
            out[i] = f"--run={run_file}"
            return out
    return out


def is_cpu_plan(plan: "LaunchPlan") -> bool:
    return "cpu" in str(plan.profile).split(",") or plan.env.get("CUDA_VISIBLE_DEVICES") == ""


# --------------------------------------------------------------------------- the checked inputs


@dataclass
class Job:
    """What one script is rendered from, every value checked and made absolute."""

    nodes: int
    gpus_per_node: int
    job_name: str
    log_dir: str
    run_file: str
    workdir: str
    lead: int  # seconds before the time limit that USR1 arrives
    port: str | None  # None: one per job, from the job id
    want_gpus: bool
    launch: Launch


def validate(plan: "LaunchPlan", *, job_name: str, nodes: int, gpus_per_node: int, time: str | None,
             log_dir: str | os.PathLike, run_file: str | os.PathLike, workdir: str | os.PathLike | None,
             cpus_per_task: int | None, signal_lead: int | None, main_process_port: int | None,
             request_gpus: bool | None) -> Job:
    """The inputs ``render_sbatch`` takes, checked (UsageError naming the option) and normalized."""
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
    launch = split_launch(plan.accelerate_command or plan.command)
    port = main_process_port if main_process_port is not None else launch.port
    if port is not None:
        port = check_line("--main-process-port", str(port))
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(Problem("main_process_port", f"not a TCP port: {port!r}", "use 1..65535"))
    log_dir = os.path.abspath(os.fspath(log_dir))
    run_file = os.path.abspath(os.fspath(run_file))
    workdir = os.path.abspath(os.fspath(workdir)) if workdir is not None else os.getcwd()
    job_name = check_line("--job-name", job_name)
    if not job_name.strip():
        raise UsageError(Problem("--job-name", "is empty", "pass a name, e.g. --job-name zephyr-sft"))
    check_line("run file", run_file)
    check_line("--chdir", workdir)
    for tok in plan.accelerate_command or plan.command:
        check_line("launch command", str(tok))
    check_line("--profile", str(plan.profile))  # it goes into a comment line
    want_gpus = request_gpus if request_gpus is not None else not is_cpu_plan(plan)
    return Job(nodes=nodes, gpus_per_node=gpus_per_node, job_name=job_name, log_dir=log_dir, run_file=run_file,
               workdir=workdir, lead=lead, port=port, want_gpus=want_gpus, launch=launch)


# --------------------------------------------------------------------------- the script's parts


def header(plan: "LaunchPlan", job: Job, *, partition: str | None, time: str | None, account: str | None,
           qos: str | None, constraint: str | None, exclusive: bool, extra_sbatch_args: Sequence[str],
           cpus_per_task: int | None) -> list[str]:
    """The shebang, a comment saying what runs, and the #SBATCH directives."""
    out = ["#!/bin/bash"]
    out.append(f"# alignkit: {plan.task} with profile {plan.profile} on {job.nodes} node(s) x {job.gpus_per_node} "
               f"process(es), global batch {plan.global_batch_size}")
    out.append("# Submit again with `sbatch <this file>`; a requeued or resubmitted job resumes from the last")
    out.append("# complete checkpoint in the output dir. Secrets (HF_TOKEN...) come from the submitting shell.")
    out.append(sbatch_directive("--job-name", job.job_name, where="--job-name"))
    out.append(sbatch_directive("--nodes", job.nodes, where="--nodes"))
    out.append(sbatch_directive("--ntasks-per-node", 1, where="--ntasks-per-node"))
    if job.want_gpus and job.gpus_per_node > 0:
        out.append(sbatch_directive("--gpus-per-node", job.gpus_per_node, where="--gpus-per-node"))
    if cpus_per_task is not None:
        out.append(sbatch_directive("--cpus-per-task", cpus_per_task, where="--cpus-per-task"))
    out.append(sbatch_directive("--output", log_pattern(job.log_dir), where="log dir"))
    out.append(sbatch_directive("--open-mode", "append", where="--open-mode"))
    out.append(sbatch_directive("--chdir", job.workdir, where="--chdir"))
    out += requeue_directives(job.lead)
    for flag, value in (("--partition", partition), ("--time", time), ("--account", account),
                        ("--qos", qos), ("--constraint", constraint)):
        if value is not None and str(value) != "":
            out.append(sbatch_directive(flag, value, where=flag))
    if exclusive:
        out.append("#SBATCH --exclusive")
    out += user_directives(extra_sbatch_args)
    return out


def requeue_directives(lead: int) -> list[str]:
    """Requeueable, and USR1 to the batch shell ``lead`` seconds before the time limit."""
    return ["#SBATCH --requeue", sbatch_directive("--signal", f"B:USR1@{lead}", where="--signal")]


def user_directives(extra_sbatch_args: Sequence[str]) -> list[str]:
    """The user's own sbatch options (``--sbatch-arg``), one directive each."""
    out = []
    for i, arg in enumerate(extra_sbatch_args):
        where = f"--sbatch-arg #{i + 1}"
        arg = check_line(where, str(arg))
        if not arg.startswith("-"):
            raise UsageError(Problem(where, f"not an sbatch option: {arg!r}",
                                     "pass options such as --sbatch-arg=--mem=64G or --sbatch-arg=--mail-type=END"))
        out.append(f"#SBATCH {sbatch_quote(arg)}")
    return out


def signal_handlers() -> list[str]:
    """Strict shell, a log helper, and the USR1/TERM traps of the batch shell."""
    body = ["set -uo pipefail"]
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
    return body


def environment(env_setup: str | None, env: dict[str, str], nodes: int) -> list[str]:
    """The user's setup file, the plan's environment (secrets left out: they come from the submitting
    shell through sbatch's --export=ALL), and a refusal to run on another node count."""
    body = []
    if env_setup:
        setup = os.path.abspath(os.path.expanduser(check_line("--env-setup", env_setup)))
        body.append(f"# environment setup (modules, venv): {setup}")
        body.append(f". {q(setup)} || {{ alignkit_log \"environment setup failed: \"{q(setup)}; exit 1; }}")
    for key, value in env.items():
        if not _ENV_NAME.match(key):
            raise UsageError(Problem(f"env {key!r}", "not a valid environment variable name", "rename it"))
        if _SECRETISH.search(key):
            continue  # secrets are inherited from the submitting environment, never written
        body.append(f"export {key}={q(check_line(f'env {key}', str(value)))}")
    body.append(f"if [ \"${{SLURM_NNODES:-0}}\" != {nodes} ]; then")
    body.append(f"    alignkit_log \"this run was planned for {nodes} node(s) but the job has ${{SLURM_NNODES:-0}}; "
                "the global batch would change\"")
    body.append("    exit 2")
    body.append("fi")
    body.append("# srun does not inherit --cpus-per-task from sbatch (Slurm >= 22.05)")
    body.append("if [ -n \"${SLURM_CPUS_PER_TASK:-}\" ]; then export SRUN_CPUS_PER_TASK=\"$SLURM_CPUS_PER_TASK\"; fi")
    return body


def rendezvous(port: str | None, gpus_per_node: int) -> list[str]:
    """ALIGNKIT_MAIN_PROCESS_IP/PORT and ALIGNKIT_NUM_PROCESSES, exported for every node's command."""
    body = ["# rendezvous: the first host of the allocation, as an address (node names need not resolve)"]
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
    return body


def node_command(launch: Launch, run_file: str, run_file_word: str) -> list[str]:
    """``alignkit_node_cmd``: the accelerate launch every node runs, with the per-node flags.

    Kept literal by the quoted here-document: "$SLURM_NODEID" and the rendezvous variables expand in each
    task's own shell on its node, never in the batch shell. ``run_file`` goes into the launch target,
    ``run_file_word`` (the same path as one shell word) into the check that every node sees it."""
    target = replace_run_file(launch.target, run_file)
    per_node = [*launch.prefix, *launch.flags]
    body = ["# what every node runs; expanded by each task's own shell, on its node"]
    body.append("read -r -d '' alignkit_node_cmd <<'ALIGNKIT_NODE_CMD'")
    # Slurm signals every process of a step. The launcher (accelerate, torchrun's agent) must outlive the
    # trainer's checkpoint: started with TERM and USR1 ignored, accelerate's simple launcher stays up and
    # torchrun's agent installs its own TERM handler; the trainer installs its own handlers for both.
    body.append("trap '' TERM USR1")
    body.append(f"if [ ! -f {run_file_word} ]; then")
    body.append(f"    echo \"alignkit: run file \"{run_file_word}\" not found on $(hostname): the output dir must be "
                "on a filesystem every node shares\" >&2")
    body.append("    exit 2")
    body.append("fi")
    body.append(f"exec {shlex.join(per_node)} \\")
    body.append('    --num_machines "$SLURM_NNODES" --num_processes "$ALIGNKIT_NUM_PROCESSES" \\')
    body.append('    --machine_rank "$SLURM_NODEID" --main_process_ip "$ALIGNKIT_MAIN_PROCESS_IP" \\')
    body.append('    --main_process_port "$ALIGNKIT_MAIN_PROCESS_PORT" --rdzv_backend static --same_network \\')
    body.append(f"    {shlex.join(target)}")
    body.append("ALIGNKIT_NODE_CMD")
    return body


def run_step(nodes: int) -> list[str]:
    """srun the node command, one task per node, and wait for it through trapped signals."""
    srun = ["srun", "--kill-on-bad-exit=1", "--nodes=\"$SLURM_NNODES\"", "--ntasks=\"$SLURM_NNODES\"",
            "--ntasks-per-node=1"]
    if nodes > 1:
        srun.append("--label")
    body = ["# one task per node"]
    body.append(f"{' '.join(srun)} bash -c \"$alignkit_node_cmd\" &")
    body.append("alignkit_srun_pid=$!")
    body.append("if [ \"$alignkit_preempted\" = 1 ]; then sleep 1; scancel --signal=USR1 \"$SLURM_JOB_ID\" || true; fi")
    body.append("# a trapped signal interrupts `wait`: keep waiting until the step is gone")
    body.append("while kill -0 \"$alignkit_srun_pid\" 2>/dev/null; do wait \"$alignkit_srun_pid\"; done")
    body.append("wait \"$alignkit_srun_pid\"")
    body.append("alignkit_rc=$?")
    return body


def requeue_if_stopped(status_file_word: str) -> list[str]:
    """After USR1 the trainer saves a checkpoint and stops (exit 0 or not): the run's status file tells a
    stopped run (requeue it: the next start resumes) from a finished one (exit with its code)."""
    body = [f"alignkit_status_file={status_file_word}"]
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
    return body


# --------------------------------------------------------------------------- the script


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
    variant: "Variant | None" = None,
) -> str:
    """The sbatch script that runs ``plan`` on ``nodes`` nodes, ``gpus_per_node`` processes each.

    ``env_setup`` is a shell file sourced before the launch (modules, a venv); its path is quoted, its
    content is the user's own. ``run_file`` is the run YAML the trainer reads (it must be on a filesystem
    every node sees; the script checks). GPUs are requested (``--gpus-per-node``) when
    ``gpus_per_node > 0`` and the plan is not a CPU plan (``request_gpus`` forces either way).
    Raises UsageError naming the field for a value that cannot be written safely. ``variant`` changes
    what differs in a job array's script (``array.render_array_sbatch``); by default, one run.
    """
    variant = variant if variant is not None else Variant()
    job = validate(plan, job_name=job_name, nodes=nodes, gpus_per_node=gpus_per_node, time=time, log_dir=log_dir,
                   run_file=run_file, workdir=workdir, cpus_per_task=cpus_per_task, signal_lead=signal_lead,
                   main_process_port=main_process_port, request_gpus=request_gpus)
    lines = header(plan, job, partition=partition, time=time, account=account, qos=qos, constraint=constraint,
                   exclusive=exclusive, extra_sbatch_args=extra_sbatch_args, cpus_per_task=cpus_per_task)
    lines = variant.header(lines, job)
    lines.append("")
    lines += signal_handlers()
    lines += variant.select_run()
    lines += environment(env_setup, plan.env, job.nodes)
    lines += rendezvous(job.port, job.gpus_per_node)
    lines.append("")
    lines += variant.node_command(job)
    lines += run_step(job.nodes)
    lines += requeue_if_stopped(variant.status_file_word(job))
    text = variant.checked("\n".join(lines) + "\n")
    from alignkit.secrets import redact

    return redact(text)


class Variant:
    """What a script makes of its run: here, the one run of ``run_file``. A job array's (``array.Tasks``)
    edits the header, picks the run of each task and names its files through a shell variable."""

    def header(self, lines: list[str], job: Job) -> list[str]:
        return lines

    def select_run(self) -> list[str]:
        return []

    def node_command(self, job: Job) -> list[str]:
        return node_command(job.launch, job.run_file, q(job.run_file))

    def status_file_word(self, job: Job) -> str:
        return q(layout.status_file_beside(job.run_file))

    def checked(self, text: str) -> str:
        return text
