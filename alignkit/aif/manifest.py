"""The work directory, content hashes, seeds, and atomic ``DatasetDict`` directories.

Work directory (``aif generate --output WORK``, ``aif judge --input WORK``)::

    completions.jsonl   one line per (prompt_id, model, sample), appended as each arrives
    ratings.jsonl       one line per (prompt_id, model, sample, aspect, judge), appended as each arrives
    aif.json            what was asked: prompt sources, each model's settings, each judge's aspects
                        and prompt hashes, counts (rewritten atomically)

Dataset directory (``aif binarize/distill --output OUT``): ``DatasetDict.save_to_disk`` plus
``manifest.json`` (``{"alignkit_aif": 1, ...}``: models, judge, settings, counts, content hashes)
and, for preferences, ``pairs.jsonl`` (which completions each pair came from) and ``scores.png``.
It is written in a temp directory next to OUT and renamed into place, so readers see the old
dataset or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from alignkit.errors import DataError, Problem, UsageError
from alignkit.fsutil import building_dir, write_atomic

FORMAT = 1
MARKER = "alignkit_aif"  # key of manifest.json (the mixer's build dirs use "alignkit_mix")
WORK_MANIFEST = "aif.json"
COMPLETIONS = "completions.jsonl"
RATINGS = "ratings.jsonl"
DATASET_MANIFEST = "manifest.json"
PAIRS = "pairs.jsonl"

PREF_SPLITS = ("train_prefs", "test_prefs", "train_sft", "test_sft")
SFT_SPLITS = ("train_sft", "test_sft")


# ---------------------------------------------------------------------------------------------
# hashes and seeds


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_id(prompt: str) -> str:
    """sha256 of the prompt text, as ultrachat_200k and ultrafeedback_binarized define ``prompt_id``."""
    return sha256_text(prompt)


def sha256_file(path: str | os.PathLike) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def rows_digest(rows: Iterable[dict]) -> str:
    """sha256 over the rows as canonical JSON lines (independent of Arrow file layout)."""
    h = hashlib.sha256()
    for r in rows:
        h.update(canonical(r).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def derive_seed(seed: int, *parts: Any) -> int:
    """A 64-bit seed from ``seed`` and a tag: ``sha256("SEED:part1:part2...")``, first 8 bytes, big-endian."""
    text = ":".join([str(int(seed)), *[str(p) for p in parts]])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


# ---------------------------------------------------------------------------------------------
# the work directory


class WorkDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def completions(self) -> Path:
        return self.path / COMPLETIONS

    @property
    def ratings(self) -> Path:
        return self.path / RATINGS

    @property
    def manifest_path(self) -> Path:
        return self.path / WORK_MANIFEST

    def read_manifest(self) -> dict:
        p = self.manifest_path
        if not p.is_file():
            return {}
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except ValueError as e:
            raise DataError(
                Problem(where=str(p), message=f"not JSON: {e}", fix="restore it, or delete it to forget the recorded settings")
            ) from None
        if not isinstance(data, dict):
            raise DataError(Problem(where=str(p), message="expected a JSON object"))
        return data

    def write_manifest(self, data: dict) -> None:
        data = dict(data)
        data[MARKER + "_work"] = FORMAT
        data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_atomic(self.manifest_path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", mode=0o644)

    def require_completions(self, option: str = "--input") -> None:
        if not self.completions.is_file():
            raise DataError(
                Problem(
                    where=f"{option} {self.path}",
                    message=f"no {COMPLETIONS} here",
                    fix=f"run `alignkit aif generate --output {self.path} ...` first",
                )
            )


def load_log(path: Path, key: Callable[[dict], Any]):
    """The resume log at ``path`` (``alignkit.client.JsonlLog``)."""
    from alignkit.client import JsonlLog

    return JsonlLog(path, key)


# ---------------------------------------------------------------------------------------------
# dataset directories


def message_feature():
    import datasets

    return datasets.List({"content": datasets.Value("string"), "role": datasets.Value("string")})


def preference_features():
    """ultrafeedback_binarized's columns, in its order (every split has all of them)."""
    import datasets

    msgs = message_feature()
    return datasets.Features(
        {
            "prompt": datasets.Value("string"),
            "prompt_id": datasets.Value("string"),
            "chosen": msgs,
            "rejected": msgs,
            "messages": msgs,
            "score_chosen": datasets.Value("float64"),
            "score_rejected": datasets.Value("float64"),
        }
    )


