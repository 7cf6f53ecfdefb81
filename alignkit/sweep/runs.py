"""The one place where a sweep touches the run machinery: plan a point, preflight it, claim and spawn it,
write its run files, read its status. Every point is an ordinary run, started exactly as ``alignkit sft|dpo``
starts one: ``launch.build`` plans it, ``launch.spawn`` claims, writes and spawns it, ``launch.preflight``
checks it and mixes its data into its run dir, ``launch.run`` says where its files are.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from alignkit.launch.spec import LaunchPlan


def plan_point(task: str, *, recipe: str | None, profile: str | None, config_files: list[str],
               overrides: list[str], num_gpus: int | None = None, num_nodes: int | None = None,
               dry_run: bool = False, via_accelerate: bool = False) -> "LaunchPlan":
    """Validate one point as `alignkit sft|dpo` would and plan its launch (raises ConfigError)."""
    from alignkit.launch.build import plan_run

    return plan_run(task, recipe=recipe, profile=profile, config_files=config_files, overrides=overrides,
                    num_gpus=num_gpus, num_nodes=num_nodes, dry_run=dry_run, via_accelerate=via_accelerate)


def config_dict(plan: "LaunchPlan") -> dict[str, Any]:
    """The point's resolved config as run.yaml holds it."""
    return plan.config.to_dict()


def push_to_hub(plan: "LaunchPlan") -> bool:
    return bool(plan.config.train.push_to_hub)


def preflight(plan: "LaunchPlan") -> None:
    """The checks `alignkit sft|dpo` make before launching (model dir, chat template), and the data mixed into
    the point's run dir (the demo's assets built first when the tiny recipe uses them)."""
    from alignkit.demo.assets import demo_root, ensure_demo_assets
    from alignkit.launch.preflight import preflight as _preflight

    root = str(demo_root())
    paths = [plan.config.model.model_name_or_path, *(s.path or "" for s in plan.config.data.mixture)]
    if any(str(p).startswith(root) for p in paths):
        ensure_demo_assets()
    _preflight(plan)


def run_point(plan: "LaunchPlan", *, overwrite: bool, argv: list[str],
              on_start: Callable[[Any], None] | None = None) -> int:
    """Claim the point's output dir, preflight it, write its run files and train it in this terminal (its own
    process group; Ctrl-C and SIGTERM forwarded). The exit code of the training, 0 for an already completed
    run (``on_start`` sees ``claim.completed``)."""
    from alignkit.launch import spawn

    return spawn.run(plan, overwrite=overwrite, argv=argv, on_start=on_start, check=preflight)


def prepare_point(plan: "LaunchPlan", *, overwrite: bool, argv: list[str], write: bool) -> str:
    """Claim the point's dir and preflight it (its data mixed into its run dir), without starting anything;
    ``write``: and write its run files (a job array's task starts from them). Returns "completed" (the same run
    already finished: nothing done), "resume" or "start". Raises what preflight raises."""
    from alignkit.launch import spawn

    claim = spawn.claim_output_dir(plan, overwrite)
    try:
        if claim.resume and read_status(plan.output_dir).get("state") == "completed":
            return "completed"
        preflight(plan)
        if write:
            spawn.write_run_files(plan, resume=claim.resume, argv=argv)
            _layout(plan.output_dir).clear_status()
        return "resume" if claim.resume else "start"
    finally:
        claim.lock_path.unlink(missing_ok=True)


def _layout(output_dir: str | Path):
    from alignkit.launch.run import RunDir

    return RunDir.of(output_dir)


def run_dir(output_dir: str | Path) -> Path:
    return _layout(output_dir).path


def run_file(output_dir: str | Path) -> Path:
    return _layout(output_dir).run_file


def read_status(output_dir: str | Path) -> dict[str, Any]:
    """What the trainer last said about a run ({} when nothing): state running|completed|preempted|failed."""
    status = _layout(output_dir).read_status()
    return status if isinstance(status, dict) else {}


def has_run(output_dir: str | Path) -> bool:
    return run_file(output_dir).is_file()


def is_locked(output_dir: str | Path) -> bool:
    """A live run on this host holds the run dir's lock (as a new run would find it: busy)."""
    from alignkit.launch import spawn

    return spawn.lock_held(_layout(output_dir).lock)


def config_hash(config: dict[str, Any], drop: list[tuple[str, str]] = ()) -> str:
    """sha256 of a resolved run config, without its output dir and the ``drop`` (section, key) pairs."""
    cfg = json.loads(json.dumps(config, default=str))
    cfg.get("train", {}).pop("output_dir", None)
    for section, key in drop:
        cfg.get(section, {}).pop(key, None)
    for section, key in (("launch", "num_gpus"), ("launch", "num_nodes"), ("train", "gradient_accumulation_steps")):
        cfg.get(section, {}).pop(key, None)  # the cluster shape, as for a run's resume
    text = json.dumps(cfg, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def section_of(config: dict[str, Any], key: str) -> tuple[str, str] | None:
    """The (section, field) a grid key set in a resolved config: ``lora.r`` -> (lora, r); a flat ``beta`` ->
    the section whose field it is (train first)."""
    if "." in key:
        section, _, name = key.partition(".")
        return section, name
    for section in ("train", "model", "lora", "data", "launch"):
        if isinstance(config.get(section), dict) and key in config[section]:
            return section, key
    return None


def launch_shape(plan: "LaunchPlan") -> dict[str, Any]:
    """What every task of a job array shares: the launch command with the point's run dir left out, the
    environment and the cluster shape."""
    rdir = str(run_dir(plan.output_dir))
    cmd = [str(t).replace(rdir, "<run dir>") for t in (plan.accelerate_command or plan.command)]
    return {"command": cmd, "env": dict(plan.env), "world_size": plan.world_size, "num_nodes": plan.num_nodes,
            "profile": plan.profile}
