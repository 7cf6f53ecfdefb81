"""The resume store: ``JsonlLog`` keeps requests' results as JSON lines (``alignkit.client.JsonlLog``).

Each record is appended as one JSON line, flushed and fsynced as it arrives, so an interrupted
evaluation or AI-feedback run re-run skips everything already paid for.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable

from alignkit.errors import DataError, Problem
from alignkit.fsutil import append_jsonl

@dataclass
class JsonlLog:
    """Records appended one JSON line at a time (flush + fsync per line), indexed by ``key``.

    Loading tolerates a last line cut off by an interruption (it is dropped and the file repaired);
    any other unreadable line is a ``DataError`` naming the file and line.
    """

    path: Path
    key: Callable[[dict], Hashable]
    records: dict[Hashable, dict] = field(default_factory=dict)
    repaired: bool = False

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        if not raw:
            return
        lines = raw.split(b"\n")
        complete = raw.endswith(b"\n")
        body = lines[:-1]  # last element: b"" when complete, else the cut-off tail
        tail = lines[-1]
        for i, line in enumerate(body, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                raise DataError(
                    Problem(
                        where=f"{self.path}:{i}",
                        message="not a JSON line",
                        fix="delete that line (it will be redone) or the whole file to start over",
                    )
                ) from None
            self._index(rec, f"{self.path}:{i}")
        if not complete:
            try:
                rec = json.loads(tail)
            except ValueError:
                rec = None
            if rec is not None:
                self._index(rec, f"{self.path}:{len(lines)}")
                with open(self.path, "ab") as f:
                    f.write(b"\n")
            else:  # an interrupted write: cut it off so the next append starts on a clean line
                with open(self.path, "r+b") as f:
                    f.truncate(len(raw) - len(tail))
            self.repaired = True

    def _index(self, rec: Any, where: str) -> None:
        if not isinstance(rec, dict):
            raise DataError(Problem(where=where, message="expected a JSON object per line"))
        try:
            self.records[self.key(rec)] = rec
        except (KeyError, TypeError) as e:
            raise DataError(
                Problem(where=where, message=f"record lacks {e}", fix="delete the file to start over")
            ) from None

    def __contains__(self, k: Hashable) -> bool:
        return k in self.records

    def __len__(self) -> int:
        return len(self.records)

    def get(self, k: Hashable) -> dict | None:
        return self.records.get(k)

    def values(self) -> list[dict]:
        return list(self.records.values())

    def append(self, rec: dict) -> None:
        with self._lock:
            append_jsonl(self.path, rec)  # one line, flushed and fsynced
            self.records[self.key(rec)] = rec
