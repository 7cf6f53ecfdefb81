"""The run contract: the layout of a run directory, and the run file the launcher writes for the trainer.

Every run lives in its output dir::

    <output_dir>/
        checkpoint-N/alignkit-complete.json   a checkpoint whose writing finished (CHECKPOINT_MARKER)
        alignkit/                             the run dir (RunDir)
            run.yaml          the run file: what to train (RunFile, written by the launcher, read by the trainer)
            status.json       what the training processes last said (running, preempted, completed)
            lock              the live run's owner (pid, host, process group)
            env.json          library versions and the world the trainer saw
            model.json        what was loaded (parameter counts, speed settings in effect)
            accelerate.yaml   accelerate's config for `accelerate launch`
            deepspeed.json    the DeepSpeed config (ZeRO runs)
            command.sh        re-runs this launch
            data/             the mixed data the trainer reads (a `alignkit mix build` directory)
            sft-merged/       an SFT adapter merged into its base (DPO from an adapter)

Everything that needs one of these paths asks this module; the run file's content is alignkit.launch.run.file.
Cheap to import (no pydantic, no config): `alignkit slurm status/logs` use it too.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.fsutil import write_json_atomic

RUN_SUBDIR = "alignkit"
RUN_FILE = "run.yaml"
STATUS_FILE = "status.json"
LOCK_FILE = "lock"
ENV_FILE = "env.json"
MODEL_FILE = "model.json"
ACCELERATE_FILE = "accelerate.yaml"
DEEPSPEED_FILE = "deepspeed.json"
COMMAND_FILE = "command.sh"
DATA_DIR = "data"
MERGED_DIR = "sft-merged"
# written into a checkpoint (and a merged model dir) once its writing finished
CHECKPOINT_MARKER = "alignkit-complete.json"


@dataclass(frozen=True)
class RunDir:
    """The paths of one run, from its output dir (``RunDir.of(output_dir)``) or its run file
    (``RunDir.of_run_file(path)``)."""

    output_dir: Path

    @classmethod
    def of(cls, output_dir: str | os.PathLike) -> RunDir:
        return cls(Path(output_dir))

    @classmethod
    def of_run_file(cls, run_file: str | os.PathLike) -> RunDir:
        return cls(Path(run_file).parent.parent)

    @property
    def path(self) -> Path:
        return self.output_dir / RUN_SUBDIR

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def status_file(self) -> Path:
        return self.path / STATUS_FILE

    @property
    def lock(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def env_file(self) -> Path:
        return self.path / ENV_FILE

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def accelerate_config(self) -> Path:
        return self.path / ACCELERATE_FILE

    @property
    def deepspeed_config(self) -> Path:
        return self.path / DEEPSPEED_FILE

    @property
    def command_file(self) -> Path:
        return self.path / COMMAND_FILE

    @property
    def data_dir(self) -> Path:
        return self.path / DATA_DIR

    @property
    def merged_dir(self) -> Path:
        return self.path / MERGED_DIR

    # ------------------------------------------------------------------ status

    def read_status(self) -> dict[str, Any]:
        """What the training processes last said about the run ({} when nothing was said yet)."""
        try:
            status = json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}
        return status if isinstance(status, dict) else {}

    def write_status(self, state: str, **extra: Any) -> None:
        write_json_atomic(self.status_file, {"state": state, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra})

    def clear_status(self) -> None:
        self.status_file.unlink(missing_ok=True)

    # ------------------------------------------------------------------ checkpoints

    def checkpoints(self) -> list[Path]:
        """`checkpoint-N` directories, complete or not, in step order."""
        found = []
        for p in self.output_dir.glob("checkpoint-*"):
            suffix = p.name.split("-", 1)[1]
            if p.is_dir() and suffix.isdigit():
                found.append((int(suffix), p))
        return [p for _, p in sorted(found)]


def is_complete(directory: str | os.PathLike) -> bool:
    """A checkpoint or merged model dir whose writing finished (it carries the marker)."""
    return (Path(directory) / CHECKPOINT_MARKER).is_file()


def mark_complete(directory: str | os.PathLike, info: dict[str, Any]) -> None:
    write_json_atomic(Path(directory) / CHECKPOINT_MARKER, info)


def run_dir(output_dir: str | os.PathLike) -> Path:
    """``<output_dir>/alignkit``."""
    return RunDir.of(output_dir).path


def read_status(output_dir: str | os.PathLike) -> dict[str, Any]:
    """What the training processes last said about the run in ``output_dir``."""
    return RunDir.of(output_dir).read_status()
