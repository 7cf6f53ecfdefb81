"""Start a planned run: claim the output dir, write the run files, spawn accelerate, forward signals.

The output dir is the unit of work:
* the same config into the same dir resumes (the child picks up the last complete checkpoint);
* a different config into a dir that holds a run is refused unless ``--overwrite``;
* a dir holding something that is not an alignkit run is refused unless ``--overwrite``;
* two live runs never share a dir (a lock with the owner's pid; a stale lock is cleared).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.config.yamlio import dump_yaml, read_yaml
from alignkit.errors import ConfigError, Problem, RuntimeFailure
from alignkit.fsutil import write_atomic, write_json_atomic
from alignkit.launch.spec import LaunchPlan
from alignkit.launch.run import RunDir, read_status
from alignkit.launch.run.file import RunFile
from alignkit.secrets import redact

# Keys that may change between a run and its resumption without making it a different run.
SHAPE_KEYS = {("launch", "num_gpus"), ("launch", "num_nodes"), ("train", "gradient_accumulation_steps"),
              ("train", "ddp_backend"), ("launch", "launcher")}


@dataclass
class Claim:
    resume: bool
    lock_path: Path
    note: str | None = None
    completed: bool = False  # the same run already finished: nothing to do
    created: Path | None = None  # the topmost directory this claim created (removed again if the run is refused)

    def undo(self) -> None:
        """Remove what claiming created: a refused run leaves nothing behind."""
        if self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def read_lock(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _owner_alive(owner: dict[str, Any]) -> bool:
    """The lock's process is alive, or the training processes it started still are (they can outlive a
    killed parent: they still own the dir)."""
    pid, pgid = owner.get("pid"), owner.get("pgid")
    return (isinstance(pid, int) and _pid_alive(pid)) or (isinstance(pgid, int) and bool(_group_members(pgid)))


def lock_held(lock: Path) -> bool:
    """A live run on this host holds ``lock``: what ``acquire_lock`` refuses as busy."""
    owner = read_lock(lock)
    return isinstance(owner, dict) and owner.get("host") == socket.gethostname() and _owner_alive(owner)


@contextlib.contextmanager
def _guard(directory: Path):
    """Serialize lock checks of one run dir between processes (flock on the dir itself): without it, two
    runs started together could both find a stale lock, each clear it and each take the dir. Best
    effort: a filesystem without flock on directories falls back to the lock file alone."""
    try:
        import fcntl

        fd = os.open(directory, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # closing releases the flock


def acquire_lock(lock: Path) -> str | None:
    """Take the run lock or raise ConfigError if a live run holds it. Returns a note if a stale lock was cleared."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with _guard(lock.parent):
        return _acquire_lock(lock)


def _acquire_lock(lock: Path) -> str | None:
    note = None
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = read_lock(lock) or {}
            pid, host = owner.get("pid"), owner.get("host")
            if host == socket.gethostname() and _owner_alive(owner):
                raise ConfigError(
                    Problem(str(lock.parent.parent), f"busy: another run (pid {pid}, started "
                            f"{owner.get('started', '?')}) is writing to this output dir",
                            "wait for it to finish, stop it, or choose another --output_dir")
                ) from None
            if host not in (None, socket.gethostname()):
                raise ConfigError(
                    Problem(str(lock.parent.parent), f"locked by a run on host {host} (pid {pid})",
                            f"if that run is gone, delete {lock}")
                ) from None
            lock.unlink(missing_ok=True)
            note = f"cleared a stale lock left by pid {pid}"
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S")}, fh)
        return note
    raise ConfigError(Problem(str(lock), "could not take the run lock", "retry"))


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(config))
    for section, key in SHAPE_KEYS:
        out.get(section, {}).pop(key, None)
    return out


def claim_output_dir(plan: LaunchPlan, overwrite: bool) -> Claim:
    out = Path(plan.output_dir)
    layout = RunDir.of(out)
    rdir = layout.path
    if out.exists() and not out.is_dir():
        raise ConfigError(Problem("train.output_dir", f"{out} is a file", "choose a directory path"))
    created = _first_missing(out) or _first_missing(rdir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(Problem("train.output_dir", f"cannot create {out}: {exc.strerror}",
                                  "choose a writable --output_dir")) from None
    if not os.access(out, os.W_OK):
        raise ConfigError(Problem("train.output_dir", f"{out} is not writable", "choose a writable --output_dir"))
    try:  # os.access says yes to root everywhere: try it (a read-only or special filesystem says no)
        rdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=rdir):
            pass
    except OSError as exc:
        raise ConfigError(Problem("train.output_dir", f"cannot write into {out}: {exc.strerror or exc}",
                                  "choose a writable --output_dir")) from None
    lock = layout.lock
    try:
        note = acquire_lock(lock)
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    try:
        previous = layout.run_file
        others = [p for p in out.iterdir() if p.name != rdir.name]
        if previous.exists():
            old = read_yaml(previous)
            same = isinstance(old, dict) and _comparable(old.get("config", {})) == _comparable(plan.config.to_dict())
            if same and not overwrite:
                return Claim(resume=True, lock_path=lock, note=note, created=created)
            if not overwrite:
                raise ConfigError(
                    Problem(str(out), "holds a run with a different config",
                            f"pass --overwrite to start over (its checkpoints are deleted), or choose another "
                            f"--output_dir; compare with {previous}")
                )
        elif others and not overwrite:
            raise ConfigError(
                Problem(str(out), "is not empty and holds no alignkit run",
                        "choose an empty or new --output_dir, or pass --overwrite")
            )
        if overwrite:
            for p in out.glob("checkpoint-*"):
                shutil.rmtree(p, ignore_errors=True)
        return Claim(resume=False, lock_path=lock, note=note, created=created)
    except BaseException:
        lock.unlink(missing_ok=True)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


