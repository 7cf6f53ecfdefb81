"""Reading one source of a mixture into a pyarrow Table: a Hub id (``datasets.load_dataset``), a local
json/jsonl/parquet/csv/tsv/arrow file (optionally .gz/.bz2/.zst/.lz4), a glob, a directory of such files
named by split, a ``save_to_disk`` directory (the old handbook's ``DIR/<split>/`` too) or an ``alignkit mix
build`` output. Local files are read with pyarrow (multi-threaded, no cache copies). Unreadable rows are
reported with their file and 1-based line; row counting without loading is here too.
"""

from __future__ import annotations

import glob as _glob
import io
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignkit.errors import DataError, Problem

if TYPE_CHECKING:  # pragma: no cover
    from alignkit.config.data import DataSource

DATA_EXTENSIONS = (".jsonl", ".ndjson", ".json", ".parquet", ".csv", ".tsv", ".arrow")
COMPRESSIONS = (".gz", ".bz2", ".zst", ".lz4")
MANIFEST = "manifest.json"
BUILD_MARKER = "alignkit_mix"
JSON_BLOCK_SIZE = 16 << 20
SAVE_TO_DISK_FILES = ("state.json", "dataset_info.json", "dataset_dict.json")


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

    rows, lines = [], []
    with pa.input_stream(str(path), compression="detect") as fh:
        for lineno, line in enumerate(fh.read().decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
                lines.append(lineno)
            except ValueError as exc:
                raise DataError(
                    Problem(where=f"{path}:{lineno}", message=f"invalid JSON: {exc}", fix="fix or remove that line")
                ) from None
    return _from_records(rows, path, lines)


def _from_records(rows: list, path: Path, lines: list[int] | None = None):
    import pyarrow as pa

    if rows and not all(isinstance(r, dict) for r in rows):
        raise DataError(Problem(where=str(path), message="rows must be JSON objects", fix="write one object per row"))
    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(
            Problem(
                where=str(path),
                message=f"rows have inconsistent types: {_type_clash(rows, lines) or exc}",
                fix="give every row the same fields with the same types",
            )
        ) from None


def _type_clash(rows: list[dict], lines: list[int] | None) -> str | None:
    """The first row whose field holds another kind of JSON value than the rows before it (a number in a text
    column), named with its column, or None when the clash is deeper (inside lists or objects)."""
    kinds = {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "object"}
    first: dict[str, tuple[str, int]] = {}
    for i, row in enumerate(rows):
        for key, value in row.items():
            if value is None:
                continue
            kind = kinds.get(type(value), type(value).__name__)
            seen = first.setdefault(key, (kind, i))
            if seen[0] != kind:
                at = f"row {i}" + (f" (line {lines[i]})" if lines else "")
                return f"{at} has a {kind} in column '{key}', where row {seen[1]} has a {seen[0]}"
    return None


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


def is_build_dir(path: Path) -> bool:
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


_NETWORK_WORDS = ("Name or service not known", "Temporary failure in name resolution", "Failed to resolve",
                  "Network is unreachable", "Connection refused", "Max retries exceeded", "timed out",
                  "nodename nor servname")


_SCRIPT_GONE = "Dataset scripts are no longer supported, but found "


def _hub_error(src, exc: Exception) -> DataError:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    from alignkit.data.checks import hub_offline, network_problem

    if _SCRIPT_GONE in msg:  # e.g. yhavinga/mc4_nl_cleaned (gpt2-nl's CPT recipe): its configs are a script's
        script = msg.split(_SCRIPT_GONE, 1)[1].strip()
        return DataError(Problem(
            where=f"source {src.id}",
            message=f"the dataset is built by a loading script ({script}), which datasets 4 and later no longer run",
            fix="read the Hub's parquet export of it instead: `revision: refs/convert/parquet` on this source in "
                "data.mixture (where the Hub made one; its config names may differ), or download its data files "
                "and give them as 'path:'"))
    text = f"{type(exc).__name__} {exc}"
    if not hub_offline() and ("Connect" in type(exc).__name__ or any(w in text for w in _NETWORK_WORDS)):
        reason = next((w for w in _NETWORK_WORDS if w in text), type(exc).__name__)
        return DataError(network_problem(reason, where=f"source {src.id}"))
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


def dir_layout(path: Path, split: str) -> tuple[str, Path]:
    """What a local source directory holds, and where to read ``split`` from: ``("build", path)`` (a mix
    build), ``("save_to_disk", dir)`` (a saved Dataset or DatasetDict; ``path/split`` in the old handbook's
    layout, save_to_disk(DIR/split) per split), or ``("dir", path)`` (data files named after their split)."""
    if is_build_dir(path):
        return "build", path
    if (path / split / "state.json").is_file():
        path = path / split
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return "save_to_disk", path
    return "dir", path


def _no_split(where: str, what: str, split: str, have: list[str]) -> DataError:
    return DataError(Problem(where=where, message=f"this {what} has no split {split!r} (it has: {', '.join(have) or 'none'})",
                             fix="set 'split:' to one of those"))


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
    kind, path = dir_layout(path, src.split)
    if kind == "build":
        manifest = read_manifest(path)
        splits = manifest.get("splits", {})
        if src.split not in splits:
            raise _no_split(where, "mix build", src.split, list(splits))
        import pyarrow.parquet as pq

        files = [path / f["file"] for f in splits[src.split]["files"]]
        keep = [c for c in splits[src.split]["columns"] if c not in manifest.get("derived_columns", [])]
        tables = [pq.read_table(str(f), columns=keep) for f in files]
        return LoadedSource(
            src, _concat(tables, where), "build", files, [t.num_rows for t in tables], info={"manifest_key": manifest.get("key")}
        )
    if kind == "save_to_disk":
        import datasets

        try:
            ds = datasets.load_from_disk(str(path))
        except Exception as exc:  # noqa: BLE001
            raise DataError(Problem(where=where, message=f"cannot load_from_disk: {exc}", fix="re-save the dataset")) from None
        if isinstance(ds, datasets.DatasetDict):
            if src.split not in ds:
                raise _no_split(where, "saved DatasetDict", src.split, list(ds))
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
    kind, path = dir_layout(path, src.split)
    if kind == "build":
        splits = read_manifest(path).get("splits", {})
        if src.split in splits:
            return "build", [path / f["file"] for f in splits[src.split]["files"]]
        return "build", []
    if kind == "save_to_disk":
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
    if path.is_dir() and is_build_dir(path):
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

