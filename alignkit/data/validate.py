"""Row validation for SFT, DPO (and ORPO: the same pairs) and CPT data, before anything is trained.

CPT rows need a string in their text column (``data.text_column``, default ``text``), which the build holds as
``text``.

SFT rows need ``messages``: a list of ``{role, content}`` with roles system/user/assistant, a system
turn only at the start, at least one user turn, and an assistant turn at the end.

DPO rows are normalized to one conversational form, ``prompt`` / ``chosen`` / ``rejected`` as message
lists (the prompt ends with a user turn, chosen and rejected are the assistant continuations). The
accepted inputs are:

* ``chosen`` and ``rejected`` as full conversations sharing the prompt (ultrafeedback_binarized);
  a ``prompt`` column, if present, must then be a prefix of both or it is taken as the prompt of
  completion-only lists (TRL's conversational form);
* ``prompt`` (a string or a message list) plus ``chosen`` and ``rejected`` as strings.

Problems name the source, the row index (0-based, in the source as loaded) and what is wrong. All
rows are checked; the error lists the first ones and counts the rest. With ``skip_invalid`` the bad
rows are dropped and counted per source.

Only pyarrow/numpy are used here (imported inside functions): no ``datasets`` or ``transformers``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from alignkit.data.messages import ROLES, _strip, check_sft_messages, normalize_preference
from alignkit.errors import DataError, Problem

SFT_COLUMNS = ("messages",)
DPO_COLUMNS = ("prompt", "chosen", "rejected")
CPT_COLUMNS = ("text",)
SKIP_FIX = "fix the rows, or set data.skip_invalid: true (--skip-invalid) to drop invalid rows and count them"
PROBLEM_CAP = 20


def task_columns(task: str) -> tuple[str, ...]:
    from alignkit.config.tasks import data_format

    task = data_format(task)
    if task == "sft":
        return SFT_COLUMNS
    if task == "dpo":
        return DPO_COLUMNS
    if task == "cpt":
        return CPT_COLUMNS
    raise ValueError(f"unknown task {task!r}")


def message_type():
    import pyarrow as pa

    return pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


@dataclass
class RowProblem:
    row: int
    message: str


@dataclass
class SourceValidation:
    """What validation found in one source."""

    source: str  # display name, e.g. "data/chat.jsonl (train)"
    rows: int
    bad_rows: Any = None  # numpy int64 array of invalid row indices (all of them)
    problems: list[RowProblem] = field(default_factory=list)  # the first PROBLEM_CAP, with messages
    source_problems: list[Problem] = field(default_factory=list)  # the whole source is unusable
    locate: Any = None  # callable row -> " (file x.jsonl row 3)" suffix, or None

    @property
    def n_invalid(self) -> int:
        return 0 if self.bad_rows is None else int(len(self.bad_rows))

    @property
    def n_valid(self) -> int:
        return self.rows - self.n_invalid


# ----------------------------------------------------------------------------------------------
# single-row checks (the reference: the vectorized SFT check must agree with these)


def _is_message_list_type(t) -> bool:
    import pyarrow as pa

    if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
        return False
    item = t.value_type
    if not pa.types.is_struct(item):
        return False
    names = {item.field(i).name: item.field(i).type for i in range(item.num_fields)}
    ok = (pa.string(), pa.large_string())
    return "role" in names and "content" in names and names["role"] in ok and names["content"] in ok


def _bad_sft_rows_vectorized(chunk) -> "Any":
    """Indices (within the chunk) of rows with a problem; agrees with check_sft_messages."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(chunk)
    bad = np.zeros(n, dtype=bool)
    if n == 0:
        return np.nonzero(bad)[0]
    valid_rows = chunk.is_valid().to_numpy(zero_copy_only=False)
    bad |= ~valid_rows
    lengths = pc.fill_null(pc.list_value_length(chunk), 0).to_numpy(zero_copy_only=False)
    bad |= lengths == 0
    flat = pc.list_flatten(chunk)
    if len(flat) == 0:
        return np.nonzero(bad)[0]
    parent = pc.list_parent_indices(chunk).to_numpy(zero_copy_only=False)
    struct_valid = flat.is_valid().to_numpy(zero_copy_only=False)
    role = pc.struct_field(flat, "role")
    content = pc.struct_field(flat, "content")
    role_ok = pc.fill_null(pc.is_in(role, value_set=pa.array(ROLES)), False).to_numpy(zero_copy_only=False)
    content_ok = content.is_valid().to_numpy(zero_copy_only=False)
    # position of each message in its list
    starts = np.zeros(n, dtype=np.int64)
    starts[1:] = np.cumsum(lengths)[:-1]
    pos = np.arange(len(flat)) - starts[parent]
    def _eq(value):
        return pc.fill_null(pc.equal(role, value), False).to_numpy(zero_copy_only=False)

    is_system, is_user, is_assistant = _eq("system"), _eq("user"), _eq("assistant")
    elem_bad = ~struct_valid | ~role_ok | ~content_ok | (is_system & (pos > 0))
    bad[parent[elem_bad]] = True
    has_user = np.zeros(n, dtype=bool)
    has_user[parent[is_user]] = True
    bad |= ~has_user & (lengths > 0)
    nonempty = lengths > 0
    last_idx = starts[nonempty] + lengths[nonempty] - 1
    last_bad = np.zeros(n, dtype=bool)
    last_bad[np.nonzero(nonempty)[0]] = ~is_assistant[last_idx]
    bad |= last_bad
    return np.nonzero(bad)[0]


