"""Checkpoints: marked complete once written (only then are old ones rotated away), half-written ones dropped,
the newest complete one resumed; SIGTERM/SIGUSR1 save one and stop."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from alignkit.launch.run import RunDir, is_complete, mark_complete

if TYPE_CHECKING:  # pragma: no cover
    from alignkit.train.common import Run


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Checkpoints whose writing finished (they carry our marker), oldest first."""
    return [p for p in RunDir.of(output_dir).checkpoints() if is_complete(p)]


def rotate_checkpoints(output_dir: Path, limit: int | None, keep: str | None = None) -> list[Path]:
    """Delete the oldest complete checkpoints beyond ``limit`` (save_total_limit), never ``keep`` (the best
    one). Main process only, after the newest checkpoint is marked complete."""
    import shutil

    if not limit:
        return []
    done = complete_checkpoints(output_dir)
    kept = {Path(keep).resolve()} if keep else set()
    removed = []
    for p in done[:-limit]:
        if p.resolve() not in kept:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def clean_incomplete_checkpoints(output_dir: Path) -> list[Path]:
    """Delete checkpoints a killed run left half-written (no marker). Main process only."""
    import shutil

    removed = []
    for p in RunDir.of(output_dir).checkpoints():
        if not is_complete(p):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def resume_checkpoint(run: Run) -> str | None:
    done = complete_checkpoints(run.output_dir)
    return str(done[-1]) if done else None


class Stopper:
    """SIGTERM / SIGUSR1 (Slurm preemption, `kill`): save a checkpoint at the end of the current step and
    stop. The second signal is not caught (a stuck run can still be killed)."""

    signals = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.requested: int | None = None
        for s in self.signals:
            signal.signal(s, self._handle)

    def _handle(self, signum, _frame) -> None:
        self.requested = signum
        for s in self.signals:
            signal.signal(s, signal.SIG_DFL)


def callbacks(stopper: Stopper) -> list:
    """Trainer callbacks: mark complete checkpoints; stop with a checkpoint on a signal."""
    from transformers import TrainerCallback

    class MarkComplete(TrainerCallback):
        """Marks each checkpoint complete after the Trainer wrote it, and only then deletes old ones. The
        Trainer's own rotation (save_total_limit) runs before any callback sees the new checkpoint: a kill
        between the two would leave only an unmarked checkpoint (with save_total_limit=1, as in the Zephyr
        recipes: all progress lost). So the limit is taken over here."""

        limit: int | None = None

        def on_init_end(self, args, state, control, **kwargs):
            self.limit, args.save_total_limit = args.save_total_limit, None
            return control

        def on_save(self, args, state, control, **kwargs):
            _barrier()
            if state.is_world_process_zero:
                ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if ckpt.is_dir():
                    mark_complete(ckpt, {"global_step": state.global_step,
                                         "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
                    rotate_checkpoints(Path(args.output_dir), self.limit, keep=state.best_model_checkpoint)
            _barrier()
            return control

    class StopOnSignal(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if _any_rank(stopper.requested is not None):
                control.should_save = True
                control.should_training_stop = True
            return control

    return [MarkComplete(), StopOnSignal()]


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _any_rank(flag: bool) -> bool:
    """True on every rank when it is true on one (signals may reach ranks at different steps)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device="cuda" if torch.cuda.is_available() else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
