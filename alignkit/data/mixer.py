"""The dataset mixer: combine the sources of ``data.mixture`` into train (and test) splits.

``mix`` loads every source (alignkit.data.sources), validates its rows (alignkit.data.validate), picks the
rows the weights ask for (alignkit.data.sampling, which documents the arithmetic; docs/data.md has the long
form) and materializes the splits as pyarrow tables; ``load_mixture`` returns them as a
``datasets.DatasetDict``; ``plan_mixture`` only counts. Test sources (split name containing ``test`` or
``test: true``) are taken whole and never reach train.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

from alignkit.data.progress import progress_for
from alignkit.data.sampling import SplitIndices, mixture_indices, rows_for_weight
from alignkit.data.sources import LoadedSource, _concat, count_rows, load_source, source_label
from alignkit.errors import ConfigError, DataError, Problem

if TYPE_CHECKING:  # pragma: no cover
    from alignkit.config.data import DataConfig

Task = Literal["sft", "dpo", "orpo", "cpt"]


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
    """Sources in one split must have the same column set; name the fix when they do not. Sources translated
    from the handbook's dataset_mixer (``keep_columns``) are concatenated as its scripts did: a column some
    sources lack is filled with nulls there (datasets' concatenate_datasets), so they mix as they did."""
    from alignkit.data.validate import task_columns

    problems = []
    for split in ("train", "test"):
        members = [i for i in range(len(tables)) if split_of(i) == split]
        if len(members) < 2:
            continue
        sets = {i: set(tables[i].column_names) for i in members}
        if len({frozenset(s) for s in sets.values()}) == 1:
            continue
        if all(data.mixture[i].keep_columns is not None and not data.mixture[i].columns for i in members):
            _pad_to_union(tables, members)
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


def _pad_to_union(tables: list, members: list[int]) -> None:
    """Every table of ``members`` with the columns of all of them, in first-seen order; a column a table lacks
    is nulls of the type the first table having it gives."""
    import pyarrow as pa

    fields: dict[str, Any] = {}
    for i in members:
        for f in tables[i].schema:
            fields.setdefault(f.name, f.type)
    for i in members:
        t = tables[i]
        tables[i] = pa.table({name: t.column(name) if name in t.column_names else pa.nulls(t.num_rows, type=typ)
                              for name, typ in fields.items()})


def mix(data: "DataConfig", task: Task, *, console=None) -> MixResult:
    """Load, validate and mix ``data`` for ``task``; the library form of ``load_mixture``."""
    import numpy as np
    import pyarrow as pa

    from alignkit.config.tasks import TASKS, data_format
    from alignkit.data.validate import raise_for_problems, task_columns, validate_table

    if task not in TASKS:
        raise ConfigError(Problem(where="task", message=f"unknown task {task!r}", fix=f"use one of {', '.join(TASKS)}"))
    task = data_format(task)  # orpo trains on DPO's pairs
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
            tables[i], res = validate_table(tables[i], task, ls.label, locate=ls.locate, text_column=data.text_column)
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

    # the task columns first, then the rest in each source's order (CPT: only the text, as the handbook's
    # run_cpt.py kept only its text_column: nothing else trains)
    cols = task_columns(task)
    for i, t in enumerate(tables):
        rest = [] if task == "cpt" else [c for c in t.column_names if c not in cols]
        tables[i] = t.select([c for c in cols if c in t.column_names] + rest)
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
