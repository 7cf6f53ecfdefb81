"""From command line to one validated run config, reporting every problem at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from alignkit.config import recipes
from alignkit.config.demo_paths import PREFIX as DEMO_PREFIX
from alignkit.config.demo_paths import demo_path
from alignkit.config.layers import Layer, build_layer, folder_task_problem, merge, parse_overrides
from alignkit.config.profiles import ProfileStack, load_stack
from alignkit.config.run import SECTIONS, RunConfig, cross_field_problems, run_model, section_model
from alignkit.config.yamlio import parse_yaml, read_yaml
from alignkit.errors import ConfigError, Problem, did_you_mean


@dataclass
class Resolved:
    task: str
    recipe: str | None
    recipe_file: str | None
    profile: ProfileStack
    config: RunConfig  # run_model(task): the typed config of this task
    provenance: dict[tuple[str, str], str]
    layers: list[Layer]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    plan_notes: list[str] = field(default_factory=list)  # how the profile was chosen, what it changed
    profile_reason: str | None = None  # why a run without --profile got this one (None: --profile, or full)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config with TRL's field names (RunConfig.to_dict)."""
        return self.config.to_dict()

    def source_of(self, section: str, key: str) -> str:
        return self.provenance.get((section, key), "default")

    def layer_of(self, section: str, key: str) -> str:
        """Name of the layer that set a value last: "default", "recipe …", "profile …", "config PATH" or
        "override" ("default" when no layer set it)."""
        for layer in reversed(self.layers):
            if key in layer.values.get(section, {}):
                return layer.name
        return "default"

    def user_set(self, section: str, key: str) -> bool:
        """Set by the user's own config files or command-line overrides (not defaults, recipe, profile)."""
        return self.layer_of(section, key).startswith(("config ", "override"))


def _defaults_layer(task: str) -> Layer:
    text = resources.files("alignkit.config").joinpath("defaults", f"{task}.yaml").read_text()
    return build_layer(parse_yaml(text, f"defaults/{task}.yaml"), "default", task, f"defaults/{task}.yaml")


def default_train(task: str):
    """The `train` section a task gets from its built-in defaults alone (config/defaults/<task>.yaml over TRL's):
    what `alignkit mix --data` assumes of the trainer (CPT: packing into max_length sequences)."""
    from alignkit.config.train import train_model

    return train_model(task).model_validate(_defaults_layer(task).values.get("train", {}))


