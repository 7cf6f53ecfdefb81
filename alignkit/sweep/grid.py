"""The grid of a sweep: ``--grid key=v1,v2`` options, their expansion into points, a seeded random sample.

Keys are written as overrides are (``beta``, ``train.beta``, ``lora.r``; dashes become underscores) and
each value is YAML, parsed exactly as ``--key=value`` is (``1e-5`` a number, ``true`` a bool, ``[a, b]``
a list: commas inside brackets or quotes do not split). A point is one combination of values; it becomes
one ordinary run whose overrides are the base overrides plus ``--key=value`` per grid key.

Nothing here resolves a config: the keys and values are checked against the config when each point is
planned (``alignkit.sweep.runs``).
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass, field
from typing import Any

from alignkit.errors import Problem, UsageError

# what a sweep decides itself, per point: never a grid key or a base override
RESERVED_KEYS = ("output_dir", "train.output_dir")


@dataclass
class Axis:
    key: str  # as given, dashes made underscores: "beta", "train.beta", "lora.r"
    texts: list[str]  # each value as written (what goes into the point's --key=value)
    values: list[Any]  # each value parsed as YAML (what the manifest and the report show)


@dataclass
class Point:
    index: int
    values: dict[str, Any]  # key -> parsed value
    texts: dict[str, str] = field(default_factory=dict)  # key -> value as written

    @property
    def name(self) -> str:
        """The point's dir name: ``p03-beta=0.1-loss_type=ipo`` (only file-name-safe characters)."""
        parts = [f"p{self.index:02d}"]
        for key, text in self.texts.items():
            short = key.rsplit(".", 1)[-1]
            parts.append(f"{short}={text}")
        name = re.sub(r"[^A-Za-z0-9._=+-]+", "_", "-".join(parts))
        return name[:100].rstrip("._-") or f"p{self.index:02d}"

    @property
    def label(self) -> str:
        """``point 3 (beta=0.1, loss_type=ipo)``, for messages."""
        inner = ", ".join(f"{k}={t}" for k, t in self.texts.items())
        return f"point {self.index}" + (f" ({inner})" if inner else "")

    def overrides(self) -> list[str]:
        return [f"--{k}={t}" for k, t in self.texts.items()]


def split_values(text: str) -> list[str]:
    """``a,b,[c, d],'e,f'`` -> ``["a", "b", "[c, d]", "'e,f'"]``: commas split except inside brackets,
    braces or quotes."""
    out, cur, depth, quote = [], [], 0, None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def _parse_value(text: str) -> Any:
    from alignkit.config.yamlio import load_value

    try:
        return load_value(text)
    except Exception:  # noqa: BLE001 - as an override: text that is not YAML stays text
        return text


def normalize_key(key: str) -> str:
    return key.strip().replace("-", "_")


def parse_grid(specs: list[str]) -> list[Axis]:
    """The ``--grid`` options, in order; every problem at once (UsageError naming the option)."""
    axes, problems = read_grid(specs)
    if problems:
        raise UsageError(problems, title="invalid grid")
    return axes


def read_grid(specs: list[str]) -> tuple[list[Axis], list[Problem]]:
    """The valid ``--grid`` options, and a problem for each invalid one."""
    axes: list[Axis] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, spec in enumerate(specs):
        where = f"--grid {spec}"
        key, eq, rest = spec.partition("=")
        key = normalize_key(key)
        if not eq or not key:
            problems.append(Problem(where, "is not key=v1,v2,...", "write --grid beta=0.01,0.1,0.5"))
            continue
        if key.startswith(".") or key.endswith(".") or ".." in key or not re.fullmatch(r"[A-Za-z0-9_.]+", key):
            problems.append(Problem(where, f"{key!r} is not a config key", "write --grid key=... or --grid "
                                    "section.key=... (keys: `alignkit config fields --task sft|dpo`)"))
            continue
        if key in RESERVED_KEYS:
            problems.append(Problem(where, "each point's output dir is chosen by the sweep",
                                    "drop it; use --output SWEEP_DIR for where the points go"))
            continue
        texts = split_values(rest)
        if not rest.strip() or any(t == "" for t in texts):
            problems.append(Problem(where, f"key {key}: empty value list" if not rest.strip()
                                    else f"key {key}: an empty value in the list",
                                    f"give one or more values: --grid {key}=v1,v2"))
            continue
        if key in seen:
            problems.append(Problem(where, f"key {key} is already swept by --grid #{seen[key] + 1}",
                                    "give each key one --grid with all its values"))
            continue
        dupes = sorted({t for t in texts if texts.count(t) > 1})
        if dupes:
            problems.append(Problem(where, f"key {key}: value {dupes[0]} is listed twice", "list each value once"))
            continue
        seen[key] = i
        axes.append(Axis(key, texts, [_parse_value(t) for t in texts]))
    return axes, problems


def expand(axes: list[Axis], *, sample: int | None = None, seed: int = 0) -> list[Point]:
    """Every combination (the first axis varies slowest), or ``sample`` of them drawn with ``seed``
    (kept in grid order). No axis: one point, the base config."""
    combos = list(itertools.product(*[range(len(a.texts)) for a in axes]))
    if sample is not None:
        if sample < 1:
            raise UsageError(Problem("--random", f"must be at least 1, got {sample}", "pass --random N with N >= 1"))
        if sample < len(combos):
            picked = sorted(random.Random(seed).sample(range(len(combos)), sample))
            combos = [combos[i] for i in picked]
    points = []
    for n, combo in enumerate(combos):
        values = {a.key: a.values[j] for a, j in zip(axes, combo)}
        texts = {a.key: a.texts[j] for a, j in zip(axes, combo)}
        points.append(Point(n, values, texts))
    return points


def check_base_overrides(axes: list[Axis], overrides: list[str]) -> None:
    """A key both swept and set for every point, or an output dir set for every point, is refused."""
    problems = base_override_problems(axes, overrides)
    if problems:
        raise UsageError(problems, title="invalid sweep")


def base_override_problems(axes: list[Axis], overrides: list[str]) -> list[Problem]:
    """The problems ``check_base_overrides`` raises."""
    from alignkit.config.layers import parse_overrides

    parsed, _positional, _problems = parse_overrides(list(overrides))  # their own problems come per point
    swept = {a.key: a for a in axes}
    problems = []
    for key in parsed:
        if key in RESERVED_KEYS:
            problems.append(Problem(f"--{key}", "each point's output dir is chosen by the sweep",
                                    "drop it and pass --output SWEEP_DIR"))
        for a in swept:
            if key == a or key.rsplit(".", 1)[-1] == a.rsplit(".", 1)[-1] and ("." not in key or "." not in a):
                problems.append(Problem(f"--{key}", f"is also swept (--grid {a}=...)",
                                        "drop one of them: a swept key takes its value from the grid"))
    return problems
