"""The mixture's arithmetic: which rows of which source go to which split, as pure functions of row counts.

alignkit's one meaning of a weight (docs/data.md, "How this differs from the handbook", compares it with the
three the handbook and TRL have had: the old handbook's first ``int(f * n)`` rows with seed 42, the new
handbook's ``f * n`` rows after a seeded shuffle with test splits folded into train, TRL's normalized shares
capped against oversampling; handbook configs are translated into this form by alignkit.config.deprecations):

* A train source with ``n`` valid rows contributes ``floor(weight * n)`` rows, the product computed in
  decimal on the weight as written (``0.29 * 100 = 29``, not 28 as float arithmetic gives). Rows are
  taken from a permutation seeded by ``mix_seed`` and the source's identity: ``weight <= 1`` takes the
  first rows of it; ``weight > 1`` takes every row ``floor(weight)`` times plus the first rows of the
  same permutation for the fraction (so weight 1.5 = all rows + the half that weight 0.5 takes).
* Train sources are concatenated (in mixture order) and shuffled with ``mix_seed``.
* Test sources are taken whole, in order, and never reach train.
* ``test_split_size`` (only without test sources) carves an eval split out of the mixed train: a
  fraction ``f`` takes ``ceil(f * U)`` of the ``U`` distinct rows of the mixture, a count takes that
  many; every copy of a carved row leaves train, so no eval row is trained on.

Shared by ``plan_mixture`` (counts only) and ``mix`` (the rows); numpy is imported inside the functions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any

from alignkit.errors import ConfigError, Problem

if TYPE_CHECKING:  # pragma: no cover
    from alignkit.config.data import DataConfig, DataSource


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