def resolve_config(
    task: str,
    *,
    recipe: str | None = None,
    profile: str | None = None,
    config_files: list[str] | tuple[str, ...] = (),
    overrides: list[str] | dict[str, Any] | None = None,
) -> Resolved:
    """Stack defaults < recipe < profile(s) < config files < overrides and validate the result.

    ``overrides`` is either the raw extra argv (``["--lr=1", "my.yaml"]``: bare paths count as config
    files, the handbook's positional form) or an already parsed ``{key: value}`` mapping.
    Raises ConfigError listing every problem found.
    """
    problems: list[Problem] = []
    recipes.check_task(task)  # unknown: exit 2
    config_files = list(config_files)
    if isinstance(overrides, dict):
        override_map = dict(overrides)
    else:
        override_map, positional, parse_problems = parse_overrides(list(overrides or []))
        problems += parse_problems
        for p in positional:
            if p.endswith((".yaml", ".yml")) or Path(p).is_file():
                config_files.append(p)
            else:
                problems.append(Problem(p if p.strip() else repr(p), "unexpected argument",
                                        "pass a config file (.yaml) or an override --key=value"))
    if not recipe and not config_files:
        problems.append(Problem("--recipe", "no recipe and no config file",
                                "pass --recipe NAME (see `alignkit recipes list`) or --config FILE"))

    user_layers: list[Layer] = []
    unreadable = False
    for path in config_files:
        try:
            raw = read_yaml(path)
        except ConfigError as exc:
            problems += exc.problems
            unreadable = True
            continue
        user_layers.append(build_layer(raw, f"config {path}", task, path))
        problems += filter(None, [folder_task_problem(path, task)])
    if override_map:
        ov = build_layer(override_map, "override", task, "command line")
        for key in list(ov.where):
            ov.where[key] = f"override --{_override_key(override_map, key)}"
        user_layers.append(ov)

    plan_notes: list[str] = []
    why = None
    if profile is None:
        profile, why = _profile_from(user_layers)
        if why:
            plan_notes.append(f"profile {profile}, because {why}; --profile to choose another")
    stack: ProfileStack | None = None
    try:
        stack = load_stack(profile)
    except ConfigError as exc:
        problems += exc.problems

    layers: list[Layer] = [_defaults_layer(task)]
    recipe_label = None
    if recipe:
        try:
            # with a bad --profile (already reported) the recipe is still read, so that its values are
            # checked and no spurious "model_name_or_path is required" follows
            rf = recipes.find(recipe, task, stack.adaptation if stack is not None else "full")
            recipe_label = rf.label
            layers.append(build_layer(parse_yaml(rf.text, f"recipe {rf.label}"), f"recipe {rf.label}", task,
                                      f"recipe {rf.label}"))
        except ConfigError as exc:
            problems += [p for p in exc.problems if stack is not None or p.where != "--profile"]
    if stack is not None:
        for name, cfg in stack.config_layers:
            layers.append(build_layer(cfg, f"profile {name}", task, f"profile {name}"))
    layers += user_layers
    for layer in layers:
        problems += layer.problems

    merged, provenance = merge(layers)
    if stack is not None and stack.cpu:
        plan_notes += _cpu_settings_win(merged, provenance, stack)
    _expand_demo_paths(merged)
    doc: dict[str, Any] = {
        "task": task,
        "recipe": recipe,
        "profile": stack.name if stack else profile,
        **merged,
    }
    doc.setdefault("model", {})
    doc.setdefault("train", {})
    config = None
    checked, unknown = None, set()
    try:  # validated even when layers had problems, so type errors are reported with unknown keys
        config = checked = run_model(task).model_validate(doc)
    except ValidationError as exc:
        found = _pydantic_problems(exc, task, provenance)
        if (recipe and recipe_label is None) or unreadable:
            # the recipe or a config file could not be read (reported): what it sets is not missing
            found = [p for p in found if not (p.where == "model.model_name_or_path" and p.message == "is required")]
        problems += found
        # the cross-field checks still run on what is valid: the failing fields take their defaults and the
        # checks that read them are skipped (see run.CROSS_CHECKS)
        checked, unknown = _without_invalid(task, doc, exc)
    unknown |= _meant_by_unknown_keys(task, problems)
    if checked is not None and not any(p.where.split(".", 1)[0] in ("task", "profile") for p in problems):
        problems += [
            Problem(p.where, p.message, p.fix, provenance.get(tuple(p.where.split(".", 1)), None))  # type: ignore[arg-type]
            for p in cross_field_problems(checked, unknown)
        ]
        if stack is not None and not ({"model.load_in_4bit", "model.load_in_8bit", "model"} & unknown):
            problems += _profile_problems(checked, stack, provenance)
    if problems:
        raise ConfigError(_dedupe(problems))
    assert stack is not None and config is not None
    notes = [n for layer in layers for n in layer.notes]
    warnings = [w for layer in layers for w in layer.warnings]
    return Resolved(task, recipe, recipe_label, stack, config, provenance, layers, notes, warnings, plan_notes, why)


def writer_of(config: RunConfig, path) -> str | None:
    """The alignkit command that writes ``path`` when it is the output dir of the recipe's SFT step (a recipe's
    DPO trains from what its SFT writes), else None."""
    import os

    if config.task == "sft" or not config.recipe:
        return None
    try:
        sft = resolve_config("sft", recipe=config.recipe, profile=config.profile).config
    except ConfigError:
        return None
    out = sft.train.output_dir
    if out and os.path.abspath(os.path.expanduser(out)) == os.path.abspath(os.path.expanduser(str(path))):
        return f"alignkit sft --recipe {config.recipe} --profile {config.profile}"
    return None


