"""The dataset mixer: one documented meaning of a mixture (docs/data.md has the long form).

* Each source is ``{id or path, config, split, columns, weight}`` (``alignkit.config.data.DataSource``).
* A train source with ``n`` valid rows contributes ``floor(weight * n)`` rows, the product computed in
  decimal on the weight as written (``0.29 * 100 = 29``, not 28 as float arithmetic gives). Rows are
  taken from a permutation seeded by ``mix_seed`` and the source's identity: ``weight <= 1`` takes the
  first rows of it; ``weight > 1`` takes every row ``floor(weight)`` times plus the first rows of the
  same permutation for the fraction (so weight 1.5 = all rows + the half that weight 0.5 takes).
* Train sources are concatenated (in mixture order) and shuffled with ``mix_seed``.
* Test sources (split name containing ``test`` or ``test: true``) are taken whole, in order, and never
  reach train.
* ``test_split_size`` (only without test sources) carves an eval split out of the mixed train: a
  fraction ``f`` takes ``ceil(f * U)`` of the ``U`` distinct rows of the mixture, a count takes that
  many; every copy of a carved row leaves train, so no eval row is trained on.

Sources load from the Hub (``datasets.load_dataset``), local json/jsonl/parquet/csv/arrow files,
globs, directories of such files named by split, ``save_to_disk`` directories and ``alignkit mix
build`` outputs. Local files are read with pyarrow (multi-threaded, no cache copies).
"""

from __future__ import annotations

import glob as _glob
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

from alignkit.errors import ConfigError, DataError, Problem

if TYPE_CHECKING:  # pragma: no cover
    from alignkit.config.data import DataConfig, DataSource

Task = Literal["sft", "dpo"]
DATA_EXTENSIONS = (".jsonl", ".ndjson", ".json", ".parquet", ".csv", ".tsv", ".arrow")
COMPRESSIONS = (".gz", ".bz2", ".zst", ".lz4")
MANIFEST = "manifest.json"
BUILD_MARKER = "alignkit_mix"
JSON_BLOCK_SIZE = 16 << 20
SAVE_TO_DISK_FILES = ("state.json", "dataset_info.json", "dataset_dict.json")


# ----------------------------------------------------------------------------------------------
# progress


class _NullTask:
    def advance(self, n: int = 1) -> None:
        pass


class _Task:
    def __init__(self, progress, task_id):
        self._p, self._id = progress, task_id

    def advance(self, n: int = 1) -> None:
        self._p.advance(self._id, n)


class Progress:
    """Rich progress bars (loading, validating, templating, hashing), or nothing without a console."""

    def __init__(self, console=None):
        self._console = console
        self._progress = None

    def __enter__(self) -> "Progress":
        if self._console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress
            from rich.progress import TextColumn, TimeElapsedColumn

            self._progress = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def task(self, description: str, total: int | None) -> _Task | _NullTask:
        if self._progress is None:
            return _NullTask()
        return _Task(self._progress, self._progress.add_task(description, total=total))


def progress_for(console) -> Progress:
    return Progress(console)


# ----------------------------------------------------------------------------------------------
# arithmetic (pure functions of row counts: shared by plan_mixture and load_mixture)


def rows_for_weight(weight: float, n: int) -> int:
    """Rows a train source of ``n`` rows contributes: floor(weight * n), in decimal arithmetic."""
    return int((Decimal(repr(float(weight))) * n).to_integral_value(rounding=ROUND_FLOOR))


def carve_count(test_split_size: float | int, distinct_rows: int) -> int:
    """Eval rows carved from ``distinct_rows``: ceil(f * U) for a fraction, the count for an int."""
    if isinstance(test_split_size, float):
        return int((Decimal(repr(test_split_size)) * distinct_rows).to_integral_value(rounding=ROUND_CEILING))
    return int(test_split_size)


def derive_seed(mix_seed: int, *parts: Any) -> int:
    text = json.dumps([mix_seed, *[str(p) for p in parts]])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def source_seed(mix_seed: int, src: "DataSource") -> int:
    return derive_seed(mix_seed, "source", src.name, src.config or "", src.split)


