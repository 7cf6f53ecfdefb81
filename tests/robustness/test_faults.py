"""Faults with real processes and real signals, on the tiny model (CPU, fixed seed).

One run is interrupted three ways in a row and must still end with the weights of an uninterrupted run
(`reference_run`, same command, started in the background):

1. Ctrl-C (SIGINT) on the parent during a step: exit 130, the whole accelerate process group ends, no
   orphan in the process table, the lock is released;
2. the parent SIGKILLed during a step while its training processes live on: a second run into the dir is
   refused ("busy"); then the whole group is SIGKILLed;
3. SIGKILL while a checkpoint is being written (ALIGNKIT_TEST_SLOW_SAVE holds the save open before the
   completion marker): the stale lock is cleared, the half checkpoint is removed, and
4. the last run resumes from the last COMPLETE checkpoint to the end.

ALIGNKIT_TEST_SLOW_STEP (a sleep at each step's start) makes "during a step" land deterministically; it
changes no number. The ALIGNKIT_TEST_SLOW_* moments are test-only patches (tests/spawn_guard/slow_moments.py),
not hooks in alignkit. tests/e2e/test_train.py covers SIGKILL right after a checkpoint and SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import cli_env, popen_cli, run_cli
from tests.robustness.conftest import (QUICK, REF_ARGS, group_members, kill_all,
                                       processes_mentioning, wait_for)

MARKER = "alignkit-complete.json"


def start(args, env, log: Path) -> subprocess.Popen:
    """`alignkit ARGS` in its own session (like a terminal job), output to files (no pipe to fill up)."""
    out = open(log.with_suffix(".out"), "w")
    err = open(log.with_suffix(".err"), "w")
    return popen_cli(*args, env=env, stdout=out, stderr=err, start_new_session=True)


def stderr_of(log: Path) -> str:
    return log.with_suffix(".err").read_text()


def checkpoints(out: Path) -> dict[int, bool]:
    """step -> complete (has the marker)."""
    found = {}
    for p in out.glob("checkpoint-*"):
        if p.is_dir() and p.name.split("-", 1)[1].isdigit():
            found[int(p.name.split("-", 1)[1])] = (p / MARKER).is_file()
    return found


def last_complete(out: Path) -> int:
    return max((s for s, done in checkpoints(out).items() if done), default=0)


def training_group(out: Path, parent: subprocess.Popen) -> int:
    """The process group of the accelerate launch (the lock names it once the child is spawned)."""

    def pgid():
        if parent.poll() is not None:
            raise AssertionError(f"alignkit exited early ({parent.returncode})")
        try:
            owner = json.loads((out / "alignkit" / "lock").read_text())
        except (OSError, ValueError):
            return None
        return owner.get("pgid") if owner.get("pid") == parent.pid else None  # not a stale lock's

    return wait_for(pgid, 300, "the training process group")


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.mark.e2e
def test_interrupted_killed_and_cut_mid_checkpoint_the_run_resumes_to_the_same_weights(tmp_path, tiny_env,
                                                                                        reference_run):
    out = tmp_path / "run"
    args = [*REF_ARGS, f"--output_dir={out}"]
    slow_steps = {**tiny_env, "ALIGNKIT_TEST_SLOW_STEP": "0.3"}
    try:
        # 1. Ctrl-C on the parent during a step
        p1 = start(args, slow_steps, tmp_path / "run1")
        pgid = training_group(out, p1)
        wait_for(lambda: last_complete(out) >= 2, 300, "a first complete checkpoint")
        time.sleep(0.1)  # inside the next step's 0.3 s
        p1.send_signal(signal.SIGINT)
        assert p1.wait(timeout=60) == 130, stderr_of(tmp_path / "run1")[-4000:]
        err1 = stderr_of(tmp_path / "run1")
        assert "interrupted" in err1 and "Traceback" not in err1, err1[-4000:]
        assert not group_members(pgid), "training processes outlived Ctrl-C"
        assert not processes_mentioning(str(out)), "orphans after Ctrl-C"
        assert not (out / "alignkit" / "lock").exists()
        assert not (out / "model.safetensors").exists(), "the run finished before the interrupt"
        assert all(checkpoints(out).values()), "the interrupt landed in a checkpoint write, not a step"
        c1 = last_complete(out)

        # 2. the parent SIGKILLed during a step; its training processes still own the dir
        p2 = start(args, slow_steps, tmp_path / "run2")
        pgid = training_group(out, p2)
        wait_for(lambda: last_complete(out) > c1, 300, "a new complete checkpoint")
        time.sleep(0.1)
        os.kill(p2.pid, signal.SIGKILL)
        p2.wait()
        members = group_members(pgid)
        assert members, "the training processes died with their parent"
        kill_all(members, signal.SIGSTOP)  # hold them mid-step while the second run is tried
        busy = run_cli(*args, env=tiny_env)
        assert busy.returncode == 2 and "busy" in busy.stderr and "Traceback" not in busy.stderr, busy.stderr[-3000:]
        os.killpg(pgid, signal.SIGKILL)
        wait_for(lambda: not group_members(pgid), 30, "the killed group to be gone")
        assert "resuming" in stderr_of(tmp_path / "run2")
        assert all(checkpoints(out).values()), "the kill landed in a checkpoint write, not a step"
        c2 = last_complete(out)
        assert c2 > c1

        # 3. SIGKILL while a checkpoint is being written (its files are there, its marker is not)
        p3 = start(args, {**tiny_env, "ALIGNKIT_TEST_SLOW_SAVE": "60"}, tmp_path / "run3")
        pgid = training_group(out, p3)

        def cut():
            return next((s for s, done in checkpoints(out).items()
                         if s > c2 and not done and (out / f"checkpoint-{s}" / "trainer_state.json").is_file()), None)

        cut_step = wait_for(cut, 300, "a checkpoint being written")
        time.sleep(0.5)  # the save is held open (unheld, the marker follows within milliseconds: checked below)
        os.killpg(pgid, signal.SIGKILL)
        os.killpg(p3.pid, signal.SIGKILL)
        p3.wait()
        wait_for(lambda: not group_members(pgid), 30, "the killed group to be gone")
        err3 = stderr_of(tmp_path / "run3")
        assert "cleared a stale lock" in err3 and "resuming" in err3, err3[-3000:]
        assert not (out / f"checkpoint-{cut_step}" / MARKER).exists()
        c3 = last_complete(out)
        assert c3 >= c2 and c3 < cut_step

        # 4. the same command again: the half checkpoint goes, training resumes from the last complete one
        final = run_cli(*args, env=tiny_env, timeout=900)
        assert final.returncode == 0, final.stderr[-6000:]
        assert f"removed incomplete checkpoint {out}/checkpoint-{cut_step}" in final.stderr, final.stderr[-6000:]
        assert f"resuming from {out}/checkpoint-{c3}" in final.stderr, final.stderr[-6000:]
    finally:
        for pid in processes_mentioning(str(out)):
            kill_all([pid], signal.SIGKILL)

    assert json.loads((out / "alignkit" / "status.json").read_text())["state"] == "completed"
    assert checkpoints(out) == {12: True}, checkpoints(out)  # save_total_limit=1 kept, after marking
    assert not processes_mentioning(str(out))
    ref = reference_run.wait()
    a, b = weights(ref.output_dir), weights(out)
    assert a.keys() == b.keys()
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert diff <= 1e-6, diff


@pytest.mark.e2e
def test_ctrl_c_after_the_run_completed_is_success(tmp_path, tiny_env):
    """Ctrl-C between the run being saved and marked completed and its processes exiting (the interpreter's
    shutdown takes a second or two): the model is whole, so the command says done and exits 0, not 130."""
    out = tmp_path / "run"
    log = tmp_path / "late"
    p = start(["sft", "--recipe", "tiny", "--profile", "cpu", "--max_steps=2", "--save_strategy=no", *QUICK,
               f"--output_dir={out}"], {**tiny_env, "ALIGNKIT_TEST_SLOW_EXIT": "60"}, log)
    try:
        pgid = training_group(out, p)
        wait_for(lambda: (out / "alignkit" / "status.json").is_file()
                 and json.loads((out / "alignkit" / "status.json").read_text())["state"] == "completed",
                 300, "the run to be marked completed")
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=60) == 0, stderr_of(log)[-4000:]
        err = stderr_of(log)
        assert "done:" in err and "interrupted" not in err and "Traceback" not in err, err[-4000:]
        assert not group_members(pgid) and not (out / "alignkit" / "lock").exists()
        assert (out / "model.safetensors").is_file()
    finally:
        for pid in processes_mentioning(str(out)):
            kill_all([pid], signal.SIGKILL)


# --------------------------------------------------------------------------- the lock, without training

_CONTENDER = """
import json, sys, time
from pathlib import Path
from alignkit.errors import ConfigError
from alignkit.launch.spawn import acquire_lock
lock, start = Path(sys.argv[1]), float(sys.argv[2])
while time.time() < start:
    pass