def _profile_from(user_layers: list[Layer]) -> tuple[str, str | None]:
    """The profile a run without --profile gets: the one the user's own files and overrides call for (a 4-bit
    base: qlora; LoRA adapters: lora), else full; and why, when it is not full."""
    merged, provenance = merge(user_layers)
    model, lora = merged.get("model") or {}, merged.get("lora") or {}
    if model.get("load_in_4bit") is True:
        return "qlora", f"{provenance[('model', 'load_in_4bit')]} sets load_in_4bit: true (LoRA on a 4-bit base; " \
                        "DeepSpeed ZeRO-3 cannot shard one)"
    if lora.get("enabled") is True:
        return "lora", f"{provenance[('lora', 'enabled')]} turns LoRA on (use_peft / lora.enabled)"
    return "full", None


def _profile_problems(run: RunConfig, stack: ProfileStack, provenance) -> list[Problem]:
    """Combinations of profile and config that fail inside the training processes, refused here."""
    zero3 = stack.uses_deepspeed and (stack.deepspeed or {}).get("zero_optimization", {}).get("stage") == 3
    if zero3 and (run.model.load_in_4bit or run.model.load_in_8bit):
        key = "load_in_4bit" if run.model.load_in_4bit else "load_in_8bit"
        return [Problem(f"model.{key}", f"a quantized base cannot be sharded by DeepSpeed ZeRO-3 (profile "
                        f"{stack.name}): DeepSpeed ZeRO-3 does not take a device_map",
                        "use --profile qlora (add ,cpu without a GPU), or leave out --profile (a file with "
                        f"{key}: true picks qlora), or drop {key}", provenance.get(("model", key)))]
    return []


# What a CPU profile sets for the hardware, whatever a file or override says: a GPU-only value fails inside the
# training process (bf16/tf32 need a GPU, flash-attention needs CUDA and flash-attn).
_CPU_WINS = (("train", "bf16", lambda v: v is True), ("train", "fp16", lambda v: v is True),
             ("train", "tf32", lambda v: v is True),
             ("model", "attn_implementation", lambda v: isinstance(v, str) and v.startswith("flash")))


def _cpu_settings_win(merged: dict[str, Any], provenance, stack: ProfileStack) -> list[str]:
    import json

    wanted: dict[tuple[str, str], Any] = {}
    where: dict[tuple[str, str], str] = {}
    for name, cfg in stack.config_layers:
        for section, values in cfg.items():
            for key, value in (values or {}).items():
                wanted[(section, key)] = value
                where[(section, key)] = name
    notes = []
    for section, key, gpu_only in _CPU_WINS:
        value = (merged.get(section) or {}).get(key)
        if (section, key) not in wanted or not gpu_only(value) or wanted[(section, key)] == value:
            continue
        new = wanted[(section, key)]
        merged[section][key] = new
        src = provenance.get((section, key), "?")
        provenance[(section, key)] = f"profile {where[(section, key)]}"
        notes.append(f"{section}.{key}: {json.dumps(value)} ({src}) → {json.dumps(new)}: profile {stack.name} "
                     "runs on the CPU, whose setting wins over the file's")
    return notes


def _meant_by_unknown_keys(task: str, problems: list[Problem]) -> set[str]:
    """The fields an unknown key may have meant (its did-you-mean candidates): their value may not be the one
    the user wanted, so the cross-field checks reading them wait for the typo to be fixed."""
    import difflib

    fields: dict[str, list[str]] = {}
    for section in SECTIONS:
        for name in section_model(task, section).model_fields:
            fields.setdefault(name, []).append(f"{section}.{name}")
    meant: set[str] = set()
    for p in problems:
        if p.where.startswith("dataset_mixture"):  # a handbook mixture that could not be translated
            meant.add("data.mixture")
        if p.message == "unknown key":
            for match in difflib.get_close_matches(p.where.rsplit(".", 1)[-1], list(fields), n=3, cutoff=0.6):
                meant.update(fields[match])
    return meant


