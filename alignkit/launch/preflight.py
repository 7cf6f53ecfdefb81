"""Before a run starts: what the training processes would otherwise fail on, checked in the launching process,
and the data mixed once into the run dir for them.

Called once the output dir is claimed and before the run files are written (``alignkit sft|dpo``; ``alignkit
slurm submit`` before it submits). Nothing here starts a training process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignkit import ui
from alignkit.errors import ConfigError, DataError, Problem
from alignkit.launch.run import RunDir
from alignkit.launch.run.file import DataBuild
from alignkit.launch.spec import LaunchPlan


def preflight(p: LaunchPlan) -> None:
    """Check in this process, once the output dir is claimed and before the run files are written or anything
    is started, what the training processes would otherwise fail on inside `accelerate launch` with a
    traceback and exit 1: a local model dir without weights or tokenizer, no chat template with no fallback
    allowed, and the data. Hub ids are left to the hub.

    The data is mixed here, once: loaded, validated and written into the run dir as an `alignkit mix build`
    (``<output_dir>/alignkit/data/``), which ``p.data`` then names with its manifest's hash; the run file records
    it and the training processes read that build instead of mixing again. A resumed run whose inputs did not
    change reuses the build as it is."""
    problems, _ = local_problems(p, planning=False)
    if problems:
        raise ConfigError(problems)
    reason = _hub_unreachable(p.config)
    if reason:
        from alignkit.data.checks import network_problem

        raise ConfigError(network_problem(reason))
    p.data = build_data(p)


def local_problems(p: LaunchPlan, *, planning: bool) -> tuple[list[Problem], list[str]]:
    """Everything that can be checked without the network and without reading a row: the local model and
    tokenizer dirs, the chat template, the local data sources, and (``planning`` false: for a run on this
    machine) the loggers of report_to. Returns (problems, notes). ``planning`` (validate, --dry-run): a model
    dir that the recipe's own SFT step writes and that does not exist yet is a note, not a problem."""
    from alignkit.config.demo_paths import demo_root
    from alignkit.data.checks import local_source_problems
    from alignkit.launch.hardware import logger_problems

    cfg = p.config
    model = cfg.model.model_dump()
    notes: list[str] = []
    demo = demo_root()
    from alignkit.config.resolve import writer_of

    name = model.get("model_name_or_path")
    path = _local_path(name)
    if path is None and name and writer_of(cfg, name):  # `data/x`: the recipe's SFT output, not an org/name id
        path = Path(name)
    problems: list[Problem] = []
    if path is not None and path.absolute().is_relative_to(demo):
        pass  # the demo's assets are built on first use
    elif path is not None and not path.exists():
        writer = writer_of(cfg, path)
        if writer and planning:
            notes.append(f"model.model_name_or_path {path} does not exist yet: `{writer}` writes it")
        else:
            fix = (f"train it first with `{writer}`, or pass --model_name_or_path (a saved model dir or a Hub id)"
                   if writer else None)
            problems += _model_problems(model, fix)
    else:
        problems += _model_problems(model)
    if not problems:
        problems += _template_problems(model, cfg.data)
    problems += local_source_problems(cfg.data, skip_under=demo if not demo.exists() else None)
    if not planning:
        problems += logger_problems(getattr(cfg.train, "report_to", None))
    return problems, notes


def _hub_unreachable(cfg) -> str | None:
    """Why the Hub cannot be reached when this run needs it (a Hub dataset or model), else None."""
    from alignkit.data.checks import hub_offline, hub_unreachable

    if hub_offline():
        return None
    needs = any(s.id for s in cfg.data.mixture) or _local_path(cfg.model.model_name_or_path) is None
    return hub_unreachable() if needs else None


def build_data(p: LaunchPlan) -> DataBuild:
    """Mix the plan's data into its run dir (or reuse an intact build of the same inputs) and name it."""
    import shutil

    from alignkit.data.build import build_mixture, sha256_file
    from alignkit.data.sources import MANIFEST

    target = RunDir.of(p.output_dir).data_dir
    result = build_mixture(p.config.data, p.task, target, render=False, overwrite=True, console=ui.err_console())
    if result.manifest["splits"].get("train", {}).get("rows", 0) == 0:
        shutil.rmtree(target, ignore_errors=True)  # a refused run leaves no run files
        raise DataError(Problem("data.mixture", "the train split has no rows",
                                "add a train source with rows (test sources and carved eval rows never train)"))
    return DataBuild(path=str(target), key=result.manifest.get("key"),
                     manifest_sha256=sha256_file(target / MANIFEST))


def _model_problems(model: dict[str, Any], missing_fix: str | None = None) -> list[Problem]:
    from alignkit.modeling import model_problems

    return model_problems(model, missing_fix)


def _local_path(name: str | None):
    from alignkit.modeling import local_path

    return local_path(name)


def _template_problems(model: dict[str, Any], data) -> list[Problem]:
    import json

    from alignkit.data.chat import template_from_config

    if data.chat_template:
        try:
            template_from_config(data.chat_template)
        except ConfigError as exc:
            return list(exc.problems)
        return []
    if data.chat_template_fallback != "none":
        return []
    tok = _local_path(model.get("tokenizer_name_or_path")) or _local_path(model.get("model_name_or_path"))
    if tok is None or not tok.is_dir():
        return []
    if (tok / "chat_template.jinja").is_file() or (tok / "chat_template.json").is_file():
        return []
    try:
        if json.loads((tok / "tokenizer_config.json").read_text()).get("chat_template"):
            return []
    except (OSError, ValueError):
        pass
    return [Problem("data.chat_template", f"the tokenizer in {tok} has no chat template and "
                    "data.chat_template_fallback is 'none'",
                    "set data.chat_template (zephyr, chatml, llama3, a .jinja file or a Jinja string), or "
                    "data.chat_template_fallback: zephyr")]
