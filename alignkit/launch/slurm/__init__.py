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

Modules, bottom up (each imports only those before it):
  values   one-line checks, #SBATCH quoting, time limits, the USR1 lead
  layout   every run-dir path the package uses (the run file, its status file, the script, the log dir)
  query    running scontrol/sacct/squeue and parsing their answers into JobInfo
  logs     the --output pattern, the trainer's loss lines, reading/following a log
  render   the sbatch script, part by part
  array    the script of a job array (one task per run: a sweep's points), from render's parts
  tasks    a job array's tasks, one JobInfo each (controller, jobcomp, sacct, then the task's run)
  jobs     submit, the registry of submitted jobs, status, cancel, a job's log (arrays: one row per task)

Standard library only at module level: the CLI imports this package.
"""

from __future__ import annotations

from alignkit.launch.slurm.array import array_log_pattern, array_spec, render_array_sbatch
from alignkit.launch.slurm.jobs import (
    array_status, busy_jobs, cancel, job_info, job_logs, list_jobs, log_path, registry_path, run_progress, status, submit,
    write_script,
)
from alignkit.launch.slurm.logs import expand_pattern, log_file, log_pattern, log_progress
from alignkit.launch.slurm.query import ACTIVE_STATES, JobInfo, parse_keyvals
from alignkit.launch.slurm.render import render_sbatch
from alignkit.launch.slurm.values import parse_time_limit, sbatch_quote, signal_lead_for

__all__ = [
    "ACTIVE_STATES", "JobInfo", "array_log_pattern", "array_spec", "array_status", "render_array_sbatch",
    "busy_jobs", "cancel", "expand_pattern", "job_info", "job_logs", "list_jobs",
    "log_file", "log_path", "log_pattern", "log_progress", "parse_keyvals", "parse_time_limit", "registry_path",
    "render_sbatch", "run_progress", "sbatch_quote", "signal_lead_for", "status", "submit", "write_script",
]
