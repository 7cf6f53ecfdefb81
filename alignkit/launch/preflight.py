"""Before a run starts: what the training processes would otherwise fail on, checked in the launching process,
and the data mixed once into the run dir for them.

Called once the output dir is claimed and before the run files are written (``alignkit sft|dpo``; ``alignkit
slurm submit`` before it submits). Nothing here starts a training process.
"""

from __future__ import annotations

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
    data = p.config.data
    model = p.config.model.model_dump()
    problems = _model_problems(model) or _template_problems(model, data)
    if problems:
        raise ConfigError(problems)
    p.data = build_data(p)


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


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def _local_path(name: str | None):
    """The path when `name` means a local path (absolute, ./, ~, or existing), else None (a Hub id)."""
    from pathlib import Path

    if not name:
        return None
    path = Path(name).expanduser()
    return path if path.is_absolute() or name.startswith((".", "~")) or path.exists() else None


def _model_problems(model: dict[str, Any]) -> list[Problem]:
    from alignkit.modeling import TOKENIZER_FILES, adapter_base, has_tokenizer, is_adapter_dir

    where = "model.model_name_or_path"
    path = _local_path(model.get("model_name_or_path"))
    if path is None:
        return []
    fix = "point it at a directory written by save_pretrained (or an SFT output dir), or use a Hub id (org/name)"
    if not path.is_dir():
        return [Problem(where, f"{path.absolute()}: {'not a directory' if path.exists() else 'no such directory'}", fix)]
    problems = []
    if is_adapter_dir(path):
        if not any((path / f).is_file() for f in ADAPTER_FILES):
            problems.append(Problem(where, f"{path} has adapter_config.json but no adapter weights "
                                    f"({' or '.join(ADAPTER_FILES)})", fix))
        try:
            base_dir = _local_path(adapter_base(path))
        except ConfigError as exc:
            problems += exc.problems
        else:
            if base_dir is not None and not (base_dir / "config.json").is_file():
                problems.append(Problem(f"{path}/adapter_config.json", f"its base model {base_dir} is not a model "
                                        "directory", "restore the base model there, or edit base_model_name_or_path"))
    else:
        if not (path / "config.json").is_file():
            problems.append(Problem(where, f"{path} has no config.json: not a saved model", fix))
        if not any((path / f).is_file() for f in WEIGHT_FILES) and not any(path.glob("*.safetensors")):
            problems.append(Problem(where, f"{path} has no model weights (model.safetensors or pytorch_model.bin)",
                                    fix))
    if model.get("tokenizer_name_or_path"):
        tok_key, tok = "model.tokenizer_name_or_path", _local_path(model["tokenizer_name_or_path"])
    else:
        tok_key, tok = where, path
    if tok is not None and not tok.is_dir():
        problems.append(Problem(tok_key, f"{tok}: no such directory", "give a tokenizer directory or a Hub id"))
    elif tok is not None and not has_tokenizer(tok):
        problems.append(Problem(tok_key, f"{tok} has no tokenizer ({', '.join(TOKENIZER_FILES)})",
                                "save the tokenizer there (tokenizer.save_pretrained) or set "
                                "model.tokenizer_name_or_path"))
    return problems


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
