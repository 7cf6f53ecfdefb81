"""The run file, ``<output_dir>/alignkit/run.yaml``: what the launcher planned, as one typed model the training
processes load with one call. Where it lies is alignkit.launch.run (RunDir)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from alignkit.config.run import RunConfig, run_model
from alignkit.launch.run.layout import RunDir


class DataBuild(BaseModel):
    """The mixed data a run trains on: an `alignkit mix build` directory the launcher wrote into the run dir.
    ``manifest_sha256`` pins its manifest (which pins every data file by size and sha256)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    key: str | None = None  # the build's input key (what went in); None when an input could not be pinned
    manifest_sha256: str


class RunFile(BaseModel):
    """``<output_dir>/alignkit/run.yaml``: what the launcher planned, read by every training process.

    Written by the launcher (``to_yaml``: the config as RunConfig.to_dict gives it, secrets redacted), loaded by
    the trainer with one call (``RunFile.load``) into the same typed config. Files written before ``data``
    existed load as they are (the trainer then mixes the data itself)."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    alignkit_version: str | None = None
    task: Literal["sft", "dpo", "orpo", "cpt"]
    profile: str | None = None
    resume: bool = False
    world_size: int | None = None
    global_batch_size: int | None = None
    argv: list[str] = Field(default_factory=list)
    config: RunConfig
    data: DataBuild | None = None

    @property
    def output_dir(self) -> Path:
        return Path(self.config.train.output_dir)

    @property
    def layout(self) -> RunDir:
        return RunDir.of(self.output_dir)

    def to_yaml(self) -> str:
        from alignkit.config.yamlio import dump_yaml
        from alignkit.secrets import redact_data

        doc: dict[str, Any] = self.model_dump(mode="json", exclude={"config", "data"})
        doc["config"] = self.config.to_dict()
        if self.data is not None:
            doc["data"] = self.data.model_dump(mode="json")
        return dump_yaml(redact_data(doc))

    @classmethod
    def load(cls, path: str | os.PathLike, task: str | None = None) -> RunFile:
        """Read and validate a run file (ConfigError naming the file and field when it is not one)."""
        from pydantic import ValidationError

        from alignkit.config.yamlio import read_yaml
        from alignkit.errors import ConfigError, Problem

        raw = read_yaml(path)
        if not isinstance(raw, dict) or not isinstance(raw.get("config"), dict):
            raise ConfigError(Problem(str(path), "is not an alignkit run file (no `config` mapping)",
                                      "start the run with `alignkit sft|dpo|orpo|cpt`, which writes it"))
        task = task or raw.get("task") or raw["config"].get("task")
        from alignkit.config.tasks import TASKS

        if task not in TASKS:
            raise ConfigError(Problem(f"{path}: task", f"unknown task {task!r}", f"use one of {', '.join(TASKS)}"))
        try:
            return run_file_model(task).model_validate(raw)
        except ValidationError as exc:
            raise ConfigError([Problem(f"{path}: {'.'.join(str(x) for x in err['loc'])}",
                                       err["msg"].removeprefix("Value error, "),
                                       "start the run again with `alignkit sft|dpo|orpo|cpt` (it rewrites the run file)")
                               for err in exc.errors()]) from None


@lru_cache(maxsize=8)
def run_file_model(task: str) -> type[RunFile]:
    """RunFile whose `config` is the task's typed config (run_model(task))."""
    return create_model(f"{task.upper()}RunFile", __base__=RunFile,  # type: ignore[call-overload]
                        config=(run_model(task), ...))
