"""Run a planned sweep on this machine: the points one after another, each an ordinary run in its own dir.

* Before anything trains, every point is claimed and preflighted as `alignkit sft|dpo` does (model dir, chat
  template, the data mixed into its run dir and validated), every problem of every point at once.
* A finished point is skipped (its run says completed); an interrupted one resumes from its last complete
  checkpoint (the ordinary run resume).
* Ctrl-C stops the running point's processes and the sweep (exit 130); SIGTERM lets the point save a
  checkpoint and stops the sweep (exit 75). Re-running the same command continues.
* A point that fails is reported and the sweep goes on with the next ones (exit 1 at the end).
"""

from __future__ import annotations

from typing import Any, Callable

from alignkit.errors import ConfigError, EXIT_INTERRUPTED, EXIT_PREEMPTED, Problem
from alignkit.sweep import manifest as manifest_mod
from alignkit.sweep import runs
from alignkit.sweep.plan import SweepPlan

Say = Callable[[str], None]


def prepare_all(sp: SweepPlan, *, overwrite: bool, argv: list[str], write: bool) -> tuple[list[int], list[int]]:
    """Before anything trains: claim every point's dir and preflight it as `alignkit sft|dpo` does (model dir,
    chat template, the data mixed into its run dir and validated); ``write``: and write its run files. Every
    problem of every point at once, each naming its point. Returns (points to train, points already completed)."""
    from alignkit.errors import AlignkitError

    todo: list[int] = []
    done: list[int] = []
    found: list[tuple[Any, Problem]] = []
    kind: type[AlignkitError] = ConfigError
    for pp in sp.points:
        try:
            state = runs.prepare_point(pp.plan, overwrite=overwrite, argv=argv, write=write)
        except AlignkitError as exc:
            if exc.exit_code != 2:
                raise
            kind = type(exc) if not found else kind
            found += [(pp.point, pr) for pr in exc.problems]
            continue
        (done if state == "completed" else todo).append(pp.point.index)
    if found:
        from alignkit.sweep.plan import grouped

        raise kind(grouped(found, len(sp.points)), title="invalid sweep")
    return todo, done


def run_sweep(sp: SweepPlan, *, overwrite: bool, argv: list[str], say: Say, warn: Say,
              evaluate: bool = False, eval_limit: int | None = None) -> int:
    """Claim the sweep dir, write the manifest, preflight, then train every point in turn (``evaluate``: and
    run its offline eval once it completed). Returns the exit code."""
    previous = manifest_mod.claim(sp.sweep_dir, sp.manifest, overwrite=overwrite)
    if previous is not None:
        sp.manifest.created = previous.created  # the same sweep, now run here (no job array runs it)
    prepare_all(sp, overwrite=overwrite, argv=argv, write=False)
    manifest_mod.write(sp.sweep_dir, sp.manifest)
    total = len(sp.points)
    failed: list[str] = []
    done = skipped = 0
    for n, pp in enumerate(sp.points, 1):
        head = f"[{n}/{total}] {pp.point.label}"
        seen: dict[str, Any] = {}

        def started(claim, head=head, pp=pp, seen=seen) -> None:
            if claim.note:
                warn(claim.note)
            seen["completed"] = claim.completed
            if claim.completed:
                say(f"{head}: already completed in {pp.output_dir}")
            else:
                say(f"{head}: {'resuming' if claim.resume else 'starting'} in {pp.output_dir}")

        code = runs.run_point(pp.plan, overwrite=overwrite, argv=argv, on_start=started)
        state = runs.read_status(pp.output_dir).get("state")
        if evaluate and state == "completed" and not eval_point(pp, head, say, warn, eval_limit):
            failed.append(f"{pp.point.label} (eval)")
        if seen.get("completed"):
            skipped += 1
            continue
        if code == EXIT_INTERRUPTED and state != "completed":
            say(f"{head}: interrupted. Re-run the same command to continue: finished points are skipped, this one "
                "resumes from its last complete checkpoint")
            return EXIT_INTERRUPTED
        if state == "preempted":
            say(f"{head}: stopped by a signal after saving a checkpoint. Re-run the same command to continue")
            return EXIT_PREEMPTED
        if code in (0, EXIT_INTERRUPTED):
            done += 1
            say(f"{head}: done")
            continue
        failed.append(pp.point.label)
        warn(f"{head}: training exited with code {code} (see its output above); going on with the next point")
    parts = [f"{done} trained", f"{skipped} already completed"] + ([f"{len(failed)} failed"] if failed else [])
    say(f"sweep finished: {', '.join(parts)} of {total} points in {sp.sweep_dir}")
    if failed:
        say("failed: " + "; ".join(failed) + ". Re-run the same command to retry them (they resume)")
        return 1
    return 0


def eval_point(pp, head: str, say: Say, warn: Say, limit: int | None) -> bool:
    """The point's offline eval, unless its results are there already. False when it failed."""
    from alignkit.sweep import evaluate

    task = pp.plan.task
    if evaluate.results_path(pp.output_dir, task).is_file():
        return True
    say(f"{head}: offline eval ({evaluate.BENCH[task]}) on the test split")
    code = evaluate.evaluate_point(pp.output_dir, task, env=pp.plan.env, limit=limit)
    if code == EXIT_INTERRUPTED:
        raise KeyboardInterrupt
    if code != 0:
        warn(f"{head}: the offline eval exited with code {code}")
    return code == 0