def _parse_json_messages(values: list) -> list:
    out = []
    for v in values:
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except ValueError:
                pass  # left as a string: the row check reports it
        out.append(v)
    return out


def _empty(table, source: str, result: SourceValidation) -> bool:
    """An empty file (no rows, hence no columns) is reported as empty, not as a missing column."""
    if table.num_rows or table.column_names:
        return False
    result.source_problems.append(
        Problem(where=f"source {source}", message="is empty: no rows",
                fix="give a file with rows (JSONL: one JSON object per line), or remove the source")
    )
    return True


def validate_sft(table, source: str, *, locate=None) -> tuple[Any, SourceValidation]:
    """Check ``messages`` in every row. Returns the (possibly normalized) table and the findings."""
    import numpy as np
    import pyarrow as pa

    result = SourceValidation(source=source, rows=table.num_rows, locate=locate)
    if _empty(table, source, result):
        return table, result
    if "messages" not in table.column_names:
        result.source_problems.append(
            Problem(
                where=f"source {source}",
                message=f"has no 'messages' column (columns: {', '.join(table.column_names) or 'none'})",
                fix="SFT needs a 'messages' list of {role, content}; rename the column, or pick it with "
                "'columns:' if it has another name in a save_to_disk dataset",
            )
        )
        return table, result
    col = table.column("messages")
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or not _is_message_list_type(col.type):
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_null(col.type)):
            if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
                # e.g. content given as a list of blocks: not supported for text chat templates
                result.source_problems.append(
                    Problem(
                        where=f"source {source}",
                        message=f"column 'messages' has type {col.type}; expected a list of {{role: string, content: string}}",
                        fix="convert message contents to plain strings",
                    )
                )
                return table, result
        # JSON-encoded messages (e.g. from CSV): parse them, then check row by row
        values = _parse_json_messages(col.to_pylist())
        bad, problems = [], []
        for i, v in enumerate(values):
            problem = check_sft_messages(v)
            if problem:
                bad.append(i)
                if len(problems) < PROBLEM_CAP:
                    problems.append(RowProblem(i, problem))
        result.bad_rows = np.asarray(bad, dtype=np.int64)
        result.problems = problems
        bad_set = set(bad)
        arr = pa.array([None if i in bad_set else _strip(v) for i, v in enumerate(values)], type=message_type())
        table = table.set_column(table.column_names.index("messages"), "messages", arr)
        return table, result
    bad_parts, offset = [], 0
    for chunk in col.chunks:
        bad_parts.append(_bad_sft_rows_vectorized(chunk) + offset)
        offset += len(chunk)
    bad = np.concatenate(bad_parts) if bad_parts else np.zeros(0, dtype=np.int64)
    result.bad_rows = bad.astype(np.int64)
    if len(bad):
        first = bad[:PROBLEM_CAP]
        rows = table.select(["messages"]).take(pa.array(first)).column("messages").to_pylist()
        for i, v in zip(first.tolist(), rows):
            result.problems.append(RowProblem(i, check_sft_messages(v) or "invalid row"))
    return table, result