def _first_missing(path: Path) -> Path | None:
    """The topmost ancestor of ``path`` (or itself) that does not exist yet: what mkdir(parents=True) creates."""
    missing = None
    for p in [path, *path.parents]:
        if p.exists():
            break
        missing = p
    return missing


def write_run_files(plan: LaunchPlan, *, resume: bool, argv: list[str]) -> Path:
    """run.yaml (the RunFile), accelerate.yaml, deepspeed.json and command.sh into the run dir."""
    rdir = RunDir.of(plan.output_dir)
    run = RunFile(alignkit_version=_version(), task=plan.task, profile=plan.profile, resume=resume,  # type: ignore[arg-type]
                  world_size=plan.world_size, global_batch_size=plan.global_batch_size,
                  argv=[redact(a) for a in argv], config=plan.config, data=plan.data)
    write_atomic(rdir.run_file, run.to_yaml())
    write_atomic(rdir.accelerate_config, dump_yaml(plan.accelerate_config))
    if plan.deepspeed_config is not None:
        write_json_atomic(rdir.deepspeed_config, plan.deepspeed_config)
    env = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in plan.env.items())
    write_atomic(rdir.command_file, f"#!/usr/bin/env bash\n# written by alignkit; re-runs this launch\n"
                 f"set -euo pipefail\n{env}exec {shlex.join(plan.command)}\n", mode=0o755)
    return rdir.run_file


def _version() -> str:
    from alignkit import __version__

    return __version__


def spawn(plan: LaunchPlan, lock: Path | None = None) -> int:
    """Run the plan's command in its own process group; forward SIGINT/SIGTERM to the whole group;
    return the child's exit code (130 after Ctrl-C)."""
    env = {**os.environ, **plan.env}
    proc = subprocess.Popen(plan.command, env=env, start_new_session=True)
    if lock is not None:  # the lock also names the training process group (see acquire_lock)
        owner = read_lock(lock) or {}
        write_atomic(lock, json.dumps({**owner, "pgid": proc.pid}))
    interrupted = {"sig": None}

    def forward(signum, _frame):
        interrupted["sig"] = signum
        if signum == signal.SIGINT:
            # Ctrl-C: the whole group stops now. SIGKILL, not SIGINT: every Python process of the group (the
            # trainers, accelerate's launcher) would print a KeyboardInterrupt traceback. Nothing is lost that
            # SIGINT would have kept: the last complete checkpoint stays, a half-written one goes on resume
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
        # SIGTERM/SIGUSR1 (preemption): only the training processes get it, so they save a checkpoint
        # and exit cleanly; the launcher (when there is one) then exits on its own
        for pid in _group_members(proc.pid):
            if pid != proc.pid or plan.direct:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    try:
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:  # pragma: no cover - handler above normally runs instead
                forward(signal.SIGINT, None)
        # make sure no straggler of the group outlives us
        deadline = time.time() + 10
        while time.time() < deadline and _group_alive(proc.pid):
            time.sleep(0.2)
        if _group_alive(proc.pid):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if interrupted["sig"] == signal.SIGINT:
        return 130
    return code if code >= 0 else 128 - code


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def run(plan: LaunchPlan, *, overwrite: bool, argv: list[str], on_start=None, check=None) -> int:
    """Claim the output dir, run ``check(plan)`` (input validation: it raises to refuse the run), write the
    run files, spawn. A refused run leaves no run files, so the next attempt starts fresh."""
    if not plan.command:
        raise RuntimeFailure("empty launch command")
    claim = claim_output_dir(plan, overwrite)
    try:
        if claim.resume and read_status(plan.output_dir).get("state") == "completed":
            claim.completed = True
            if on_start:
                on_start(claim)
            return 0
        if check is not None:
            try:
                check(plan)
            except BaseException:
                claim.undo()  # refused: nothing it created stays (the output dir, the run dir, a data build)
                raise
        write_run_files(plan, resume=claim.resume, argv=argv)
        RunDir.of(plan.output_dir).clear_status()
        if on_start:
            on_start(claim)
        return spawn(plan, claim.lock_path)
    finally:
        claim.lock_path.unlink(missing_ok=True)

