"""Config layers and how they stack.

Lowest first: built-in defaults < shipped recipe < profile(s) < user YAML (--config, or the handbook's
positional path) < command-line overrides. Each layer is normalized into sections
(model/lora/data/train/launch) before merging:

* nested keys (``lora: {r: 32}``), dotted keys (``lora.r: 32``, ``--lora.r=32``) and flat keys
  (``learning_rate: 2e-5``, as in the handbook's files) all work; a flat key goes to the one section
  that has a field of that name;
* the handbook's old keys are translated (see deprecations.py), with a note each;
* unknown keys are collected as problems with did-you-mean, so that every error is reported at once.

A merged value remembers where it came from (``recipe zephyr-7b-beta/sft/full.yaml:14``), for error
messages and ``alignkit recipes show``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from alignkit.config import deprecations
from alignkit.config.run import SECTIONS, section_fields
from alignkit.config.yamlio import LineDict, load_value
from alignkit.errors import ConfigError, Problem, did_you_mean

TOP_LEVEL = ("description",)


@dataclass
class Layer:
    """One source of settings, already split into sections."""

    name: str  # "default", "recipe zephyr-7b-beta/sft/full.yaml", "profile qlora", "config my.yaml", "override"
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # section -> field -> value
    where: dict[tuple[str, str], str] = field(default_factory=dict)  # (section, field) -> "file:line"
    top: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # for the training processes (e.g. wandb_project)

    def set(self, section: str, key: str, value: Any, where: str) -> None:
        self.values.setdefault(section, {})[key] = value
        self.where[(section, key)] = where


def _line(mapping: Any, key: str) -> int | None:
    return mapping.lines.get(key) if isinstance(mapping, LineDict) else None


def build_layer(raw: Any, name: str, task: str, origin: str | None = None) -> Layer:
    """Normalize a parsed YAML document (or override dict) into a Layer. Never raises for bad keys:
    they become ``layer.problems``."""
    layer = Layer(name=name)
    origin = origin or name
    if raw is None:
        return layer
    if not isinstance(raw, dict):
        layer.problems.append(
            Problem(origin, f"expected a mapping of settings, got {type(raw).__name__}",
                    "write `key: value` lines (see `alignkit recipes show`)")
        )
        return layer
    fields = section_fields(task)
    old_keys = deprecations.keys_for(task)
    owner: dict[str, list[str]] = {}
    for section, names in fields.items():
        for n in names:
            owner.setdefault(n, []).append(section)

    def where_of(mapping: Any, key: str) -> str:
        line = _line(mapping, key)
        return f"{origin}:{line}" if line else origin

    def put(section: str, key: str, value: Any, where: str) -> None:
        if (section, key) == ("model", "dtype") and value is None:
            out = deprecations.Translation()
            deprecations.null_dtype(key, out)  # the handbook's default, as it meant there
            apply_translation(out, where)
            return
        if key in fields[section]:
            layer.set(section, key, value, where)
            return
        if key in old_keys:
            translate_one(key, value, where)
            return
        if key in deprecations.OWNED:
            layer.problems.append(Problem(f"{section}.{key}", "is not set here", deprecations.OWNED[key], where))
            return
        elsewhere = owner.get(key)
        if elsewhere:
            fix = f"it belongs in the {elsewhere[0]} section: {elsewhere[0]}.{key}"
        elif _other_task_has(task, key):
            other = _other_task_has(task, key)
            layer.problems.append(Problem(f"{section}.{key}", f"is a {other.upper()} setting, not a {task.upper()} one",
                                          _other_task_fix(other), where))
            return
        else:
            fix = did_you_mean(key, fields[section]) or f"see `alignkit config fields --task {task} {section}`"
        layer.problems.append(Problem(f"{section}.{key}", "unknown key", fix, where))

    def translate_one(key: str, value: Any, where: str) -> None:
        out = deprecations.Translation()
        old_keys[key](key, value, out)
        apply_translation(out, where)

    def apply_translation(out: deprecations.Translation, where: str) -> None:
        for target, value in out.values:
            section, key = target.split(".", 1)
            layer.set(section, key, value, where)
        layer.notes += [f"{n} [{where}]" for n in out.notes]
        layer.warnings += [f"{w} [{where}]" for w in out.warnings]
        layer.env.update(out.env)
        layer.problems += [Problem(key, message, fix, where) for key, message, fix in out.problems]

    mix_raw = {k: raw[k] for k in deprecations.MIX_KEYS if k in raw}
    if mix_raw:
        out = deprecations.Translation()
        deprecations.translate_mixture(mix_raw, out, deprecations.mixer_columns(task, raw))
        apply_translation(out, where_of(raw, next(iter(mix_raw))))

    current_flat = sorted(set(owner) | set(SECTIONS) | set(TOP_LEVEL))
    all_flat = sorted(set(current_flat) | set(old_keys))
    for key, value in raw.items():
        where = where_of(raw, key)
        if not isinstance(key, str):
            layer.problems.append(Problem(origin, f"key {key!r} is not a name", "use text keys", where))
            continue
        if key in mix_raw:
            continue
        if key in TOP_LEVEL:
            layer.top[key] = value
        elif key in SECTIONS:
            if value is None:
                continue
            if not isinstance(value, dict):
                layer.problems.append(
                    Problem(key, f"expected a mapping of {key} settings, got {type(value).__name__}",
                            f"write `{key}:` followed by indented `field: value` lines", where)
                )
                continue
            for sub, subval in value.items():
                put(key, str(sub), subval, where_of(value, sub))
        elif "." in key and key.split(".", 1)[0] in SECTIONS:
            section, sub = key.split(".", 1)
            put(section, sub, value, where)
        elif key in old_keys:
            translate_one(key, value, where)
        elif key in owner:
            if len(owner[key]) > 1:
                layer.problems.append(
                    Problem(key, f"is a field of several sections ({', '.join(owner[key])})",
                            f"qualify it, e.g. {owner[key][0]}.{key}", where)
                )
            else:
                put(owner[key][0], key, value, where)
        elif key in deprecations.OWNED:
            layer.problems.append(Problem(key, "is not set here", deprecations.OWNED[key], where))
        elif key in ("task", "recipe", "profile"):
            layer.problems.append(
                Problem(key, "is chosen on the command line", f"use --{key} instead of a config key", where)
            )
        elif _other_task_has(task, key):
            other = _other_task_has(task, key)
            layer.problems.append(Problem(key, f"is a {other.upper()} setting, not a {task.upper()} one",
                                          _other_task_fix(other), where))
        else:
            # current names first: an old handbook name is only suggested when nothing current is close
            hint = (deprecations.unknown_key_fix(key) or did_you_mean(key, current_flat)
                    or did_you_mean(key, all_flat))
            layer.problems.append(
                Problem(key, "unknown key", hint or f"see `alignkit config fields --task {task}`", where)
            )
    return layer


def _other_task_has(task: str, key: str) -> str | None:
    """The first other task (sft, dpo, orpo, cpt) whose TRL config has `key`, or None."""
    from alignkit.config.tasks import TASKS

    for other in TASKS:
        if other != task and key in section_fields(other)["train"]:
            return other
    return None


def _other_task_fix(other: str) -> str:
    """Remove the key; where the other task is one a handbook file of its own folder runs (orpo: the same pairs
    as DPO, another objective), name its command too."""
    if other in ("orpo", "cpt"):
        return f"remove it from this run, or train it with `alignkit {other}` if this is an {other.upper()} config"
    return "remove it from this run"


# Folders whose files train a different objective than the same keys would under another command: the handbook
# keeps its ORPO and CPT files in recipes/<model>/orpo/ and recipes/<model>/cpt/. An ORPO file has no key DPO
# lacks (beta, max_length, ... are DPO fields too), so without this `alignkit dpo` would train DPO with ORPO's beta.
FOLDER_TASKS = ("orpo", "cpt")


def folder_task_problem(path: str, task: str) -> Problem | None:
    """A config file in an `orpo/` or `cpt/` folder given to another command: refused, naming the command."""
    from pathlib import Path

    folder = Path(path).resolve().parent.name.lower()
    if folder in FOLDER_TASKS and folder != task:
        what = {"orpo": "ORPO (odds-ratio preference optimization, no reference model)",
                "cpt": "continued pretraining on a text column"}[folder]
        return Problem(str(path), f"is in an `{folder}` folder: a config for {what}, not for {task.upper()}",
                       f"run `alignkit {folder} {path}`; to train {task.upper()} with these values, copy the "
                       f"file out of the {folder} folder first")
    return None


def parse_overrides(args: list[str]) -> tuple[dict[str, Any], list[str], list[Problem]]:
    """Split the extra command-line arguments into overrides and positional config paths.

    ``--key=value`` and ``--key value``; values are parsed as YAML by a safe loader (so ``3e-5`` is a
    number, ``[a, b]`` a list, ``true`` a bool) and then validated against the field's real type.
    Dashes in keys become underscores (``--num-train-epochs`` = ``--num_train_epochs``).
    """
    overrides: dict[str, Any] = {}
    positional: list[str] = []
    problems: list[Problem] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            if arg.startswith("-") and len(arg) > 1:
                problems.append(Problem(arg, "unknown option", "overrides are written --key=value"))
            else:
                positional.append(arg)
            i += 1
            continue
        body = arg[2:]
        if "=" in body:
            key, text = body.split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            key, text = body, args[i + 1]
            i += 1
        else:
            problems.append(
                Problem(arg, "override has no value", f"write {arg}=VALUE (e.g. {arg}=true for a flag)")
            )
            i += 1
            continue
        i += 1
        key = key.replace("-", "_")
        if not key or key.startswith(".") or key.endswith(".") or ".." in key:
            problems.append(Problem(arg, "is not a valid key", "write --key=value or --section.key=value"))
            continue
        overrides[key] = _parse_value(text)
    return overrides, positional, problems


def _parse_value(text: str) -> Any:
    try:
        return load_value(text)
    except yaml.YAMLError:
        return text


def merge(layers: list[Layer]) -> tuple[dict[str, Any], dict[tuple[str, str], str]]:
    """Stack layers: later ones win field by field. Returns (nested dict, provenance)."""
    merged: dict[str, Any] = {}
    provenance: dict[tuple[str, str], str] = {}
    for layer in layers:
        for key, value in layer.top.items():
            merged[key] = value
        for section, values in layer.values.items():
            target = merged.setdefault(section, {})
            for key, value in values.items():
                target[key] = value
                provenance[(section, key)] = layer.where.get((section, key), layer.name)
    return merged, provenance


def raise_problems(problems: list[Problem]) -> None:
    if problems:
        raise ConfigError(problems)
