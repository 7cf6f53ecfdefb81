"""Run alignkit (or a snippet) in this process while recording every file it opens for writing and every
rename, and optionally stall one write half-way so that a test can SIGKILL the process right there.

    python -m tests.robustness.write_spy LOG [--stall GLOB [--stall-min BYTES]] [--no-child] -- ALIGNKIT ARGS...
    python -m tests.robustness.write_spy LOG [--stall GLOB [--stall-min BYTES]] --exec CODE

LOG gets one JSON line per event:
  {"op": "open", "path": ..., "mode": "w" | "wb" | "a" | "r+b" | ..., "flags": int | null}
  {"op": "rename", "src": ..., "dst": ...}
--stall GLOB  the first write() of at least --stall-min bytes (default 2) to a file whose name matches GLOB
              writes half of its data, flushes it to the file, prints "STALLED <path>" on stderr and sleeps
              for good.
--no-child    `alignkit sft|dpo` do everything up to starting accelerate (spawn.spawn returns 0).

Only Python-level opens are seen (builtins.open, io.open, os.open, os.fdopen); files written by C
libraries (pyarrow, safetensors) are covered by the static scan in test_atomic_writes.py.
"""

from __future__ import annotations

import builtins
import fnmatch
import io
import json
import os
import sys
import time

_real_open = io.open
_real_os_open = os.open
_real_replace = os.replace
_real_rename = os.rename
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class Spy:
    def __init__(self, log_path: str, stall: str | None, stall_min: int = 2):
        self.log = _real_open(log_path, "a", buffering=1, encoding="utf-8")
        self.stall = stall
        self.stall_min = stall_min
        self.stalled = False

    def record(self, **event) -> None:
        self.log.write(json.dumps(event) + "\n")

    def wrap(self, fh, path: str):
        if self.stall and not self.stalled and fnmatch.fnmatch(os.path.basename(path), self.stall):
            return _Stalling(fh, path, self)
        return fh


class _Stalling:
    """A file whose first sizeable write stops half-way, forever."""

    def __init__(self, fh, path: str, spy: Spy):
        self._fh, self._path, self._spy = fh, path, spy

    def write(self, data):
        if self._spy.stalled or len(data) < self._spy.stall_min:
            return self._fh.write(data)
        self._spy.stalled = True
        self._fh.write(data[: len(data) // 2])
        self._fh.flush()
        sys.__stderr__.write(f"STALLED {self._path}\n")
        sys.__stderr__.flush()
        while True:
            time.sleep(60)

    def __enter__(self):
        self._fh.__enter__()
        return self

    def __exit__(self, *exc):
        return self._fh.__exit__(*exc)

    def __iter__(self):
        return iter(self._fh)

    def __getattr__(self, name):
        return getattr(self._fh, name)


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"<fd {fd}>"


def install(spy: Spy) -> None:
    tmpfiles: dict[int, str] = {}

    def spy_open(file, mode="r", *args, **kwargs):
        fh = _real_open(file, mode, *args, **kwargs)
        if any(c in mode for c in "wax+"):
            path = _fd_path(file) if isinstance(file, int) else os.path.abspath(os.fspath(file))
            if (isinstance(file, int) and file in tmpfiles) or os.path.isdir(path):
                mode = "tmpfile"  # O_TMPFILE (tempfile.TemporaryFile): no name, nothing to half-write
            spy.record(op="open", path=path, mode=mode, flags=None)
            return spy.wrap(fh, path)
        return fh

    def spy_os_open(path, flags, *args, **kwargs):
        fd = _real_os_open(path, flags, *args, **kwargs)
        if flags & _WRITE_FLAGS or flags & getattr(os, "O_TMPFILE", 0):
            tmpfile = bool(getattr(os, "O_TMPFILE", 0)) and (flags & os.O_TMPFILE) == os.O_TMPFILE
            if tmpfile:
                tmpfiles[fd] = os.path.abspath(os.fspath(path))
            spy.record(op="open", path=_fd_path(fd) if not tmpfile else os.path.abspath(os.fspath(path)),
                       mode="tmpfile" if tmpfile else "os.open", flags=flags)
        return fd

    def spy_replace(src, dst, *args, **kwargs):
        spy.record(op="rename", src=os.path.abspath(os.fspath(src)), dst=os.path.abspath(os.fspath(dst)))
        return _real_replace(src, dst, *args, **kwargs)

    def spy_rename(src, dst, *args, **kwargs):
        spy.record(op="rename", src=os.path.abspath(os.fspath(src)), dst=os.path.abspath(os.fspath(dst)))
        return _real_rename(src, dst, *args, **kwargs)

    builtins.open = spy_open
    io.open = spy_open
    os.open = spy_os_open
    os.replace = spy_replace
    os.rename = spy_rename


def main(argv: list[str]) -> None:
    log, rest = argv[0], argv[1:]
    stall = None
    stall_min = 2
    no_child = False
    code = None
    while rest and rest[0] != "--":
        opt = rest.pop(0)
        if opt == "--stall":
            stall = rest.pop(0)
        elif opt == "--stall-min":
            stall_min = int(rest.pop(0))
        elif opt == "--no-child":
            no_child = True
        elif opt == "--exec":
            code = rest.pop(0)
        else:
            raise SystemExit(f"write_spy: unknown option {opt}")
    if rest and rest[0] == "--":
        rest.pop(0)
    install(Spy(log, stall, stall_min))
    if code is not None:
        exec(compile(code, "<write_spy --exec>", "exec"), {"__name__": "__write_spy__"})
        return
    if no_child:
        from alignkit.launch import spawn

        spawn.spawn = lambda plan, lock=None: 0
    from alignkit.cli import main as alignkit_main

    sys.argv = ["alignkit", *rest]
    alignkit_main(rest)


if __name__ == "__main__":
    main(sys.argv[1:])