def source_indices(n: int, weight: float, seed: int):
    """Row indices (into 0..n-1) a train source contributes, before the mixture's shuffle."""
    import numpy as np

    total = rows_for_weight(weight, n)
    if n == 0 or total == 0:
        return np.zeros(0, dtype=np.int64)
    full, rem = divmod(total, n)
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    parts = [np.arange(n, dtype=np.int64)] * full + [perm[:rem]]
    return np.concatenate(parts)


@dataclass
class SplitIndices:
    """Per split: for each output row, the source (position in data.mixture) and the row in it."""

    src: Any  # np.ndarray[int32]
    row: Any  # np.ndarray[int64]

    def __len__(self) -> int:
        return int(len(self.src))


def mixture_indices(data: "DataConfig", counts: list[int]) -> dict[str, SplitIndices]:
    """The whole mixture as (source, row) pairs, given the usable row count of every source."""
    import numpy as np

    train_src, train_row, test_src, test_row = [], [], [], []
    for i, (src, n) in enumerate(zip(data.mixture, counts)):
        if src.is_test:
            test_src.append(np.full(n, i, dtype=np.int32))
            test_row.append(np.arange(n, dtype=np.int64))
        else:
            idx = source_indices(n, src.weight, source_seed(data.mix_seed, src))
            train_src.append(np.full(len(idx), i, dtype=np.int32))
            train_row.append(idx)

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    tsrc, trow = cat(train_src, np.int32), cat(train_row, np.int64)
    perm = np.random.default_rng(derive_seed(data.mix_seed, "shuffle")).permutation(len(tsrc))
    tsrc, trow = tsrc[perm], trow[perm]
    out = {"train": SplitIndices(tsrc, trow)}
    if test_src:
        out["test"] = SplitIndices(cat(test_src, np.int32), cat(test_row, np.int64))
    elif data.test_split_size is not None:
        out["train"], out["test"] = carve(data, out["train"], max(counts) if counts else 0)
    return out


def carve(data: "DataConfig", train: SplitIndices, max_n: int) -> tuple[SplitIndices, SplitIndices]:
    import numpy as np

    key = train.src.astype(np.int64) * (max_n + 1) + train.row
    uniq, first = np.unique(key, return_index=True)
    m = carve_count(data.test_split_size, len(uniq))
    if m >= len(uniq):
        raise ConfigError(
            Problem(
                where="data.test_split_size",
                message=f"carving {m} eval rows from {len(uniq)} distinct training rows leaves nothing to train on",
                fix="use a smaller test_split_size",
            )
        )
    rng = np.random.default_rng(derive_seed(data.mix_seed, "carve"))
    chosen = rng.choice(len(uniq), size=m, replace=False)
    test_pos = np.sort(first[chosen])  # eval rows in the order they first appear in the shuffled train
    is_test = np.isin(key, uniq[chosen])
    keep = ~is_test
    return (
        SplitIndices(train.src[keep], train.row[keep]),
        SplitIndices(train.src[test_pos], train.row[test_pos]),
    )


# ----------------------------------------------------------------------------------------------
# reports


@dataclass
class SourceRows:
    """One source's line in a split of a plan or a mixture."""

    index: int  # position in data.mixture
    name: str
    config: str | None
    split: str
    weight: float | None  # None for test sources and carved rows
    available: int | None  # rows in the source (None when unknown)
    invalid: int = 0  # rows dropped by validation (skip_invalid)
    rows: int = 0  # rows in this output split
    kind: str = ""

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "config": self.config,
            "split": self.split,
            "weight": self.weight,
            "available": self.available,
            "invalid": self.invalid,
            "rows": self.rows,
        }


@dataclass
class MixPlan:
    task: str
    seed: int
    splits: dict[str, list[SourceRows]]
    warnings: list[str] = field(default_factory=list)
    test_from: str = "none"  # "sources", "carved" or "none"

    def rows(self, split: str) -> int:
        return sum(s.rows for s in self.splits.get(split, []))

    def as_json(self) -> dict:
        return {
            "splits": {
                name: {"rows": self.rows(name), "sources": [s.as_json() for s in rows]}
                for name, rows in self.splits.items()
            },
            "seed": self.seed,
            "test_from": self.test_from,
            "warnings": list(self.warnings),
        }


