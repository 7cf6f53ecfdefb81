"""/proc helpers for the tests that start, signal and kill real runs (tests/robustness, tests/e2e).

* ``proc_stat(pid)``: (state, pgid), None when the process is gone.
* ``processes_mentioning(text)``: live (not zombie) processes whose command line contains ``text`` (an output
  dir names every process of its run: the CLI, accelerate, the trainers).
* ``group_members(pgid)``: live processes of a process group.
* ``wait_for(predicate, timeout, what)``: poll until truthy (returns the value), else an AssertionError naming it.
* ``kill_all(pids, sig)``: send ``sig`` to each, gone ones ignored.
* ``sigkill_run(proc, output_dir)``: SIGKILL a run started with ``popen_cli`` and every process of it (as a
  crash or an OOM kill would), then wait until none is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def proc_stat(pid: int) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[2])


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        st = proc_stat(int(entry))
        if text in cmdline and st is not None and st[0] != "Z":
            pids.append(int(entry))
    return pids


def group_members(pgid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st is not None and st[1] == pgid and st[0] != "Z":
                out.append(int(entry))
    return out


def wait_for(predicate, timeout: float, what: str, poll: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def kill_all(pids, sig=signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def sigkill_run(proc: subprocess.Popen, output_dir: Path) -> None:
    kill_all([proc.pid, *processes_mentioning(str(output_dir))])
    proc.wait()
    wait_for(lambda: not processes_mentioning(str(output_dir)), 30, "the killed run to be gone")