def _without_invalid(task: str, doc: dict[str, Any], exc: ValidationError) -> tuple[Any, set[str]]:
    """The config with every field that failed validation removed (so it takes its default), and those
    fields' names; (None, ...) when it still does not validate (e.g. a required field is missing)."""
    import copy

    pruned = copy.deepcopy(doc)
    unknown: set[str] = set()
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        if not loc:
            continue
        if len(loc) == 1 or not isinstance(pruned.get(loc[0]), dict):
            unknown.add(loc[0])
            pruned.pop(loc[0], None)
            continue
        unknown.add(f"{loc[0]}.{loc[1]}")
        pruned[loc[0]].pop(loc[1], None)
    try:
        return run_model(task).model_validate(pruned), unknown
    except ValidationError:
        return None, unknown


def _override_key(override_map: dict[str, Any], section_key: tuple[str, str]) -> str:
    section, key = section_key
    for k in override_map:
        if k == f"{section}.{key}" or k == key:
            return k
    return f"{section}.{key}"


def _expand_demo_paths(merged: dict[str, Any]) -> None:
    """`demo:` paths point into the embedded demo's cache (built by `alignkit demo` or on first use)."""

    def expand(value: Any) -> Any:
        if isinstance(value, str) and value.startswith(DEMO_PREFIX):
            return demo_path(value[len(DEMO_PREFIX):])
        return value

    model = merged.get("model") if isinstance(merged.get("model"), dict) else {}
    for key in ("model_name_or_path", "tokenizer_name_or_path"):
        if key in model:
            model[key] = expand(model[key])
    data = merged.get("data") if isinstance(merged.get("data"), dict) else {}
    mixture = data.get("mixture")
    for src in mixture if isinstance(mixture, list) else []:  # anything else is reported by validation
        if isinstance(src, dict):
            for key in ("path", "id"):
                if key in src:
                    src[key] = expand(src[key])


def _pydantic_problems(exc: ValidationError, task: str, provenance) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = [str(x) for x in err["loc"]]
        if not loc:
            out.append(Problem("config", err["msg"]))
            continue
        section = loc[0]
        key = loc[1] if len(loc) > 1 else None
        where = ".".join(loc)
        if section != "data" and key is not None and err["type"] != "extra_forbidden":
            where = f"{section}.{key}"  # not "lora.target_modules.list[str]" (pydantic's union member)
        source = provenance.get((section, key)) if key else None
        msg = err["msg"].removeprefix("Value error, ")
        fix = None
        if err["type"] == "missing":
            if section == "model" and key == "model_name_or_path":
                fix = "set model.model_name_or_path (e.g. --model_name_or_path=mistralai/Mistral-7B-v0.1)"
            else:
                fix = f"set {where}"
            msg = "is required"
        elif err["type"] == "extra_forbidden":
            fields: list[str] = []
            if section == "data" and len(loc) >= 4 and loc[1] == "mixture":
                from alignkit.config.data import DataSource

                fields = list(DataSource.model_fields)
            elif section in SECTIONS:
                fields = list(section_model(task, section).model_fields)
            msg = "unknown key"
            fix = did_you_mean(loc[-1], fields) or (f"allowed: {', '.join(fields)}" if fields else None)
        else:
            value = err.get("input")
            if not isinstance(value, (dict, list)) or len(repr(value)) < 60:
                msg = f"{msg} (got {value!r})"
            if section == "data" and len(loc) > 2 and loc[1] == "mixture":
                fix = "see docs/data.md for the source fields"
            else:
                fix = _value_fix(err, where, task, section, key)
        out.append(Problem(where, msg, fix, source))
    return out


_BOUNDS = {"greater_than": ("greater than", "gt"), "greater_than_equal": ("at least", "ge"),
           "less_than": ("less than", "lt"), "less_than_equal": ("at most", "le")}


def _value_fix(err: dict, where: str, task: str, section: str, key: str | None) -> str:
    """What to do about a value of the wrong type or out of range."""
    ctx = err.get("ctx") or {}
    if err["type"] in _BOUNDS and _BOUNDS[err["type"]][1] in ctx:
        words, bound = _BOUNDS[err["type"]]
        return f"set {where} to a value {words} {ctx[bound]}"
    if err["type"] == "literal_error" and "expected" in ctx:
        return f"set {where} to {ctx['expected']}"
    look = f" --search {key}" if key else f" {section}"
    return f"give {where} a valid value (type and meaning: `alignkit config fields --task {task}{look}`)"


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        key = (p.where, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