def _split_report(data: "DataConfig", idx: dict[str, SplitIndices], available, invalid, kinds) -> MixPlan:
    import numpy as np

    plan = MixPlan(task="", seed=data.mix_seed, splits={})
    carved = data.test_split_size is not None and not any(s.is_test for s in data.mixture)
    plan.test_from = "sources" if any(s.is_test for s in data.mixture) else ("carved" if carved else "none")
    for split, si in idx.items():
        counts = np.bincount(si.src, minlength=len(data.mixture)) if len(si) else np.zeros(len(data.mixture), int)
        rows = []
        for i, src in enumerate(data.mixture):
            in_split = (src.is_test and split == "test") or (not src.is_test and (split == "train" or carved))
            if not in_split:
                continue
            rows.append(
                SourceRows(
                    index=i,
                    name=src.name,
                    config=src.config,
                    split=src.split,
                    weight=None if (src.is_test or split == "test") else src.weight,
                    available=available[i],
                    invalid=invalid[i],
                    rows=int(counts[i]),
                    kind=kinds[i],
                )
            )
        plan.splits[split] = rows
    for i, src in enumerate(data.mixture):
        if src.is_test and "weight" in src.model_fields_set and src.weight != 1.0:
            plan.warnings.append(f"source {src.name} ({src.split}) is a test source: its weight {src.weight} is ignored")
        n = available[i]
        if n is not None and not src.is_test and n - invalid[i] > 0 and rows_for_weight(src.weight, n - invalid[i]) == 0:
            plan.warnings.append(
                f"source {src.name} ({src.split}): weight {src.weight} of {n - invalid[i]} rows takes 0 rows"
            )
    return plan


# ----------------------------------------------------------------------------------------------
# loading sources


@dataclass
class LoadedSource:
    source: Any  # DataSource
    table: Any  # pyarrow.Table
    kind: str  # hub | file | glob | dir | save_to_disk | build
    files: list[Path] = field(default_factory=list)
    file_rows: list[int] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return source_label(self.source)

    def locate(self, row: int) -> str:
        """Where row ``row`` (0-based, over the whole source) stands: its file when there are several, and
        its 1-based line in a JSON-lines file — what an editor shows."""
        if not self.file_rows or len(self.files) != len(self.file_rows):
            return ""
        start = 0
        for f, n in zip(self.files, self.file_rows):
            if row < start + n:
                line = jsonl_line(f, row - start)
                parts = [f"file {f.name} row {row - start}"] if len(self.files) > 1 else []
                parts += [f"line {line}"] if line else []
                return f" ({', '.join(parts)})" if parts else ""
            start += n
        return ""


def source_label(src: "DataSource") -> str:
    label = src.name
    if src.config:
        label += f":{src.config}"
    return f"{label} ({src.split})"


def _fmt(path: Path) -> str:
    name = path.name.lower()
    for c in COMPRESSIONS:
        if name.endswith(c):
            name = name[: -len(c)]
    return Path(name).suffix


def jsonl_line(path: Path, row: int) -> int | None:
    """The 1-based line of ``row`` (0-based) in a JSON-lines file, whose readers skip blank lines; None for
    other formats. Only for error messages: it reads the file up to that row."""
    fmt = _fmt(path)
    if fmt not in (".jsonl", ".ndjson", ".json"):
        return None
    try:
        lines = _nonblank_lines(str(path), path.stat().st_mtime_ns)
    except OSError:
        return None
    if lines is None or row >= len(lines):
        return None
    return lines[row]


@lru_cache(maxsize=4)
def _nonblank_lines(path: str, _mtime: int):
    """Line numbers of the non-blank lines of a (possibly compressed) text file, cached per version."""
    from array import array

    import pyarrow as pa

    out = array("q")
    with pa.input_stream(path, compression="detect") as fh:
        for lineno, line in enumerate(io.TextIOWrapper(fh, encoding="utf-8", errors="replace"), 1):
            if line.strip():
                if not out and line.lstrip().startswith("["):
                    return None  # a .json array, not JSON lines: rows are not lines
                out.append(lineno)
    return out