def sft_features():
    """ultrachat_200k's columns."""
    import datasets

    return datasets.Features(
        {"prompt": datasets.Value("string"), "prompt_id": datasets.Value("string"), "messages": message_feature()}
    )


def check_output(out: Path, *, overwrite: bool, option: str = "--output") -> None:
    """Refuse to replace a non-empty directory alignkit aif did not write (unless ``overwrite``)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(Problem(where=f"{option} {out}", message="exists and is not a directory", fix="choose another path"))
    if not out.is_dir() or overwrite or not any(out.iterdir()):
        return
    m = out / DATASET_MANIFEST
    try:
        ours = m.is_file() and MARKER in json.loads(m.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        ours = False
    if not ours:
        raise UsageError(
            Problem(
                where=f"{option} {out}",
                message="is a non-empty directory that alignkit aif did not write",
                fix="choose another --output, or pass --overwrite to replace it",
            )
        )


def write_dataset_dir(
    out: str | os.PathLike,
    splits: dict[str, list[dict]],
    features,
    manifest: dict,
    *,
    extra: Callable[[Path], None] | None = None,
) -> dict:
    """Save ``splits`` as a ``DatasetDict`` at ``out`` with ``manifest.json``, atomically.

    ``manifest`` gets ``alignkit_aif``, per-split ``rows`` and ``sha256`` (``rows_digest``) and the
    alignkit version added. ``extra(tmp_dir)`` may add files before the rename. Returns the manifest.
    """
    import datasets

    import alignkit

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dd = datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in features}, features=features, split=name)
            for name, rows in splits.items()
        }
    )
    split_info = {
        name: {"rows": len(rows), "sha256": rows_digest({k: r[k] for k in features} for r in rows)}
        for name, rows in splits.items()
    }
    from alignkit.aif.progress import quiet_hf

    with building_dir(out) as tmp:
        with quiet_hf(datasets_too=True):
            # an empty split needs one (empty) shard: with zero, datasets 5.2 cannot load_from_disk it
            dd.save_to_disk(str(tmp), num_shards={name: (1 if not rows else None) for name, rows in splits.items()})
        if extra is not None:
            extra(tmp)  # may add to ``manifest`` too
        manifest = {
            MARKER: FORMAT,
            **manifest,
            "splits": split_info,
            "columns": list(features),
            "alignkit_version": getattr(alignkit, "__version__", None),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (tmp / DATASET_MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def split_test(ids: list[str], test_size: float | int, seed: int, *, option: str = "--test-size") -> set[str]:
    """The ids that go to the test splits: a seeded sample of ``sorted(ids)``.

    ``test_size`` is a count (int) or a fraction in [0, 1) (``ceil(f * n)`` rows). The sample is
    ``random.Random(derive_seed(seed, "test-split")).sample(sorted(ids), k)``.
    """
    import math
    import random

    n = len(ids)
    if isinstance(test_size, float):
        if not 0 <= test_size < 1:
            raise UsageError(Problem(where=option, message=f"fraction {test_size} is not in [0, 1)", fix="e.g. 0.05, or a count like 200"))
        k = math.ceil(test_size * n - 1e-9)
    else:
        if test_size < 0:
            raise UsageError(Problem(where=option, message="must be >= 0"))
        k = int(test_size)
    if k == 0:
        return set()
    if k >= n:
        raise UsageError(
            Problem(
                where=option,
                message=f"{k} test rows out of {n} leaves nothing to train on",
                fix="use a smaller --test-size (0 for no test split)",
            )
        )
    rng = random.Random(derive_seed(seed, "test-split"))
    return set(rng.sample(sorted(ids), k))


def parse_test_size(text: str | float | int, option: str = "--test-size") -> float | int:
    """``"200"`` → 200 rows, ``"0.05"`` → 5 %."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return text
    s = str(text).strip()
    try:
        if any(c in s for c in ".eE"):
            return float(s)
        return int(s)
    except ValueError:
        raise UsageError(
            Problem(where=option, message=f"{text!r} is neither a row count nor a fraction", fix="e.g. 200 or 0.05")
        ) from None
