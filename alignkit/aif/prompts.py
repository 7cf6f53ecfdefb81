"""Prompts to complete: a JSONL/JSON/Parquet/CSV file, a directory of such files, a ``save_to_disk``
directory, or a Hub dataset id — anything the mixer reads — with a string column (``prompt``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.aif.manifest import prompt_id, sha256_text
from alignkit.errors import DataError, Problem

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class Prompt:
    id: str  # sha256 of the text
    text: str

    def conversation(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.text}]


def load_prompts(
    spec: str,
    *,
    split: str = "train",
    column: str = "prompt",
    limit: int | None = None,
    option: str = "--prompts",
) -> tuple[list[Prompt], dict[str, Any]]:
    """The distinct prompts of ``spec`` (first occurrence kept, in order) and a description of them."""
    from alignkit.config.data import DataSource
    from alignkit.data.sources import load_source

    spec = str(spec)
    if Path(spec).expanduser().exists() or any(ch in spec for ch in "*?["):
        src = DataSource(path=spec, split=split)
    elif HUB_ID.match(spec):
        src = DataSource(id=spec, split=split)
    else:
        raise DataError(
            Problem(where=f"{option} {spec}", message="no such file or directory", fix="give a JSONL file with a 'prompt' field, a dataset directory, or a Hub dataset id")
        )
    table = load_source(src).table
    if column not in table.column_names:
        raise DataError(
            Problem(
                where=f"{option} {spec}",
                message=f"has no column {column!r} (it has: {', '.join(table.column_names) or 'none'})",
                fix="name the prompt column with --prompt-column",
            )
        )
    values = table.column(column).to_pylist()
    problems: list[Problem] = []
    prompts: list[Prompt] = []
    seen: set[str] = set()
    duplicates = 0
    for i, v in enumerate(values):
        if not isinstance(v, str):
            problems.append(Problem(where=f"{spec} row {i}", message=f"{column} is a {type(v).__name__}, not a string"))
            continue
        if not v.strip():
            problems.append(Problem(where=f"{spec} row {i}", message=f"{column} is empty"))
            continue
        pid = prompt_id(v)
        if pid in seen:
            duplicates += 1
            continue
        seen.add(pid)
        prompts.append(Prompt(pid, v))
    if problems:
        shown = problems[:20]
        if len(problems) > 20:
            shown.append(Problem(where=spec, message=f"... and {len(problems) - 20} more rows like these"))
        raise DataError(shown, title="invalid prompts")
    if not prompts:
        raise DataError(Problem(where=f"{option} {spec}", message="no prompts", fix="give at least one row"))
    if limit is not None:
        prompts = prompts[:limit]
    info = {
        "source": spec,
        "split": split if src.id is not None or Path(spec).is_dir() else None,
        "column": column,
        "rows": len(values),
        "duplicates": duplicates,
        "prompts": len(prompts),
        "limit": limit,
        "sha256": sha256_text("\n".join(p.id for p in prompts)),
    }
    return prompts, info
