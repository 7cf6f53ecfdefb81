"""Benchmark files from a local path or a URL, cached under ``$HF_HOME/alignkit/eval-sources``.

alignkit ships no benchmark text: MT-Bench's questions, reference answers and judge prompts and
AlpacaEval's judge prompt and reference outputs are read at run time from the paths or URLs given
(defaults: the projects' public raw files). A URL is downloaded once (atomically) and then read from
the cache; ``--refresh-sources`` downloads again.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from alignkit.errors import DataError, Problem

DOWNLOAD_TIMEOUT = 60.0


def cache_dir() -> Path:
    """``$HF_HOME/alignkit/eval-sources`` (``HF_HOME`` defaults to ``~/.cache/huggingface``)."""
    home = os.environ.get("HF_HOME") or ""
    base = Path(home).expanduser() if home.strip() else Path.home() / ".cache" / "huggingface"
    return base / "alignkit" / "eval-sources"


def is_url(spec: str) -> bool:
    return urllib.parse.urlsplit(str(spec)).scheme in ("http", "https")


def cached_path(url: str) -> Path:
    name = Path(urllib.parse.urlsplit(url).path).name or "file"
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return cache_dir() / f"{digest}-{name}"


def fetch(spec: str | Path, *, option: str, refresh: bool = False) -> Path:
    """A local file for ``spec``: the path itself, or the cached download of a URL."""
    spec = str(spec)
    if not is_url(spec):
        p = Path(spec).expanduser()
        if not p.is_file():
            raise DataError(
                Problem(where=option, message=f"no such file: {spec}", fix="give an existing file or an http(s) URL")
            )
        return p
    target = cached_path(spec)
    if target.is_file() and not refresh:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    req = urllib.request.Request(spec, headers={"User-Agent": "alignkit-eval"})
    try:
        with urllib.request.urlopen(req, timeout=DOWNLOAD_TIMEOUT) as resp, open(tmp, "wb") as out:
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        raise DataError(
            Problem(
                where=f"{option} {spec}",
                message=f"download failed: {reason}",
                fix=f"download the file yourself and pass its local path to {option}",
            )
        ) from None
    os.replace(tmp, target)
    return target


def read_jsonl(path: Path, *, option: str) -> list[dict]:
    rows: list[dict] = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise DataError(
                    Problem(where=f"{path}:{i}", message=f"not JSON: {e}", fix=f"fix the file given to {option}")
                ) from None
            if not isinstance(row, dict):
                raise DataError(Problem(where=f"{path}:{i}", message="expected one JSON object per line"))
            rows.append(row)
    return rows


def read_records(path: Path, *, option: str) -> list[dict]:
    """A JSON list of objects, or JSON lines."""
    text = Path(path).read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data: Any = json.loads(text)
        except ValueError as e:
            raise DataError(Problem(where=str(path), message=f"not JSON: {e}", fix=f"fix the file given to {option}")) from None
        if not all(isinstance(r, dict) for r in data):
            raise DataError(Problem(where=str(path), message="expected a list of JSON objects"))
        return list(data)
    return read_jsonl(Path(path), option=option)


def load_jsonl(spec: str | Path, *, option: str, refresh: bool = False) -> list[dict]:
    return read_jsonl(fetch(spec, option=option, refresh=refresh), option=option)


def load_records(spec: str | Path, *, option: str, refresh: bool = False) -> list[dict]:
    return read_records(fetch(spec, option=option, refresh=refresh), option=option)


def load_text(spec: str | Path, *, option: str, refresh: bool = False) -> str:
    return fetch(spec, option=option, refresh=refresh).read_text(encoding="utf-8")
