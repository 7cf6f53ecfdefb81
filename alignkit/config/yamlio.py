"""YAML reading with line numbers and duplicate-key detection, on top of PyYAML's SafeLoader.

Only the safe loader is ever used: no Python object tags. What this adds is bookkeeping: every mapping
remembers the line of each key (for "file:line" in error messages), and a key given twice in one
mapping is an error instead of the last one silently winning.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from alignkit.errors import ConfigError, Problem


class LineDict(dict):
    """A dict that knows the 1-based line of each of its keys."""

    lines: dict[str, int]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lines = {}


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int, first: int):
        super().__init__(f"key '{key}' appears twice (lines {first} and {line})")
        self.key, self.line, self.first = key, line, first


class _Loader(yaml.SafeLoader):
    pass


def _yaml12_booleans(loader_cls) -> None:
    """Only true/false are booleans (YAML 1.2), not yes/no/on/off: `eval_strategy: no` stays "no"."""
    import re

    resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:bool"]
                 for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    loader_cls.yaml_implicit_resolvers = resolvers
    loader_cls.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )


_yaml12_booleans(_Loader)


def _construct_map(loader: _Loader, node: yaml.MappingNode):
    data = LineDict()
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in data.lines:
            raise _DuplicateKey(key, line, data.lines[key])
        data.lines[key] = line
        data[key] = loader.construct_object(value_node, deep=True)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)

# YAML 1.1 (PyYAML) reads `1e-6` (no dot) as a string; YAML 1.2 and every user read it as a number.
# Typed fields would coerce it anyway, but free-form ones (lr_scheduler_kwargs: {min_lr: 1e-6}) would
# hand TRL a string. Only this loader's copy of the resolvers is changed, never SafeLoader's.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_value(text: str) -> Any:
    """Parse one command-line value with the same safe loader as files (``3e-5`` is a float, ``no`` a
    string, ``[a, b]`` a list)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader subclass


def parse_yaml(text: str, origin: str) -> Any:
    """Parse YAML text; errors become a ConfigError naming ``origin:line`` and the fix."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(
            Problem(
                where=f"{origin}:{exc.line}",
                message=str(exc),
                fix=f"keep one '{exc.key}' (the first is on line {exc.first})",
            )
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        fix = "fix the YAML syntax"
        if "could not determine a constructor" in str(problem):
            fix = "remove the '!!' tag: configs are plain YAML, read with a safe loader (no Python objects)"
        if mark is not None and "\t" in (text.splitlines()[mark.line] if mark.line < len(text.splitlines()) else ""):
            fix = "indent with spaces: YAML does not allow tabs"
        raise ConfigError(Problem(where=f"{origin}{line}", message=f"YAML error: {problem}", fix=fix)) from None


def read_yaml(path: str | os.PathLike, origin: str | None = None) -> Any:
    path = Path(path)
    origin = origin or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(Problem(where=str(path), message="file not found", fix="check the path")) from None
    except IsADirectoryError:
        raise ConfigError(Problem(where=str(path), message="is a directory, not a YAML file",
                                  fix="pass the path of a .yaml file")) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(Problem(where=str(path), message=f"cannot read: not UTF-8 text ({exc.reason} at byte {exc.start})",
                                  fix="save it as UTF-8 text (is it really a YAML file?)")) from None
    except OSError as exc:
        raise ConfigError(Problem(where=str(path), message=f"cannot read: {exc.strerror or exc}",
                                  fix="check the file's permissions")) from None
    return parse_yaml(text, origin)


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(_plain(data), sort_keys=False, default_flow_style=False, allow_unicode=True)


def _plain(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_plain(v) for v in data]
    return data
