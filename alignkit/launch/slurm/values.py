"""Values that go into an sbatch script: one-line checks, ``#SBATCH`` quoting, Slurm time limits and the
preemption signal's lead. Each refusal is a UsageError naming the option (exit 2).

Standard library only: imported by the CLI.
"""

from __future__ import annotations

import re
from typing import Any

from alignkit.errors import Problem, UsageError

DEFAULT_SIGNAL_LEAD = 300  # seconds before the time limit that USR1 arrives (checkpoint time)
MIN_SIGNAL_LEAD = 30
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_SBATCH_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def check_line(where: str, value: str) -> str:
    """A value that goes into one #SBATCH line (or one shell word): no newline or other control char."""
    if not isinstance(value, str):
        value = str(value)
    if _CONTROL.search(value):
        bad = "a newline" if ("\n" in value or "\r" in value) else "a control character"
        raise UsageError(Problem(where, f"contains {bad}: {value!r}",
                                 "remove it: a value must fit on one line of the batch script"))
    return value


def sbatch_quote(value: str) -> str:
    """Quote one word for an ``#SBATCH`` line as sbatch parses it (quotes group, backslash escapes,
    an unquoted ``#`` starts a comment). Never evaluated by a shell."""
    if _SBATCH_SAFE.match(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sbatch_directive(flag: str, value: Any = None, *, where: str) -> str:
    """One ``#SBATCH --flag=value`` line (``#SBATCH --flag`` without a value)."""
    if value is None:
        return f"#SBATCH {flag}"
    value = check_line(where, str(value))
    return f"#SBATCH {flag}={sbatch_quote(value)}"


def slurm_path(where: str, path: str) -> str:
    """A path for --output: absolute, on one line, with '%' kept literal (Slurm expands %j etc.)."""
    path = check_line(where, path)
    if "\\" in path:
        raise UsageError(Problem(where, f"contains a backslash: {path!r}",
                                 "Slurm treats a backslash in an output path specially; choose a path without one"))
    return path.replace("%", "%%")


_TIME_FORMS = (
    (re.compile(r"^(\d+)$"), lambda m: int(m[1]) * 60),
    (re.compile(r"^(\d+):(\d+)$"), lambda m: int(m[1]) * 60 + int(m[2])),
    (re.compile(r"^(\d+):(\d+):(\d+)$"), lambda m: int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])),
    (re.compile(r"^(\d+)-(\d+)$"), lambda m: int(m[1]) * 86400 + int(m[2]) * 3600),
    (re.compile(r"^(\d+)-(\d+):(\d+)$"), lambda m: int(m[1]) * 86400 + int(m[2]) * 3600 + int(m[3]) * 60),
    (re.compile(r"^(\d+)-(\d+):(\d+):(\d+)$"),
     lambda m: int(m[1]) * 86400 + int(m[2]) * 3600 + int(m[3]) * 60 + int(m[4])),
)


def parse_time_limit(value: str) -> int | None:
    """Seconds in a Slurm time limit ("90", "1:30:00", "2-00:00:00"...); None for no limit.
    Raises UsageError naming --time for anything Slurm would not take."""
    v = check_line("--time", value).strip()
    if v.upper() in ("INFINITE", "UNLIMITED"):
        return None
    for pattern, seconds in _TIME_FORMS:
        m = pattern.match(v)
        if m:
            s = seconds(m)
            if s <= 0:
                break
            return s
    raise UsageError(Problem("--time", f"not a Slurm time limit: {value!r}",
                             "use minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (e.g. 2:00:00)"))


def signal_lead_for(time_limit: int | None, lead: int | None = None) -> int:
    """Seconds before the time limit at which USR1 asks the trainer to checkpoint."""
    if lead is not None:
        if lead < 1 or lead > 65535:
            raise UsageError(Problem("--signal-lead", f"{lead} is out of range", "use 1..65535 seconds"))
        return lead
    if time_limit is None:
        return DEFAULT_SIGNAL_LEAD
    # short jobs: signal at a quarter of the limit before its end, never closer than MIN_SIGNAL_LEAD
    return max(min(DEFAULT_SIGNAL_LEAD, time_limit // 4), min(MIN_SIGNAL_LEAD, max(time_limit // 2, 1)))
