"""What ``alignkit mix preview|build|decontaminate`` works on: the data section, the task and the tokenizer.

Either from the config layers (``--recipe R --task T [--config F] [--key=value]``, resolved by
alignkit.config.resolve exactly as ``alignkit T`` resolves them) or from a stand-alone ``--data FILE.yaml``
holding a ``data:`` section plus ``--data.key=value`` overrides (the task's built-in defaults give the rest).
The tasks are alignkit.config.tasks's. The file is read with the same YAML loader as every config
(alignkit.config.yamlio: line numbers, duplicate keys, YAML 1.2 booleans) and its errors are translated
the same way, naming the key and its ``file:line``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.errors import ConfigError, Problem, UsageError

TRUNCATION_MODES = ("keep_start", "keep_end")


@dataclass
class MixInputs:
    task: str
    data: Any  # DataConfig
    tokenizer: str | None
    tokenizer_revision: str | None
    max_length: int | None
    trust_remote_code: bool = False
    truncation_mode: str = "keep_start"  # DPO: TRL's default
    packing: bool = False  # CPT: train.packing (on by default: config/defaults/cpt.yaml)
    packing_strategy: str = "bfd"  # CPT: train.packing_strategy (TRL's default)


def data_from_file(path: Path, extra: list[str], task: str = "sft"):
    """DataConfig from a YAML file holding a 'data:' section, plus data-only overrides."""
    from pydantic import ValidationError, create_model

    from alignkit.config.data import DataConfig
    from alignkit.config.layers import parse_overrides
    from alignkit.config.resolve import _pydantic_problems
    from alignkit.config.yamlio import LineDict, read_yaml

    if not path.is_file():
        raise UsageError(Problem(where=f"--data {path}", message="no such file", fix="check the path"))
    doc = read_yaml(path)
    if isinstance(doc, dict) and "data" in doc:
        extra_keys = sorted(set(doc) - {"data"})
        if extra_keys:
            raise ConfigError(
                Problem(
                    where=str(path),
                    message=f"has sections besides 'data' ({', '.join(extra_keys)})",
                    fix="give a full config with --config (and --recipe), or keep only 'data:' in --data",
                )
            )
        doc = doc["data"]
    if not isinstance(doc, dict):
        raise ConfigError(Problem(where=str(path), message="expected a mapping with a 'data:' section"))
    # where each key was set, as the config layers record it: "file:line" or "command line"
    provenance: dict[tuple[str, str], str] = {}
    for key in doc:
        line = doc.lines.get(key) if isinstance(doc, LineDict) else None
        provenance[("data", str(key))] = f"{path}:{line}" if line else str(path)
    overrides, positional, problems = parse_overrides(list(extra))
    problems = list(problems)
    for p in positional:
        problems.append(Problem(where=p, message="unexpected argument", fix="overrides are written --data.key=value"))
    fields = set(DataConfig.model_fields)
    for key, value in overrides.items():
        name = key[len("data."):] if key.startswith("data.") else key
        if name not in fields or "." in name:
            problems.append(
                Problem(
                    where=f"--{key}",
                    message="without --recipe/--config only data.* keys can be overridden",
                    fix=f"data keys: {', '.join(sorted(fields))}",
                )
            )
            continue
        doc[name] = value
        provenance[("data", name)] = "command line"
    if problems:
        raise UsageError(problems)

    data_only = create_model("DataOnly", data=(DataConfig, ...))  # errors located as data.<key>, like a config's
    try:
        return data_only.model_validate({"data": doc}).data
    except ValidationError as exc:
        raise ConfigError(_pydantic_problems(exc, task, provenance)) from None


def resolve_inputs(
    task: str,
    *,
    recipe: str | None,
    profile: str | None,
    config: list[Path] | None,
    data_file: Path | None,
    tokenizer: str | None,
    max_length: int | None,
    extra: list[str],
    skip_invalid: bool = False,
    truncation_mode: str | None = None,
) -> MixInputs:
    from alignkit.config.tasks import check_task_option, data_format

    check_task_option(task)
    cfg = None
    if data_file is not None and (recipe or config):
        raise UsageError(
            Problem(where="--data", message="goes without --recipe/--config", fix="put the data section in your --config file instead")
        )
    if data_file is not None:
        data = data_from_file(Path(data_file), extra, task)
        inputs = MixInputs(task, data, tokenizer, None, max_length, truncation_mode=truncation_mode or "keep_start")
        if data_format(task) == "cpt":  # what `alignkit cpt` packs into without a config: its defaults
            from alignkit.config.resolve import default_train

            train = default_train(task)
            inputs.packing, inputs.packing_strategy = bool(train.packing), train.packing_strategy
            if max_length is None and inputs.packing:
                inputs.max_length = train.max_length
    elif recipe or config:
        from alignkit.config.resolve import resolve_config

        cfg = resolve_config(task, recipe=recipe, profile=profile, config_files=[str(c) for c in config or []], overrides=extra).config
        model = cfg.model
        tok = tokenizer or model.tokenizer_name_or_path or model.model_name_or_path
        rev = None if tokenizer else getattr(model, "model_revision", None)
        ml = max_length if max_length is not None else getattr(cfg.train, "max_length", None)
        mode = truncation_mode or getattr(cfg.train, "truncation_mode", None) or "keep_start"
        inputs = MixInputs(task, cfg.data, tok, rev, ml, bool(getattr(model, "trust_remote_code", False)), mode,
                           packing=bool(getattr(cfg.train, "packing", False)),
                           packing_strategy=getattr(cfg.train, "packing_strategy", None) or "bfd")
    else:
        raise UsageError(
            Problem(
                where="alignkit mix",
                message="no data given",
                fix="use --recipe NAME (and/or --config FILE.yaml), or --data FILE.yaml with a 'data:' section",
            )
        )
    if truncation_mode and not _has_truncation_mode(task):
        from alignkit.config.tasks import trl_config

        raise UsageError(Problem(where="--truncation-mode", fix="leave out --truncation-mode",
                                 message=f"{task} has none (TRL's {trl_config(task).upper()}Config has no truncation_mode)"))
    if _has_truncation_mode(task) and inputs.truncation_mode not in TRUNCATION_MODES:
        raise ConfigError(
            Problem(
                where="--truncation-mode" if truncation_mode else "train.truncation_mode",
                message=f"{inputs.truncation_mode!r} is not one of {', '.join(TRUNCATION_MODES)} (TRL's collator rejects it)",
                fix="keep_start (TRL's default: cut the end) or keep_end (cut the start of the prompt)",
            )
        )
    if skip_invalid:
        inputs.data = inputs.data.model_copy(update={"skip_invalid": True})
    # a typo in the template name must not wait for the data and the tokenizer to load
    from alignkit.data.chat import check_template_value

    check_template_value(inputs.data.chat_template)
    if cfg is not None or tokenizer:
        _check_local_tokenizer(inputs, cfg, bool(tokenizer))
    from alignkit.config.demo_paths import demo_root
    from alignkit.data.checks import local_source_problems

    demo = demo_root()  # the demo's assets are built on first use
    problems = local_source_problems(inputs.data, skip_under=None if demo.exists() else demo)
    if problems:
        raise ConfigError(problems)
    return inputs


def _has_truncation_mode(task: str) -> bool:
    """Whether the task's TRL config has truncation_mode (DPOConfig and SFTConfig do, ORPOConfig does not)."""
    from alignkit.config.train import train_model

    return "truncation_mode" in train_model(task).model_fields