try:
    note = acquire_lock(lock)
except ConfigError as exc:
    print(json.dumps({"won": False, "why": str(exc)}), flush=True)
    sys.exit(0)
print(json.dumps({"won": True, "note": note}), flush=True)
time.sleep(3)  # a live owner: the others must see it
"""


def test_runs_started_together_on_a_stale_lock_one_wins(tmp_path, tiny_env):
    """A killed run's lock (dead pid) and six runs starting at the same instant: exactly one clears it and
    takes the dir; the others are refused as busy (without serializing the check, two could each clear
    the stale lock and both start)."""
    lock = tmp_path / "out" / "alignkit" / "lock"
    lock.parent.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "started": "earlier"}))
    start_at = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", _CONTENDER, str(lock), str(start_at)], env=cli_env(tiny_env),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr[-2000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    winners = [r for r in results if r["won"]]
    assert len(winners) == 1, results
    assert "cleared a stale lock" in (winners[0]["note"] or "")
    assert all("busy" in r["why"] for r in results if not r["won"])


def test_an_empty_lock_from_a_run_killed_while_taking_it_is_stale(tmp_path):
    from alignkit.launch.spawn import acquire_lock

    lock = tmp_path / "alignkit" / "lock"
    lock.parent.mkdir()
    lock.write_text("")  # killed between creating the lock and writing its owner
    note = acquire_lock(lock)
    assert note and "stale" in note
    assert json.loads(lock.read_text())["pid"] == os.getpid()
