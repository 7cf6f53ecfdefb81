"""Writing files so that nothing is ever left half-written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def write_atomic(path: str | os.PathLike, text: str, mode: int | None = None) -> None:
    """Write a file so that readers see the old content or the new, never half of it."""
    write_bytes_atomic(path, text.encode("utf-8"), mode)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, mode: int | None = None) -> None:
    """``write_atomic`` for bytes (PNG plots, binary files): temp file in the same dir, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp makes 0600 files; give what open() would (teammates on a shared cluster read run files)
        os.chmod(tmp, mode if mode is not None else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_json_atomic(path: str | os.PathLike, data: Any, *, ensure_ascii: bool = True, strict: bool = False) -> None:
    """``data`` as indented JSON through ``write_atomic``. A value JSON cannot hold is written as ``str(value)``.

    ``strict`` (results files): NaN and infinities raise ``ValueError``, numbers from numpy/torch
    (anything with ``.item()``) are written as numbers and any other such value raises ``TypeError``.
    ``ensure_ascii=False`` keeps non-ASCII text as it is instead of ``\\uXXXX`` escapes.
    """
    text = json.dumps(data, indent=2, sort_keys=False, ensure_ascii=ensure_ascii, allow_nan=not strict,
                      default=_plain_number if strict else str)
    write_atomic(path, text + "\n")


def _plain_number(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line and flush it to disk: an interrupted writer loses at most that line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def replace_dir(tmp: str | os.PathLike, out: str | os.PathLike) -> None:
    """Move a fully written directory `tmp` into place at `out` (same filesystem). Readers see the old
    directory or the new one: the old one is renamed aside first and deleted only afterwards."""
    tmp, out = Path(tmp), Path(out)
    if out.exists():
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            old.rmdir()
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
            return
    os.rename(tmp, out)


@contextlib.contextmanager
def building_dir(out: str | os.PathLike, *, tag: str = "tmp") -> Iterator[Path]:
    """A fresh directory beside ``out`` (``.<name>.<tag>-XXXX``, same filesystem) to write a whole directory
    into. When the block ends, it gets the mode of an ordinary directory (0755: mkdtemp makes it private)
    and replaces ``out`` through ``replace_dir``; when the block raises, it is removed. Readers see the old
    ``out`` or the complete new one, never a half-written one. ``out``'s parent must exist."""
    out = Path(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{tag}-", dir=out.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
