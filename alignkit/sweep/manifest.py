"""``SWEEP_DIR/sweep.yaml``: what a sweep is, so that ``status`` and ``report`` work from any machine that
sees the files, and so that a different sweep is never run into the same dir by mistake.

It holds the task, recipe, profile, config files and base overrides, the grid (keys and values, in
order), the random sample if any, the base config's hash, and each point: index, name, run dir (relative to
the sweep dir, so the dir can move), its swept values and its overrides. Written atomically.

The refusal rule is the one runs follow: the same sweep into the same dir resumes; a different grid or
base config is refused unless ``--overwrite``; a non-empty dir that holds no sweep is refused too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.errors import ConfigError, Problem, UsageError

MANIFEST = "sweep.yaml"
VERSION = 1


@dataclass
class Manifest:
    task: str
    grid: dict[str, list[Any]]  # key -> values (parsed), in grid order
    base_hash: str
    points: list[dict[str, Any]]  # {index, name, dir, values, overrides}
    recipe: str | None = None
    profile: str | None = None
    config_files: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    random: dict[str, int] | None = None  # {"n": N, "seed": S}
    created: str = ""
    slurm: dict[str, Any] | None = None  # the last job array: {"job_id", "script", "log"}

    def identity(self) -> dict[str, Any]:
        """What makes two sweeps the same sweep."""
        return {"task": self.task, "grid": self.grid, "base_hash": self.base_hash, "random": self.random,
                "points": [p["name"] for p in self.points]}

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "kind": "alignkit-sweep", "task": self.task, "recipe": self.recipe,
                "profile": self.profile, "config_files": self.config_files, "overrides": self.overrides,
                "grid": self.grid, "random": self.random, "base_hash": self.base_hash, "created": self.created,
                "points": self.points, **({"slurm": self.slurm} if self.slurm else {})}

    def point_dir(self, sweep_dir: str | Path, point: dict[str, Any]) -> Path:
        return Path(sweep_dir) / point["dir"]


def manifest_path(sweep_dir: str | Path) -> Path:
    return Path(sweep_dir) / MANIFEST


def read(sweep_dir: str | Path) -> Manifest:
    """The manifest of a sweep dir; UsageError (exit 2) naming the file when there is none or it is damaged."""
    from alignkit.config.yamlio import read_yaml

    path = manifest_path(sweep_dir)
    if not path.is_file():
        raise UsageError(Problem(str(sweep_dir), f"holds no sweep ({MANIFEST} not found)",
                                 "pass the --output dir of an `alignkit sweep sft|dpo` run"))
    data = read_yaml(path)
    fix = "it is written by `alignkit sweep`; run the sweep command again (with --overwrite to start over)"
    if not isinstance(data, dict) or data.get("kind") != "alignkit-sweep":
        raise UsageError(Problem(str(path), "is not an alignkit sweep manifest", fix))
    try:
        points = [dict(p) for p in data["points"]]
        for p in points:
            int(p["index"]), str(p["name"]), str(p["dir"]), dict(p.get("values") or {})
        return Manifest(task=str(data["task"]), grid=dict(data.get("grid") or {}), base_hash=str(data["base_hash"]),
                        points=points, recipe=data.get("recipe"), profile=data.get("profile"),
                        config_files=list(data.get("config_files") or []), overrides=list(data.get("overrides") or []),
                        random=data.get("random"), created=str(data.get("created") or ""), slurm=data.get("slurm"))
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(Problem(str(path), f"damaged manifest ({type(exc).__name__}: {exc})", fix)) from None


def write(sweep_dir: str | Path, manifest: Manifest) -> Path:
    from alignkit.config.yamlio import dump_yaml
    from alignkit.fsutil import write_atomic
    from alignkit.secrets import redact_data

    if not manifest.created:
        manifest.created = time.strftime("%Y-%m-%dT%H:%M:%S")
    path = manifest_path(sweep_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, dump_yaml(redact_data(manifest.to_dict())))
    return path


def _diff(old: Manifest, new: Manifest) -> str:
    if old.task != new.task:
        return f"a {old.task} sweep, not {new.task}"
    if old.grid != new.grid:
        return f"a different grid ({_grid_text(old.grid)})"
    if old.random != new.random:
        return f"a different random sample ({old.random})"
    if old.base_hash != new.base_hash:
        return "the same grid over a different base config (recipe, profile, config files or overrides)"
    return "different points"


def _grid_text(grid: dict[str, list[Any]]) -> str:
    return "; ".join(f"{k}={','.join(str(v) for v in vals)}" for k, vals in grid.items()) or "no grid"


def claim(sweep_dir: str | Path, new: Manifest, *, overwrite: bool) -> Manifest | None:
    """Check that ``new`` may run into ``sweep_dir``. Returns the manifest already there when it is the same
    sweep (a resume), None for a new one. Raises ConfigError (exit 2) for a different sweep or a dir holding
    something else, unless ``overwrite``. Writes nothing."""
    sweep_dir = Path(sweep_dir)
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise ConfigError(Problem("--output", f"{sweep_dir} is a file", "choose a directory path"))
    path = manifest_path(sweep_dir)
    if path.is_file():
        try:
            old = read(sweep_dir)
        except UsageError:
            if overwrite:
                return None
            raise
        if old.identity() == new.identity():
            return old
        if overwrite:
            return None
        raise ConfigError(Problem(str(sweep_dir), f"holds {_diff(old, new)}",
                                  f"pass --overwrite to start over (points that change are retrained), or choose "
                                  f"another --output; compare with {path}"))
    if sweep_dir.is_dir() and any(sweep_dir.iterdir()) and not overwrite:
        raise ConfigError(Problem(str(sweep_dir), "is not empty and holds no sweep",
                                  "choose an empty or new --output, or pass --overwrite"))
    return None
