"""What can be checked of a run's data and its access to the Hub without reading a row: local sources (exist,
readable, the right kind) and whether the Hub answers at all. Preflight, `validate`, `--dry-run` and `mix` ask
these before anything waits on a load or on the Hub's retry loop.
"""

from __future__ import annotations

import glob as _glob
import os
from pathlib import Path

from alignkit.data.sources import DATA_EXTENSIONS, SAVE_TO_DISK_FILES, _fmt, _split_files, is_build_dir
from alignkit.errors import Problem


def local_source_problems(data, skip_under: Path | None = None) -> list[Problem]:
    """Every local source of ``data.mixture`` checked from the file system only (no rows read, no network):
    it exists and is readable, a file is a data file, a glob matches, a directory holds data for its split.
    ``skip_under``: paths below it are not checked (the demo's cache, built on first use)."""
    problems = []
    for i, src in enumerate(data.mixture):
        if src.path is None:
            continue
        raw = os.path.expanduser(src.path)
        if skip_under is not None and Path(raw).absolute().is_relative_to(skip_under):
            continue
        where = f"data.mixture[{i}].path"
        found = _local_source_problem(src, raw)
        if found:
            problems.append(Problem(where=where, message=f"{src.path}: {found[0]}", fix=found[1]))
    return problems


def _local_source_problem(src, raw: str) -> tuple[str, str] | None:
    if any(ch in raw for ch in "*?["):
        if not any(Path(p).is_file() for p in _glob.iglob(raw, recursive=True)):
            return "the glob matches no files", "check the pattern (relative paths are from the current directory)"
        return None
    path = Path(raw)
    if not path.exists():
        return ("no such file or directory",
                "check the path (relative paths are from the current directory), or use a Hub dataset as 'id:'")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        return "cannot be read (permission denied)", "fix its permissions"
    if path.is_file():
        if _fmt(path) not in DATA_EXTENSIONS:
            return (f"not a data file (a {path.suffix or 'file without extension'})",
                    f"give a {'/'.join(e[1:] for e in DATA_EXTENSIONS)} file (optionally compressed), a glob or a "
                    "directory")
        return None
    if not path.is_dir():
        return "not a file or a directory", "give a data file, a glob or a directory"
    if is_build_dir(path) or (path / src.split / "state.json").is_file():
        return None
    if any((path / f).is_file() for f in SAVE_TO_DISK_FILES):
        return None
    files, names = _split_files(path, src.split)
    if not files:
        found = f" (splits found: {', '.join(sorted(names))})" if names else " (no data files found)"
        return (f"no data files for split {src.split!r} in this directory{found}",
                "name files after their split (train.jsonl, test-00000.parquet, train/part.json) or give a glob")
    return None


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or "https://huggingface.co"


def hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the Hugging Face Hub cannot be reached (a DNS or connection failure, said in a few words), or None
    when a connection to it opens. One attempt, no retries: asked before anything would wait on the Hub's
    own retry loop. Offline mode (HF_HUB_OFFLINE=1) never asks."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(hub_endpoint())
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror as exc:
        return f"{host}: {exc.strerror or exc}"
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"


def hub_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


def network_problem(reason: str, where: str = "network") -> Problem:
    return Problem(where=where, message=f"cannot reach the Hugging Face Hub ({reason})",
                   fix="set HF_HUB_OFFLINE=1 and use local paths (or data already in the Hub cache), "
                       "or check the network")