def infer_task(task: str | None, recipe: str | None) -> str:
    """--task when given; else the recipe's only task, else sft (as `alignkit plan` does)."""
    if task:
        return task
    if recipe:
        from alignkit.config import recipes

        try:
            tasks = list(dict.fromkeys(f.task for f in recipes.files(recipe)))
        except ConfigError:
            tasks = []
        if len(tasks) == 1:
            return tasks[0]
    return "sft"


def _check_local_tokenizer(inputs: MixInputs, cfg, given: bool) -> None:
    """A tokenizer (or model) that names a local path which does not exist is said as such, with the fix, before
    anything asks the Hub for it."""
    from alignkit.config.demo_paths import demo_root
    from alignkit.config.resolve import writer_of
    from alignkit.modeling import local_path

    path = local_path(inputs.tokenizer)
    if path is None and inputs.tokenizer and not given and writer_of(cfg, inputs.tokenizer):
        path = Path(inputs.tokenizer)  # `data/x`: the recipe's SFT output, not an org/name id
    if path is None or path.exists() or path.absolute().is_relative_to(demo_root()):
        return
    if given:
        raise UsageError(Problem("--tokenizer", f"{inputs.tokenizer}: no such directory",
                                 "give a tokenizer directory or a Hub id"))
    key = "model.tokenizer_name_or_path" if cfg.model.tokenizer_name_or_path else "model.model_name_or_path"
    fix = "pass --model_name_or_path (a saved model dir or a Hub id), or --tokenizer DIR"
    writer = writer_of(cfg, path) if key == "model.model_name_or_path" else None
    if writer:
        fix = f"train it first with `{writer}`, or " + fix
    raise ConfigError(Problem(key, f"{inputs.tokenizer}: no such directory", fix))

