"""Errors a user can act on, and the exit codes they map to.

Every error that reaches the CLI is an ``AlignkitError``. It carries one or more ``Problem``s,
each naming *where* (a config key, a file and line, a dataset row, an endpoint) and *the fix*.
The CLI prints them all at once and exits with the error's code, without a traceback unless
``ALIGNKIT_DEBUG=1``.

Exit codes:
  0  success
  1  runtime failure the user cannot fix in their config (a crashed child, a refused job)
  2  usage, config or data error: fix the input and run again
  3  `alignkit plan`: the run does not fit in GPU memory (the output says what would)
  75 stopped by SIGTERM/SIGUSR1 (e.g. Slurm preemption) after saving a checkpoint: re-run to resume
  130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: try again
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input."""

    where: str  # "train.learning_rate", "my.yaml:12", "source ultrachat row 17", "http://..."
    message: str  # what is wrong
    fix: str | None = None  # what to do about it
    source: str | None = None  # which layer said it: "recipe zephyr-7b-beta/sft/full.yaml:14"

    def render(self) -> str:
        # a blank or control-character key (a stray "--\r=1") is shown quoted, never as nothing
        where = self.where if self.where.strip() and self.where.isprintable() else repr(self.where)
        text = f"{where}: {self.message}"
        if self.source:
            text += f" (from {self.source})"
        if self.fix:
            text += f"\n    fix: {self.fix}"
        return text


@dataclass
class AlignkitError(Exception):
    """Base error. ``problems`` are all reported together."""

    problems: list[Problem] = field(default_factory=list)
    title: str = "alignkit failed"
    exit_code: int = EXIT_RUNTIME

    def __init__(self, problems: Problem | str | Iterable[Problem], title: str | None = None):
        if isinstance(problems, str):
            problems = [Problem(where="alignkit", message=problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        if title is not None:
            self.title = title
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.title} ({len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}):"]
        lines += [f"  - {p.render()}" for p in self.problems]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


class ConfigError(AlignkitError):
    """The config (recipe, profile, YAML, overrides) is invalid. Exit 2."""

    title = "invalid configuration"
    exit_code = EXIT_USAGE


class DataError(AlignkitError):
    """A dataset source or row is invalid. Exit 2."""

    title = "invalid data"
    exit_code = EXIT_USAGE


class UsageError(AlignkitError):
    """The command line itself is wrong. Exit 2."""

    title = "invalid usage"
    exit_code = EXIT_USAGE


class RuntimeFailure(AlignkitError):
    """Something failed that the user cannot fix in config (a child process, a scheduler). Exit 1."""

    title = "run failed"
    exit_code = EXIT_RUNTIME


def did_you_mean(name: str, candidates: Iterable[str], n: int = 3) -> str | None:
    """A 'did you mean' hint for an unknown key, or None when nothing is close."""
    candidates = list(candidates)
    matches = difflib.get_close_matches(name, candidates, n=n, cutoff=0.6)
    if not matches:
        # also match on the last dotted component ("train.lerning_rate" -> "learning_rate")
        tail = name.rsplit(".", 1)[-1]
        matches = difflib.get_close_matches(tail, candidates, n=n, cutoff=0.6)
    if not matches:
        return None
    return "did you mean " + " or ".join(f"'{m}'" for m in matches) + "?"
