"""Every run-dir path this package uses, in one place: where the run file, its status file, the sbatch
script and the job logs live inside ``<output_dir>``.

The names mirror the run dir's owners today, ``launch.build.RUN_SUBDIR``/``run_dir`` and
``train.common.STATUS_FILE`` (a unit test keeps them equal). They are copied, not imported, because
importing those modules costs ~0.4 s (config, pydantic) that `alignkit slurm status/logs/cancel` should
not pay. When the run contract exists, point the three constants below at it: nothing else here changes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

RUN_SUBDIR = "alignkit"  # <output_dir>/alignkit/ (launch.build.RUN_SUBDIR)
RUN_FILE = "run.yaml"  # what the trainer reads (launch.spawn.write_run_files)
STATUS_FILE = "status.json"  # what the trainer writes (train.common.STATUS_FILE)


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
