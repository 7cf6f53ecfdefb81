"""Plan a whole sweep before anything runs: the grid, every point validated and planned as its own run
(every problem of every point at once, each naming its point), the sweep dir and the manifest."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignkit.errors import ConfigError, Problem, UsageError
from alignkit.sweep import grid as grid_mod
from alignkit.sweep import runs
from alignkit.sweep.manifest import Manifest

if TYPE_CHECKING:  # pragma: no cover
    from alignkit.launch.spec import LaunchPlan


@dataclass
class SweepSpec:
    task: str
    recipe: str | None = None
    profile: str | None = None
    config_files: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)  # for every point (--max_steps=...)
    grid: list[str] = field(default_factory=list)  # the --grid options as given
    random: int | None = None
    seed: int = 0
    output: str | None = None
    num_gpus: int | None = None
    num_nodes: int | None = None
    slurm: bool = False  # plan for a job array (always `accelerate launch`)


@dataclass
class PlannedPoint:
    point: grid_mod.Point
    plan: "LaunchPlan"
    output_dir: Path
    overrides: list[str]  # the point's full override list (base + swept + its output dir)

    def command(self, spec: SweepSpec) -> list[str]:
        """The `alignkit sft|dpo ...` command that runs this point by itself."""
        cmd = ["alignkit", spec.task]
        if spec.recipe:
            cmd += ["--recipe", spec.recipe]
        if spec.profile:
            cmd += ["--profile", spec.profile]
        for c in spec.config_files:
            cmd += ["--config", c]
        if spec.num_gpus is not None:
            cmd += ["--num-gpus", str(spec.num_gpus)]
        if spec.num_nodes is not None:
            cmd += ["--num-nodes", str(spec.num_nodes)]
        return cmd + self.overrides


@dataclass
class SweepPlan:
    spec: SweepSpec
    sweep_dir: Path
    axes: list[grid_mod.Axis]
    points: list[PlannedPoint]
    manifest: Manifest

    def to_json(self) -> dict[str, Any]:
        from alignkit.secrets import redact

        return {
            "task": self.spec.task, "sweep_dir": str(self.sweep_dir),
            "grid": {a.key: a.values for a in self.axes},
            "random": self.manifest.random, "base_hash": self.manifest.base_hash,
            "points": [{"index": pp.point.index, "name": pp.point.name, "values": pp.point.values,
                        "output_dir": str(pp.output_dir), "command": [redact(c) for c in pp.command(self.spec)],
                        "launch": [redact(c) for c in pp.plan.command]} for pp in self.points],
        }


def _default_sweep_dir(spec: SweepSpec) -> Path:
    """The recipe's output dir + ``-sweep`` (``runs/tiny/sft`` -> ``runs/tiny/sft-sweep``)."""
    try:
        base = runs.plan_point(spec.task, recipe=spec.recipe, profile=spec.profile, config_files=spec.config_files,
                               overrides=spec.overrides, num_gpus=spec.num_gpus, num_nodes=spec.num_nodes,
                               dry_run=True)
    except ConfigError:
        return Path(os.path.abspath(f"{spec.task}-sweep"))  # the problems are reported per point below
    return Path(base.output_dir + "-sweep")


def grouped(found: list[tuple[grid_mod.Point, Problem]], total: int) -> list[Problem]:
    """The same problem in several points is said once, naming them all ("every point" when all)."""
    groups: dict[tuple, list[grid_mod.Point]] = {}
    for point, pr in found:
        groups.setdefault((pr.where, pr.message, pr.fix, pr.source), []).append(point)
    out = []
    for (where, message, fix, source), pts in groups.items():
        if len(pts) == 1:
            tag = pts[0].label
        elif len(pts) == total and total > 1:
            tag = f"every point ({total})"
        else:
            tag = "points " + ", ".join(str(p.index) for p in pts)
        out.append(Problem(f"[{tag}] {where}", message, fix, source))
    return out


def plan_sweep(spec: SweepSpec, *, dry_run: bool = False) -> SweepPlan:
    """Parse and expand the grid, validate and plan every point. Raises UsageError/ConfigError (exit 2) with
    every problem of every point; writes nothing."""
    axes, usage = grid_mod.read_grid(spec.grid)
    usage += grid_mod.base_override_problems(axes, spec.overrides)
    if not axes and not usage:
        usage.append(Problem("--grid", "no grid given", "pass --grid key=v1,v2 (repeatable)"))
    if not axes:
        raise UsageError(usage, title="invalid sweep")
    # the points of the valid axes are still checked, so that every problem is reported at once
    points = grid_mod.expand(axes, sample=spec.random, seed=spec.seed)
    sweep_dir = Path(os.path.abspath(os.path.expanduser(spec.output))) if spec.output else _default_sweep_dir(spec)
    planned: list[PlannedPoint] = []
    found: list[tuple[grid_mod.Point, Problem]] = []
    for point in points:
        out = sweep_dir / point.name
        overrides = [*spec.overrides, *point.overrides(), f"--output_dir={out}"]
        try:
            plan = runs.plan_point(spec.task, recipe=spec.recipe, profile=spec.profile,
                                   config_files=spec.config_files, overrides=overrides, num_gpus=spec.num_gpus,
                                   num_nodes=spec.num_nodes, dry_run=dry_run, via_accelerate=spec.slurm)
        except ConfigError as exc:
            found += [(point, pr) for pr in exc.problems]
            continue
        planned.append(PlannedPoint(point, plan, out, overrides))
    if found or usage:
        # a grid/command-line problem is a usage error; either way exit 2 with everything found
        raise (ConfigError if found else UsageError)(usage + grouped(found, len(points)), title="invalid sweep")
    first = runs.config_dict(planned[0].plan)
    drop = [s for s in (runs.section_of(first, a.key) for a in axes) if s]
    manifest = Manifest(
        task=spec.task, grid={a.key: a.values for a in axes}, base_hash=runs.config_hash(first, drop),
        points=[{"index": pp.point.index, "name": pp.point.name, "dir": pp.point.name, "values": pp.point.values,
                 "overrides": pp.point.overrides()} for pp in planned],
        recipe=spec.recipe, profile=spec.profile, config_files=list(spec.config_files),
        overrides=list(spec.overrides), random={"n": spec.random, "seed": spec.seed} if spec.random else None,
    )
    return SweepPlan(spec, sweep_dir, axes, planned, manifest)


def command_text(pp: PlannedPoint, spec: SweepSpec) -> str:
    from alignkit.secrets import redact

    return redact(shlex.join(pp.command(spec)))