def validate_dpo(table, source: str, *, locate=None) -> tuple[Any, SourceValidation]:
    """Check and normalize preference rows to prompt/chosen/rejected message lists."""
    import numpy as np
    import pyarrow as pa

    result = SourceValidation(source=source, rows=table.num_rows, locate=locate)
    if _empty(table, source, result):
        return table, result
    missing = [c for c in ("chosen", "rejected") if c not in table.column_names]
    if missing:
        result.source_problems.append(
            Problem(
                where=f"source {source}",
                message=f"has no {' or '.join(repr(m) for m in missing)} column (columns: {', '.join(table.column_names) or 'none'})",
                fix="DPO needs 'chosen' and 'rejected' (message lists sharing the prompt) or "
                "'prompt' + 'chosen' + 'rejected'",
            )
        )
        return table, result
    cols = {c: table.column(c).to_pylist() for c in DPO_COLUMNS if c in table.column_names}
    n = table.num_rows
    prompts, chosens, rejecteds, bad, problems = [], [], [], [], []
    has_prompt = "prompt" in cols
    for i in range(n):
        row = {"chosen": cols["chosen"][i], "rejected": cols["rejected"][i]}
        if has_prompt:
            row["prompt"] = cols["prompt"][i]
        norm, problem = normalize_preference(row)
        if problem:
            bad.append(i)
            if len(problems) < PROBLEM_CAP:
                problems.append(RowProblem(i, problem))
            prompts.append(None)
            chosens.append(None)
            rejecteds.append(None)
        else:
            prompts.append(norm[0])
            chosens.append(norm[1])
            rejecteds.append(norm[2])
    result.bad_rows = np.asarray(bad, dtype=np.int64)
    result.problems = problems
    mt = message_type()
    for name, values in (("prompt", prompts), ("chosen", chosens), ("rejected", rejecteds)):
        arr = pa.array(values, type=mt)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, arr)
        else:
            table = table.append_column(name, arr)
    return table, result


def validate_text(table, source: str, column: str | None = None, *, locate=None):
    """CPT rows: a non-empty string in ``column`` (default text), returned as the ``text`` column."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from alignkit.config.tasks import DEFAULT_TEXT_COLUMN

    column = column or DEFAULT_TEXT_COLUMN
    result = SourceValidation(source=source, rows=table.num_rows, locate=locate)
    if column not in table.column_names:
        result.source_problems.append(Problem(
            where=f"source {source}", message=f"has no '{column}' column (it has: {', '.join(table.column_names)})",
            fix="set data.text_column (the handbook's text_column) to the column holding the text"))
        return table, result
    col = table.column(column)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        result.source_problems.append(Problem(
            where=f"source {source} column '{column}'", message=f"holds {col.type}, not text",
            fix="point data.text_column at a column of strings (conversations train with `alignkit sft`)"))
        return table, result
    empty = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(col)), 0), True)
    bad = np.nonzero(empty.to_numpy(zero_copy_only=False))[0].astype(np.int64)
    result.bad_rows = bad
    nulls = col.is_null().to_numpy(zero_copy_only=False)
    result.problems = [RowProblem(int(i), f"{column} is {'missing (null)' if nulls[i] else 'empty'}")
                       for i in bad[:PROBLEM_CAP]]
    if column != "text":
        if "text" in table.column_names:
            table = table.drop_columns(["text"])
        table = table.rename_columns(["text" if c == column else c for c in table.column_names])
    return table, result


def validate_table(table, task: str, source: str, *, locate=None, text_column: str | None = None):
    from alignkit.config.tasks import data_format

    task = data_format(task)
    if task == "sft":
        return validate_sft(table, source, locate=locate)
    if task == "dpo":
        return validate_dpo(table, source, locate=locate)
    if task == "cpt":
        return validate_text(table, source, text_column, locate=locate)
    raise ValueError(f"unknown task {task!r}")


def raise_for_problems(results: Iterable[SourceValidation], *, skip_invalid: bool, cap: int = PROBLEM_CAP) -> None:
    """Raise one DataError listing every unusable source and the first ``cap`` invalid rows."""
    results = list(results)
    problems: list[Problem] = []
    for r in results:
        problems.extend(r.source_problems)
    if problems:
        raise DataError(problems, title="invalid data sources")
    if skip_invalid:
        return
    total = sum(r.n_invalid for r in results)
    if not total:
        return
    shown = 0
    for r in results:
        for p in r.problems:
            if shown >= cap:
                break
            suffix = r.locate(p.row) if r.locate else ""
            problems.append(Problem(where=f"source {r.source} row {p.row}{suffix}", message=p.message, fix=SKIP_FIX))
            shown += 1
    if total > shown:
        per = ", ".join(f"{r.source}: {r.n_invalid}" for r in results if r.n_invalid)
        problems.append(
            Problem(
                where="data.mixture",
                message=f"and {total - shown} more invalid rows ({total} in all; per source: {per})",
                fix=SKIP_FIX,
            )
        )
    raise DataError(problems, title=f"{total} invalid row{'s' if total != 1 else ''}")
