"""``alignkit mix build``: freeze a mixture into a directory with a manifest.

Layout of a build directory::

    manifest.json      what went in (sources with file hashes / revisions, seed, config, template,
                       decontamination) and what came out (rows per source and split, sha256 per file)
    train-00000-of-00002.parquet ...  the mixed rows (+ rendered text columns, listed as
                       derived_columns), SHARD_ROWS rows per file
    test-00000-of-00001.parquet       when the mixture has a test split

The same inputs give a byte-identical directory. The manifest's ``key`` is a hash of the inputs
(content hashes of local files, resolved Hub revisions, the data config, the tokenizer files and the
chat template, the decontamination files); a re-run whose key matches an intact build returns at
once. The directory is written next to its destination and renamed into place, so readers never
see half a build. A build directory is a valid ``path:`` source (its derived columns are dropped).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from alignkit.data.fingerprint import (
    FORMAT_VERSION,
    HashCache,
    input_key,
    sha256_file,
    source_fingerprint,
    tokenizer_fingerprint,
)
from alignkit.errors import ConfigError, Problem, UsageError
from alignkit.fsutil import building_dir

if TYPE_CHECKING:  # pragma: no cover
    from alignkit.config.data import DataConfig

SHARD_ROWS = 100_000


def verify_build(directory: Path, manifest: dict, *, full: bool = False) -> bool:
    """Every data file is present with its recorded size (and hash, with ``full``)."""
    for info in manifest.get("splits", {}).values():
        for entry in info.get("files", []):
            f = directory / entry["file"]
            if not f.is_file() or f.stat().st_size != entry["bytes"]:
                return False
            if full and sha256_file(f) != entry["sha256"]:
                return False
    return True


def shard_bounds(rows: int) -> list[tuple[int, int]]:
    """Row ranges of a split's parquet files: SHARD_ROWS each (a function of the row count only, so
    builds stay byte-identical; shards are written in parallel)."""
    n = max(1, -(-rows // SHARD_ROWS))
    return [(rows * k // n, rows * (k + 1) // n) for k in range(n)]


def split_digest(files: list[dict]) -> str:
    """A split's content hash: sha256 over its files' sha256s, in order."""
    return hashlib.sha256("".join(f["sha256"] for f in files).encode()).hexdigest()


@dataclass
class BuildResult:
    output: Path
    cached: bool
    manifest: dict

    def as_json(self) -> dict:
        m = self.manifest
        return {
            "output": str(self.output),
            "cached": self.cached,
            "key": m.get("key"),
            "splits": {k: {"rows": v["rows"], "sha256": v["sha256"]} for k, v in m.get("splits", {}).items()},
            "sources": m.get("sources"),
            "decontamination": m.get("decontamination"),
        }


def _write_parquet(table, path: Path) -> None:
    import pyarrow.parquet as pq

    # snappy (Parquet's and datasets' default) writes ~2x faster than zstd for ~40 % more bytes;
    # statistics and dictionaries on long text cost time and buy nothing for a training set
    pq.write_table(table, str(path), compression="snappy", row_group_size=50_000, use_dictionary=False, write_statistics=False)


def _write_shards(jobs: list, directory: Path, threads: int) -> None:
    if threads <= 1 or len(jobs) <= 1:
        for _split, name, part in jobs:
            _write_parquet(part, directory / name)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(threads, len(jobs))) as pool:
        list(pool.map(lambda job: _write_parquet(job[2], directory / job[1]), jobs))


def load_tokenizer(name_or_path: str, revision: str | None = None, *, trust_remote_code: bool = False):
    try:
        from alignkit.data import tokclass

        return tokclass.load(name_or_path, revision, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - any loading failure is a config problem to fix
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            Problem(
                where="model.tokenizer_name_or_path",
                message=f"cannot load tokenizer {name_or_path!r}: {msg}"[:400],
                fix="give a local tokenizer directory (--tokenizer DIR) or a Hub id reachable from here",
            )
        ) from None


def build_mixture(
    data: "DataConfig",
    task: str,
    output: str | Path,
    *,
    tokenizer_name: str | None = None,
    tokenizer_revision: str | None = None,
    tokenizer=None,
    render: bool = True,
    eval_files: list[str] | tuple[str, ...] = (),
    ngram: int = 13,
    overwrite: bool = False,
    console=None,
) -> BuildResult:
    """Materialize the mixture into ``output`` (see module doc). ``render`` adds the chat-template
    rendering of every row (needs a tokenizer); ``eval_files`` drops rows contaminated with those
    evaluation prompts and records them in the manifest."""
    import alignkit
    from alignkit.config.tasks import data_format
    from alignkit.data.progress import progress_for

    task = data_format(task)  # orpo: DPO's pairs
    render = render and task != "cpt"  # plain text has no chat template to render
    from alignkit.data.sources import MANIFEST, is_build_dir, read_manifest, source_label

    out = Path(os.path.expanduser(str(output)))
    if render and tokenizer is None and not tokenizer_name:
        render = False
    if out.exists() and not out.is_dir():
        raise UsageError(Problem(where=str(out), message="exists and is not a directory", fix="choose another --output"))

    hashes = HashCache()
    with progress_for(console) as prog:
        fingerprints = [source_fingerprint(s, prog, hashes) for s in data.mixture]
        hashes.save()
        decontam = None
        if eval_files:
            from alignkit.data.decontaminate import file_sha256

            decontam = {"ngram": ngram, "files": [file_sha256(f) if Path(f).is_file() else f for f in eval_files]}
        tok_fp = tokenizer_fingerprint(tokenizer_name, tokenizer_revision) if render else None
        key = input_key(data, task, fingerprints, render=render, tokenizer_fp=tok_fp, decontam=decontam)

        if out.is_dir() and any(out.iterdir()):
            previous = read_manifest(out) if is_build_dir(out) else None
            same = previous is not None and key is not None and previous.get("key") == key
            if same and verify_build(out, previous):
                return BuildResult(out, True, previous)
            # a damaged build of the same inputs (a file missing or resized) is rebuilt in place
            if not overwrite and not same:
                what = "a mix build of different inputs" if previous is not None else "not empty and not a mix build"
                raise UsageError(
                    Problem(where=str(out), message=f"is {what}", fix="pass --overwrite to replace it, or choose another --output")
                )

    from alignkit.data.mixer import mix

    result = mix(data, task, console=console)
    tables = dict(result.tables)
    decon_record = None
    with progress_for(console) as prog:
        if eval_files and "train" in tables:
            from alignkit.data.decontaminate import find_contamination

            cont = find_contamination(
                tables["train"], task, result.indices["train"], list(data.mixture), list(eval_files),
                ngram=ngram, workers=data.preprocessing_num_workers, progress=prog,
            )
            if cont.positions:
                import numpy as np
                import pyarrow as pa

                keep = np.ones(tables["train"].num_rows, dtype=bool)
                keep[np.asarray(cont.positions, dtype=np.int64)] = False
                kept = np.nonzero(keep)[0]
                tables["train"] = tables["train"].take(pa.array(kept))
                from alignkit.data.sampling import SplitIndices

                si = result.indices["train"]
                result.indices["train"] = SplitIndices(si.src[kept], si.row[kept])
            decon_record = cont.as_json(dropped=True)

        template_record = None
        derived: list[str] = []
        if render:
            from alignkit.data.chat import Renderer, resolve_chat_template_with_origin
            from alignkit.data.render import render_table, rendered_column_names

            tok = tokenizer if tokenizer is not None else load_tokenizer(tokenizer_name, tokenizer_revision)
            template, origin = resolve_chat_template_with_origin(tok, data)
            renderer = Renderer(tok, template, insert_system=data.auto_insert_empty_system_msg)
            import pyarrow as pa

            for split, table in list(tables.items()):
                si = result.indices[split]

                def describe(pos: int, si=si, split=split) -> str:
                    return f"source {source_label(data.mixture[int(si.src[pos])])} row {int(si.row[pos])} ({split} split)"

                cols = render_table(table, task, renderer, workers=data.preprocessing_num_workers, progress=prog, describe_row=describe)
                for name, values in cols.items():
                    table = table.append_column(name, values)
                tables[split] = table
            derived = rendered_column_names(task)
            template_record = {
                "origin": origin,
                "sha256": hashlib.sha256(template.encode()).hexdigest(),
                "tokenizer": tokenizer_name,
                "insert_empty_system": data.auto_insert_empty_system_msg,
            }

        # write next to the destination, then rename into place
        out.parent.mkdir(parents=True, exist_ok=True)
        with building_dir(out) as tmp:
            splits_info: dict[str, dict] = {}
            jobs = []
            for split, table in tables.items():
                bounds = shard_bounds(table.num_rows)
                for k, (a, b) in enumerate(bounds):
                    name = f"{split}-{k:05d}-of-{len(bounds):05d}.parquet"
                    jobs.append((split, name, table.slice(a, b - a)))
            _write_shards(jobs, tmp, data.preprocessing_num_workers or 1)
            bar = prog.task("hashing output", sum((tmp / name).stat().st_size for _s, name, _t in jobs))
            for split, table in tables.items():
                files = [
                    {"file": name, "rows": part.num_rows, "bytes": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name, bar)}
                    for s_, name, part in jobs
                    if s_ == split
                ]
                splits_info[split] = {
                    "rows": table.num_rows,
                    "sha256": split_digest(files),
                    "files": files,
                    "columns": table.column_names,
                }
            sources = []
            plan = result.plan
            for i, (src, fp, ls, val) in enumerate(zip(data.mixture, fingerprints, result.loaded, result.validation)):
                rows = {}
                for split, si in result.indices.items():
                    rows[split] = int((si.src == i).sum())
                entry = {
                    "index": i,
                    "name": src.name,
                    "id": src.id,
                    "path": src.path,
                    "config": src.config,
                    "split": src.split,
                    "is_test": src.is_test,
                    "weight": None if src.is_test else src.weight,
                    "columns": src.columns,
                    "revision": src.revision,
                    "resolved_revision": fp.get("resolved_revision"),
                    "kind": fp["kind"],
                    "files": fp.get("files", []),
                    "rows_available": ls.table.num_rows,
                    "rows_invalid": val.n_invalid,
                    "rows": rows,
                }
                if ls.info.get("fingerprint") and fp["kind"] == "hub":
                    entry["datasets_fingerprint"] = ls.info["fingerprint"]
                sources.append(entry)
            manifest = {
                BUILD_MARKER_KEY: FORMAT_VERSION,
                "key": key,
                "task": task,
                "seed": data.mix_seed,
                "test_from": plan.test_from,
                "data": data.model_dump(mode="json", exclude={"preprocessing_num_workers"}),
                "sources": sources,
                "splits": splits_info,
                "derived_columns": derived,
                "chat_template": template_record,
                "decontamination": decon_record,
                "warnings": plan.warnings,
                "alignkit_version": alignkit.__version__,
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return BuildResult(out, False, manifest)


BUILD_MARKER_KEY = "alignkit_mix"


