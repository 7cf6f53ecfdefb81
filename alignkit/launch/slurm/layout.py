"""Every run-dir path this package uses, in one place: where the run file, its status file, the sbatch
script and the job logs live inside ``<output_dir>``.

The run dir's names come from the run contract (alignkit.launch.run, cheap to import: no pydantic, no
config, so `alignkit slurm status/logs/cancel` stay fast); what only Slurm puts there (the sbatch script,
the job logs) is named here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from alignkit.launch.run import RUN_FILE, RUN_SUBDIR, STATUS_FILE  # noqa: F401 (re-exported)


def run_dir(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / RUN_SUBDIR


def run_file(output_dir: str | os.PathLike) -> Path:
    return run_dir(output_dir) / RUN_FILE


def status_file(output_dir: str | os.PathLike) -> Path:
    return run_dir(output_dir) / STATUS_FILE


def status_file_beside(run_file_path: str) -> str:
    """The status file of the run whose run file is ``run_file_path`` (the job knows only that path)."""
    return os.path.join(os.path.dirname(run_file_path), STATUS_FILE)


def log_dir(output_dir: str | os.PathLike) -> Path:
    """Where the job's ``slurm-<jobid>.out`` goes."""
    return run_dir(output_dir)


def script_path(output_dir: str | os.PathLike, job_name: str) -> Path:
    """``<output_dir>/alignkit/slurm-<job name, made a file name>.sbatch``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", job_name).strip("._") or "job"
    return run_dir(output_dir) / f"slurm-{safe}.sbatch"


def output_dir_from_script(command: str) -> str | None:
    """The output dir of a job whose batch script alignkit wrote (``script_path``), from scontrol's Command."""
    if not command:
        return None
    p = Path(command)
    if p.parent.name == RUN_SUBDIR and p.name.startswith("slurm-") and p.suffix == ".sbatch":
        return str(p.parent.parent)
    return None
