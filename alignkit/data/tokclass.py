"""Which tokenizer class ``AutoTokenizer`` picks for a local tokenizer dir, remembered between runs.

``AutoTokenizer.from_pretrained`` spends most of a `mix preview` of a small recipe deciding which class to
build: it loads the model config through ``AutoConfig``, whose imports pull in torch (seconds, for a tokenizer
that needs none of it). The class it picks for a directory depends only on that directory's
``tokenizer_config.json`` and ``config.json`` and on the transformers version, so alignkit records the pick in
``$ALIGNKIT_CACHE/tokenizer-classes.json`` keyed by those (path, size, mtime) and the version; the next load
of the same directory builds that class directly (``Class.from_pretrained`` with the same arguments AutoTokenizer
would pass it). Remote-code tokenizers, Hub ids and anything not found are left to AutoTokenizer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MAX_ENTRIES = 2000
_FILES = ("tokenizer_config.json", "config.json", "tokenizer.json")


def cache_path() -> Path:
    base = os.environ.get("ALIGNKIT_CACHE") or ""
    root = Path(base).expanduser() if base.strip() else Path.home() / ".cache" / "alignkit"
    return root / "tokenizer-classes.json"


def _key(name_or_path: str) -> str | None:
    d = Path(name_or_path).expanduser()
    # a local dir is read as it is, whatever the revision (from_pretrained ignores it there)
    if not d.is_dir() or not (d / "tokenizer_config.json").is_file():
        return None
    try:
        if "auto_map" in json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8")):
            return None  # remote code: always through AutoTokenizer (and its trust checks)
    except (OSError, ValueError):
        return None
    from importlib import metadata

    sig: list[Any] = [os.path.realpath(d), metadata.version("transformers")]
    for f in _FILES:
        try:
            st = (d / f).stat()
            sig += [f, st.st_size, st.st_mtime_ns]
        except OSError:
            sig += [f, None]
    return json.dumps(sig)


def _read() -> dict[str, Any]:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load(name_or_path: str, revision: str | None = None, *, trust_remote_code: bool = False):
    """The tokenizer AutoTokenizer gives for ``name_or_path``, quicker on a local dir seen before."""
    import importlib

    key = _key(name_or_path)
    hit = _read().get(key) if key else None
    if isinstance(hit, dict) and str(hit.get("module", "")).startswith("transformers."):
        try:
            cls = getattr(importlib.import_module(hit["module"]), hit["name"])
        except (ImportError, AttributeError):
            cls = None
        if cls is not None:
            # what AutoTokenizer passes the class it picked for a local dir (it pops trust_remote_code)
            return cls.from_pretrained(name_or_path, revision=None, _from_auto=True)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    if key and type(tok).__module__.startswith("transformers."):
        _remember(key, {"module": type(tok).__module__, "name": type(tok).__name__})
    return tok


def _remember(key: str, value: dict[str, str]) -> None:
    from alignkit.fsutil import write_atomic

    data = _read()
    data[key] = value
    if len(data) > MAX_ENTRIES:
        data = dict(list(data.items())[-MAX_ENTRIES:])
    try:
        cache_path().parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache_path(), json.dumps(data))
    except OSError:
        pass  # a cache that cannot be written only costs time