def _read_jsonl_python(path: Path, where: str):
    import pyarrow as pa

    rows = []
    with pa.input_stream(str(path), compression="detect") as fh:
        for lineno, line in enumerate(fh.read().decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise DataError(
                    Problem(where=f"{path}:{lineno}", message=f"invalid JSON: {exc}", fix="fix or remove that line")
                ) from None
    return _from_records(rows, path)


def _from_records(rows: list, path: Path):
    import pyarrow as pa

    if rows and not all(isinstance(r, dict) for r in rows):
        raise DataError(Problem(where=str(path), message="rows must be JSON objects", fix="write one object per row"))
    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(
            Problem(
                where=str(path),
                message=f"rows have inconsistent types: {exc}",
                fix="give every row the same fields with the same types",
            )
        ) from None


def read_data_file(path: Path):
    """One local data file as a pyarrow Table."""
    import pyarrow as pa

    fmt = _fmt(path)
    try:
        if fmt in (".jsonl", ".ndjson", ".json"):
            if fmt == ".json":
                with pa.input_stream(str(path), compression="detect") as fh:
                    head = fh.read(4096).lstrip()
                if head.startswith(b"["):
                    with pa.input_stream(str(path), compression="detect") as fh:
                        try:
                            records = json.loads(fh.read().decode("utf-8"))
                        except ValueError as exc:
                            raise DataError(
                                Problem(where=str(path), message=f"invalid JSON: {exc}", fix="fix the file")
                            ) from None
                    return _from_records(records, path)
            import pyarrow.json as pj

            try:
                return pj.read_json(str(path), read_options=pj.ReadOptions(block_size=JSON_BLOCK_SIZE))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return _read_jsonl_python(path, str(path))
        if fmt == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(str(path))
        if fmt in (".csv", ".tsv"):
            import pyarrow.csv as pcsv

            parse = pcsv.ParseOptions(delimiter="\t" if fmt == ".tsv" else ",", newlines_in_values=True)
            return pcsv.read_csv(str(path), parse_options=parse)
        if fmt == ".arrow":
            try:
                with pa.memory_map(str(path)) as src:
                    return pa.ipc.open_file(src).read_all()
            except pa.ArrowInvalid:
                with pa.memory_map(str(path)) as src:
                    return pa.ipc.open_stream(src).read_all()
    except DataError:
        raise
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise DataError(
            Problem(where=str(path), message=f"cannot read {fmt or 'the'} file: {exc}", fix="check the file's format")
        ) from None
    raise DataError(
        Problem(
            where=str(path),
            message=f"unsupported file type {fmt or '(no extension)'}",
            fix=f"use one of {', '.join(DATA_EXTENSIONS)} (optionally compressed: {', '.join(COMPRESSIONS)})",
        )
    )


def _concat(tables: list, where: str):
    import pyarrow as pa

    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(
            Problem(
                where=where,
                message=f"its parts have incompatible columns: {exc}",
                fix="give every file/source the same columns and types, or pick common ones with 'columns:'",
            )
        ) from None


def _is_build_dir(path: Path) -> bool:
    m = path / MANIFEST
    if not m.is_file():
        return False
    try:
        return BUILD_MARKER in json.loads(m.read_text())
    except (ValueError, OSError):
        return False


def read_manifest(path: Path) -> dict:
    return json.loads((Path(path) / MANIFEST).read_text())


def _split_files(directory: Path, split: str) -> tuple[list[Path], set[str]]:
    """Data files under ``directory`` belonging to ``split`` (by file stem or folder name)."""
    found: list[Path] = []
    names: set[str] = set()
    for p in sorted(directory.rglob("*")):
        if not p.is_file() or _fmt(p) not in DATA_EXTENSIONS or p.name in SAVE_TO_DISK_FILES:
            continue
        rel = p.relative_to(directory)
        stem_head = rel.name.split(".")[0].split("-")[0]
        parts = [*rel.parts[:-1], stem_head]
        names.add(rel.parts[0] if len(rel.parts) > 1 and rel.parts[0] != "data" else stem_head)
        if split in parts:
            found.append(p)
    return found, names


def _hub_error(src, exc: Exception) -> DataError:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
    fix = "check the id, config, split and revision and that the Hub is reachable"
    if offline:
        fix = "offline mode (HF_HUB_OFFLINE=1) only finds datasets already in the local cache; " + fix
    fix += "; or download the data and give it as 'path:'"
    return DataError(
        Problem(where=f"source {src.id}", message=f"cannot load from the Hub: {type(exc).__name__}: {msg}"[:500], fix=fix)
    )


def _dataset_table(ds):
    if getattr(ds, "_indices", None) is not None:
        ds = ds.flatten_indices()
    return ds.data.table


def load_source(src: "DataSource", *, num_proc: int | None = None) -> LoadedSource:
    """Load one source (all its rows, before validation and weighting)."""
    if src.id is not None:
        try:
            import datasets

            ds = datasets.load_dataset(src.id, src.config, split=src.split, revision=src.revision, num_proc=num_proc)
        except Exception as exc:  # noqa: BLE001 - anything the Hub or the builder raises
            raise _hub_error(src, exc) from None
        table = _dataset_table(ds)
        return LoadedSource(src, table, "hub", info={"fingerprint": getattr(ds, "_fingerprint", None)})
    return _load_local(src)


def _load_local(src: "DataSource") -> LoadedSource:
    raw = os.path.expanduser(src.path)
    where = f"source {src.path}"
    if any(ch in raw for ch in "*?["):
        files = [Path(p) for p in sorted(_glob.glob(raw, recursive=True)) if Path(p).is_file()]
        if not files:
            raise DataError(Problem(where=where, message="the glob matches no files", fix="check the pattern"))
        tables = [read_data_file(f) for f in files]
        return LoadedSource(src, _concat(tables, where), "glob", files, [t.num_rows for t in tables])
    path = Path(raw)
    if not path.exists():
        raise DataError(
            Problem(where=where, message="no such file or directory", fix="check the path (relative paths are from the current directory)")
        )
    if path.is_file():
        table = read_data_file(path)
        return LoadedSource(src, table, "file", [path], [table.num_rows])
    if _is_build_dir(path):
        manifest = read_manifest(path)
        splits = manifest.get("splits", {})
        if src.split not in splits:
            raise DataError(
                Problem(
                    where=where,
                    message=f"this mix build has no split {src.split!r} (it has: {', '.join(splits) or 'none'})",
                    fix="set 'split:' to one of those",
                )
            )
        import pyarrow.parquet as pq

        files = [path / f["file"] for f in splits[src.split]["files"]]
        keep = [c for c in splits[src.split]["columns"] if c not in manifest.get("derived_columns", [])]
        tables = [pq.read_table(str(f), columns=keep) for f in files]
        return LoadedSource(
            src, _concat(tables, where), "build", files, [t.num_rows for t in tables], info={"manifest_key": manifest.get("key")}
        )
    if (path / src.split / "state.json").is_file():
        path = path / src.split  # the old handbook's local layout: save_to_disk(DIR/split) per split
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        import datasets

        try:
            ds = datasets.load_from_disk(str(path))
        except Exception as exc:  # noqa: BLE001
            raise DataError(Problem(where=where, message=f"cannot load_from_disk: {exc}", fix="re-save the dataset")) from None
        if isinstance(ds, datasets.DatasetDict):
            if src.split not in ds:
                raise DataError(
                    Problem(
                        where=where,
                        message=f"this saved DatasetDict has no split {src.split!r} (it has: {', '.join(ds)})",
                        fix="set 'split:' to one of those",
                    )
                )
            ds = ds[src.split]
        arrow_files = sorted(
            {Path(c["filename"]) for c in getattr(ds, "cache_files", []) if c.get("filename")}
        )
        return LoadedSource(src, _dataset_table(ds), "save_to_disk", arrow_files, [], info={"fingerprint": ds._fingerprint})
    files, names = _split_files(path, src.split)
    if not files:
        raise DataError(
            Problem(
                where=where,
                message=f"no data files for split {src.split!r} in this directory"
                + (f" (splits found: {', '.join(sorted(names))})" if names else " (no data files found)"),
                fix="name files after their split (train.jsonl, test-00000.parquet, train/part.json) or give a glob",
            )
        )
    tables = [read_data_file(f) for f in files]
    return LoadedSource(src, _concat(tables, where), "dir", files, [t.num_rows for t in tables])


def source_files(src: "DataSource") -> tuple[str, list[Path]]:
    """(kind, files) a local source reads, found without reading them (for fingerprints)."""
    raw = os.path.expanduser(src.path)
    if any(ch in raw for ch in "*?["):
        return "glob", [Path(p) for p in sorted(_glob.glob(raw, recursive=True)) if Path(p).is_file()]
    path = Path(raw)
    if path.is_file():
        return "file", [path]
    if not path.is_dir():
        raise DataError(Problem(where=f"source {src.path}", message="no such file or directory", fix="check the path"))
    if _is_build_dir(path):
        splits = read_manifest(path).get("splits", {})
        if src.split in splits:
            return "build", [path / f["file"] for f in splits[src.split]["files"]]
        return "build", []
    if (path / src.split / "state.json").is_file():
        path = path / src.split
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return "save_to_disk", sorted(p for p in path.rglob("*") if p.is_file())
    return "dir", _split_files(path, src.split)[0]


def count_rows(src: "DataSource") -> int:
    """Rows in a source without materializing it where the format allows (parquet, jsonl, builds)."""
    if src.id is not None:
        try:
            import datasets

            builder = datasets.load_dataset_builder(src.id, src.config, revision=src.revision)
            split = (builder.info.splits or {}).get(src.split)
            if split is not None and split.num_examples:
                return int(split.num_examples)
        except Exception:  # noqa: BLE001 - fall back to loading, which reports errors properly
            pass
        return load_source(src).table.num_rows
    raw = os.path.expanduser(src.path)
    path = Path(raw)
    if path.is_dir() and _is_build_dir(path):
        splits = read_manifest(path).get("splits", {})
        if src.split in splits:
            return int(splits[src.split]["rows"])
    if path.is_file() or any(ch in raw for ch in "*?["):
        files = [Path(p) for p in sorted(_glob.glob(raw, recursive=True))] if not path.is_file() else [path]
        if files and all(_fmt(f) in (".parquet", ".jsonl", ".ndjson") for f in files):
            total = 0
            for f in files:
                if _fmt(f) == ".parquet":
                    import pyarrow.parquet as pq

                    total += pq.ParquetFile(str(f)).metadata.num_rows
                else:
                    import pyarrow as pa

                    with pa.input_stream(str(f), compression="detect") as fh:
                        total += sum(1 for line in fh.read().split(b"\n") if line.strip())
            return total
    return _load_local(src).table.num_rows


def _check_locations(data: "DataConfig") -> None:
    """The same data listed twice (e.g. ./a.jsonl and a.jsonl) is an error, like the same id twice."""
    seen: dict[tuple, int] = {}
    for i, s in enumerate(data.mixture):
        loc = s.id if s.id is not None else os.path.realpath(os.path.expanduser(s.path))
        # a plain file has one set of rows whatever split label it is given (a directory has one per split)
        split = None if s.id is None and os.path.isfile(loc) else s.split
        key = (loc, s.config, split)
        if key in seen:
            other = data.mixture[seen[key]]
            both = "train and test" if other.is_test != s.is_test else "twice"
            raise ConfigError(
                Problem(
                    where=f"data.mixture[{i}]",
                    message=f"source {s.name} split {s.split} is the same data as data.mixture[{seen[key]}] ({other.name}); it appears {both}",
                    fix="list each source once; evaluation data must not also be training data",
                )
            )
        seen[key] = i


# ----------------------------------------------------------------------------------------------
# the mixture


@dataclass
class MixResult:
    """A materialized mixture: pyarrow tables per split, where each row came from, and the report."""

    task: str
    tables: dict[str, Any]  # split -> pyarrow.Table
    indices: dict[str, SplitIndices]  # split -> (source position, ORIGINAL row index in the source)
    plan: MixPlan
    loaded: list[LoadedSource]
    validation: list[Any]  # SourceValidation per source

    def to_datasetdict(self):
        import datasets
        from datasets.table import InMemoryTable

        return datasets.DatasetDict(
            {name: datasets.Dataset(InMemoryTable(t), split=datasets.NamedSplit(name)) for name, t in self.tables.items()}
        )


def _select_columns(ls: LoadedSource):
    src = ls.source
    if src.keep_columns is not None and not src.columns:  # the old handbook's columns_to_keep
        return ls.table.select([c for c in ls.table.column_names if c in src.keep_columns])
    if not src.columns:
        return ls.table
    missing = [c for c in src.columns if c not in ls.table.column_names]
    if missing:
        raise DataError(
            Problem(
                where=f"source {ls.label}",
                message=f"'columns' names {', '.join(map(repr, missing))}, which it does not have (it has: {', '.join(ls.table.column_names)})",
                fix="list only existing columns",
            )
        )
    return ls.table.select(list(src.columns))


def _reconcile(data: "DataConfig", tables: list, task: str, split_of: Callable[[int], str]) -> None:
    """Sources in one split must have the same column set; name the fix when they do not."""
    from alignkit.data.validate import task_columns

    problems = []
    for split in ("train", "test"):
        members = [i for i in range(len(tables)) if split_of(i) == split]
        if len(members) < 2:
            continue
        sets = {i: set(tables[i].column_names) for i in members}
        if len({frozenset(s) for s in sets.values()}) == 1:
            continue
        common = set.intersection(*sets.values())
        order = [c for c in tables[members[0]].column_names if c in common]
        # task columns first in the suggestion
        order = [c for c in task_columns(task) if c in common] + [c for c in order if c not in task_columns(task)]
        for i in members:
            extra = sorted(sets[i] - common)
            if extra:
                src = data.mixture[i]
                problems.append(
                    Problem(
                        where=f"data.mixture[{i}] ({source_label(src)})",
                        message=f"has columns {extra} that other {split} sources lack",
                        fix=f"add 'columns: {json.dumps(order)}' to this source (the columns all {split} sources share)",
                    )
                )
    if problems:
        raise DataError(problems, title="sources have different columns")


def mix(data: "DataConfig", task: Task, *, console=None) -> MixResult:
    """Load, validate and mix ``data`` for ``task``; the library form of ``load_mixture``."""
    import numpy as np
    import pyarrow as pa

    from alignkit.data.validate import raise_for_problems, task_columns, validate_table

    if task not in ("sft", "dpo"):
        raise ConfigError(Problem(where="task", message=f"unknown task {task!r}", fix="use sft or dpo"))
    if not data.mixture:
        raise ConfigError(
            Problem(where="data.mixture", message="no data sources", fix="add at least one source (id: or path:)")
        )
    _check_locations(data)
    loaded: list[LoadedSource] = []
    with progress_for(console) as prog:
        bar = prog.task("loading", len(data.mixture))
        for src in data.mixture:
            loaded.append(load_source(src, num_proc=data.preprocessing_num_workers))
            bar.advance()
        tables = [_select_columns(ls) for ls in loaded]
        bar = prog.task("validating", sum(t.num_rows for t in tables))
        results = []
        for i, ls in enumerate(loaded):
            tables[i], res = validate_table(tables[i], task, ls.label, locate=ls.locate)
            results.append(res)
            bar.advance(tables[i].num_rows)
    raise_for_problems(results, skip_invalid=data.skip_invalid)

    # keep valid rows; remember their original indices
    valid_rows = []
    for i, res in enumerate(results):
        n = tables[i].num_rows
        if res.n_invalid:
            keep = np.ones(n, dtype=bool)
            keep[res.bad_rows] = False
            rows = np.nonzero(keep)[0].astype(np.int64)
            tables[i] = tables[i].take(pa.array(rows))
        else:
            rows = np.arange(n, dtype=np.int64)
        valid_rows.append(rows)

    # the task columns first, then the rest in each source's order
    cols = task_columns(task)
    for i, t in enumerate(tables):
        tables[i] = t.select([c for c in cols if c in t.column_names] + [c for c in t.column_names if c not in cols])
    carved = data.test_split_size is not None
    _reconcile(data, tables, task, lambda i: "test" if data.mixture[i].is_test else "train")

    counts = [t.num_rows for t in tables]
    idx = mixture_indices(data, counts)
    out_tables: dict[str, Any] = {}
    out_idx: dict[str, SplitIndices] = {}
    for split, si in idx.items():
        members = sorted(set(int(s) for s in np.unique(si.src)))
        if not members:
            out_tables[split] = _empty_like(tables, data, split, carved)
            out_idx[split] = si
            continue
        order = tables[members[0]].column_names
        parts = [tables[m].select(order) if tables[m].column_names != order else tables[m] for m in members]
        big = _concat(parts, f"the {split} split")
        offsets = np.zeros(len(data.mixture), dtype=np.int64)
        acc = 0
        for m in members:
            offsets[m] = acc
            acc += tables[m].num_rows
        global_idx = offsets[si.src] + si.row
        out_tables[split] = _take(big, global_idx, data.preprocessing_num_workers or 1)
        orig = np.empty(len(si), dtype=np.int64)
        for m in members:
            sel = si.src == m
            orig[sel] = valid_rows[m][si.row[sel]]
        out_idx[split] = SplitIndices(si.src, orig)
    available = [ls.table.num_rows for ls in loaded]
    invalid = [r.n_invalid for r in results]
    plan = _split_report(data, idx, available, invalid, [ls.kind for ls in loaded])
    plan.task = task
    return MixResult(task, out_tables, out_idx, plan, loaded, results)


def _take(table, idx, threads: int):
    """``table.take(idx)``, in ``threads`` threads over slices of ``idx`` for big tables (Arrow
    releases the GIL; random access into nested columns is the slow part of mixing)."""
    import pyarrow as pa

    if table.num_rows and max(c.num_chunks for c in table.columns) > 1:
        table = table.combine_chunks()  # one chunk: take does not search chunk boundaries
    if threads <= 1 or len(idx) < 20_000:
        return table.take(pa.array(idx))
    from concurrent.futures import ThreadPoolExecutor

    bounds = [len(idx) * k // threads for k in range(threads + 1)]
    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(lambda k: table.take(pa.array(idx[bounds[k] : bounds[k + 1]])), range(threads)))
    return pa.concat_tables(parts)


def _empty_like(tables, data, split, carved):
    for i, t in enumerate(tables):
        if (data.mixture[i].is_test and split == "test") or (not data.mixture[i].is_test and (split == "train" or carved)):
            return t.slice(0, 0)
    return tables[0].slice(0, 0)


def load_mixture(data: "DataConfig", task: Task, *, console=None):
    """The mixture as a ``datasets.DatasetDict`` with "train" and, when there is one, "test".

    Rows are validated (see alignkit.data.validate); DPO rows come out as conversational
    ``prompt``/``chosen``/``rejected`` message lists whatever form the source used.
    """
    return mix(data, task, console=console).to_datasetdict()


def plan_mixture(data: "DataConfig", task: Task, *, console=None) -> MixPlan:
    """Per-source row counts of the mixture without materializing it (rows are not validated, so
    with skip_invalid the real counts can be lower)."""
    if not data.mixture:
        raise ConfigError(
            Problem(where="data.mixture", message="no data sources", fix="add at least one source (id: or path:)")
        )
    _check_locations(data)
    counts, kinds = [], []
    with progress_for(console) as prog:
        bar = prog.task("counting rows", len(data.mixture))
        for src in data.mixture:
            counts.append(count_rows(src))
            kinds.append("hub" if src.id else "local")
            bar.advance()
    idx = mixture_indices(data, counts)
    plan = _split_report(data, idx, counts, [0] * len(counts), kinds)
    plan.task = task
    return plan
