"""What identifies a mix build's inputs: content hashes of local source files (cached by stat, like git's
index), resolved Hub revisions, the tokenizer's files, the chat template, and the key that combines them
with the data config (``input_key``). A build whose key matches is reused as it is (alignkit.data.build).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignkit.errors import DataError, Problem

if TYPE_CHECKING:  # pragma: no cover
    from alignkit.config.data import DataConfig

FORMAT_VERSION = 1  # of a build directory: part of every input key, and written to its manifest
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)


def sha256_file(path: str | Path, progress_task=None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(4 << 20), b""):
            h.update(chunk)
            if progress_task is not None:
                progress_task.advance(len(chunk))
    return h.hexdigest()


class HashCache:
    """sha256 of files keyed by (path, size, mtime, ctime, inode), kept in
    ``$ALIGNKIT_CACHE/file-hashes.json`` (like git's index): a cached re-run of a build stats its
    inputs instead of reading them again. A file changed in any way that shows in stat is re-hashed."""

    MAX_ENTRIES = 20_000

    def __init__(self, path: Path | None = None):
        if path is None:
            base = os.environ.get("ALIGNKIT_CACHE") or ""
            root = Path(base).expanduser() if base.strip() else Path.home() / ".cache" / "alignkit"
            path = root / "file-hashes.json"
        self.path = path
        self.changed = False
        try:
            self.entries: dict[str, list] = json.loads(path.read_text())
            if not isinstance(self.entries, dict):
                self.entries = {}
        except (OSError, ValueError):
            self.entries = {}

    def sha256(self, f: Path, progress_task=None) -> str:
        st = f.stat()
        key = os.path.realpath(f)
        sig = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        hit = self.entries.get(key)
        if isinstance(hit, list) and hit[:4] == sig and len(hit) == 5:
            if progress_task is not None:
                progress_task.advance(st.st_size)
            return hit[4]
        digest = sha256_file(f, progress_task)
        self.entries.pop(key, None)
        self.entries[key] = [*sig, digest]
        self.changed = True
        return digest

    def save(self) -> None:
        if not self.changed:
            return
        items = list(self.entries.items())[-self.MAX_ENTRIES:]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".file-hashes.", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(dict(items), fh)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache: losing it only costs time
        self.changed = False


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _is_full_sha(rev: str | None) -> bool:
    return bool(rev) and len(rev) == 40 and all(c in "0123456789abcdef" for c in rev.lower())


def resolve_hub_revision(repo_id: str, revision: str | None, repo_type: str = "dataset") -> str | None:
    """The commit a Hub revision points at, or None when the Hub cannot be asked (offline)."""
    if _is_full_sha(revision):
        return revision
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return None
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        info = api.dataset_info(repo_id, revision=revision) if repo_type == "dataset" else api.model_info(repo_id, revision=revision)
        return info.sha
    except Exception:  # noqa: BLE001 - unreachable Hub: no cache key, the build itself reports errors
        return None


def source_fingerprint(src, progress=None, hashes: HashCache | None = None) -> dict:
    """What identifies a source's content: file hashes, or the resolved Hub commit."""
    from alignkit.data.sources import source_files

    if src.id is not None:
        resolved = resolve_hub_revision(src.id, src.revision)
        return {"kind": "hub", "id": src.id, "revision": src.revision, "resolved_revision": resolved}
    kind, files = source_files(src)
    if not files:
        raise DataError(Problem(where=f"source {src.path}", message=f"no files for split {src.split!r}", fix="check the path and split"))
    bar = progress.task(f"hashing {Path(src.path).name}", sum(f.stat().st_size for f in files)) if progress else None
    digest = hashes.sha256 if hashes is not None else sha256_file
    entries = [{"path": str(f), "bytes": f.stat().st_size, "sha256": digest(f, bar)} for f in files]
    return {"kind": kind, "files": entries}


def tokenizer_fingerprint(name_or_path: str | None, revision: str | None = None) -> str | None:
    """A hash of the tokenizer's files (template, special tokens), without importing transformers;
    None when they are not available locally (then the build is not cached)."""
    if not name_or_path:
        return None
    path = Path(os.path.expanduser(name_or_path))
    found: list[tuple[str, str]] = []
    if path.is_dir():
        for name in TOKENIZER_FILES:
            f = path / name
            if f.is_file():
                found.append((name, sha256_file(f)))
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            for name in TOKENIZER_FILES:
                f = try_to_load_from_cache(name_or_path, name, revision=revision)
                if isinstance(f, str) and os.path.isfile(f):
                    found.append((name, sha256_file(f)))
        except Exception:  # noqa: BLE001
            return None
    if not any(n == "tokenizer_config.json" for n, _ in found):
        return None
    return hashlib.sha256(_canonical(found).encode()).hexdigest()


def _template_file_hash(data: "DataConfig") -> str | None:
    from alignkit.data.chat import BUILTIN_TEMPLATES

    value = data.chat_template
    if not value or value in BUILTIN_TEMPLATES or "{{" in value or "{%" in value:
        return None
    p = Path(os.path.expanduser(value))
    return sha256_file(p) if p.is_file() else None


def input_key(
    data: "DataConfig",
    task: str,
    fingerprints: list[dict],
    *,
    render: bool,
    tokenizer_fp: str | None,
    decontam: dict | None,
) -> str | None:
    """The manifest key of a build; None when some input cannot be pinned (then never cached)."""
    for fp in fingerprints:
        if fp["kind"] == "hub" and not fp.get("resolved_revision"):
            return None
    if render and tokenizer_fp is None:
        return None
    from alignkit.data.chat import BUILTIN_TEMPLATES

    builtin = None
    if data.chat_template in BUILTIN_TEMPLATES or (not data.chat_template):
        # built-in templates ship with alignkit: hash their text so editing one invalidates builds
        from alignkit.data.chat import builtin_template

        names = [data.chat_template] if data.chat_template else [data.chat_template_fallback]
        builtin = {n: hashlib.sha256(builtin_template(n).encode()).hexdigest() for n in names if n in BUILTIN_TEMPLATES}
    payload = {
        "format": FORMAT_VERSION,
        "task": task,
        "data": data.model_dump(mode="json", exclude={"preprocessing_num_workers"}),
        "sources": [
            {k: v for k, v in fp.items() if k != "files"} | {"files": [(f["bytes"], f["sha256"]) for f in fp.get("files", [])]}
            for fp in fingerprints
        ],
        "render": render,
        "tokenizer": tokenizer_fp if render else None,
        "template_file": _template_file_hash(data) if render else None,
        "builtin_templates": builtin if render else None,
        "decontamination": decontam,
    }
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()
