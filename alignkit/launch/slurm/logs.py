"""A job's log: where Slurm writes it (the ``--output`` pattern and its expansion), the trainer's newest
loss line in it, and reading it, once or following it until the job ends.

A requeued job appends to the same file (``--open-mode=append``); all nodes write into it.
Standard library only: imported by the CLI.
"""

from __future__ import annotations

import ast
import os
import re
import time as _time
from pathlib import Path
from typing import Any, Iterator

from alignkit.errors import Problem, RuntimeFailure
from alignkit.launch.slurm import query
from alignkit.launch.slurm.values import slurm_path

LOG_NAME = "slurm-%j.out"  # inside the log dir; %j: the job id


def log_pattern(log_dir: str | os.PathLike) -> str:
    """The --output pattern: ``<log_dir>/slurm-%j.out`` with any '%' of the directory doubled."""
    return slurm_path("log dir", os.path.abspath(os.fspath(log_dir))) + "/" + LOG_NAME


def log_file(log_dir: str | os.PathLike, job_id: str) -> Path:
    """The log file of job ``job_id`` whose --output was ``log_pattern(log_dir)``."""
    return Path(expand_pattern(log_pattern(log_dir), job_id))


def expand_pattern(pattern: str, job_id: str, job_name: str = "", user: str = "") -> str:
    """Expand Slurm's filename pattern (as StdOut shows it) into the real path."""
    if "\\" in pattern:  # a backslash turns expansion off
        return pattern.replace("\\", "")
    array_id, _, task = str(job_id).partition("_")  # an array task: 123_4 (%A 123, %a 4)
    values = {"j": job_id, "J": job_id, "A": array_id, "a": task or "4294967294", "x": job_name,
              "u": user or os.environ.get("USER", "")}

    def sub(m: re.Match) -> str:
        width, code = m.group(1), m.group(2)
        if code == "%":
            return "%"
        if code not in values:
            return m.group(0)
        v = values[code]
        return v.zfill(int(width)) if width and v.isdigit() else v

    return re.sub(r"%(\d*)([%jJAaxu])", sub, pattern)


_LOSS_LINE = re.compile(r"\{'loss': [^{}\n]*\}")


def log_progress(log: str | os.PathLike, tail_bytes: int = 262144) -> dict[str, Any] | None:
    """The newest ``{'loss': ..., 'epoch': ...}`` line the trainer printed into the job's log."""
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


def read_log(info: query.JobInfo, follow: bool = False, *, poll: float = 1.0,
             idle_exit: float = 2.0) -> Iterator[str]:
    """The log of the job ``info`` describes, as chunks of text. With ``follow``, keeps reading until the
    job has ended (asking the controller every ``poll`` seconds) and ``idle_exit`` seconds passed quietly."""
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
        now = query.from_scontrol(info.job_id)
        active = now is not None and now.active
        if not active:
            if ended_at is None:
                ended_at = _time.monotonic()
            elif _time.monotonic() - ended_at > idle_exit and not chunk:
                return
        else:
            ended_at = None
        _time.sleep(poll)
