"""The offline evaluations' plumbing: the held-out rows ``alignkit eval prefs``/``loss`` score
(``alignkit.eval.prefs`` computes the metrics), and a run of lm-evaluation-harness (``eval lm-eval``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from alignkit.errors import DataError, Problem, UsageError


def default_output(model: str, name: str) -> Path:
    """``MODEL/eval/<name>`` for a model directory, else ``eval/<name>``."""
    return Path(model) / "eval" / name if Path(model).is_dir() else Path("eval") / name


def held_out_rows(
    task: str, data: Optional[Path], recipe: Optional[str], config: Optional[list[Path]], limit: Optional[int]
) -> tuple[list[dict], str, Any]:
    """Rows from ``--data`` (a local file), or the test split of a recipe/config's data mixture.

    Returns (rows, where they came from, the resolved config or None).
    """
    if data is not None and (recipe or config):
        raise UsageError(Problem(where="--data", message="goes without --recipe/--config", fix="give one or the other"))
    if data is not None:
        from alignkit.eval.sources import read_records

        if not data.is_file():
            raise DataError(Problem(where="--data", message=f"no such file: {data}", fix="give a local .json or .jsonl file"))
        rows = read_records(data, option="--data")
        return (rows[:limit] if limit else rows), str(data), None
    if not recipe and not config:
        raise UsageError(
            Problem(
                where=f"alignkit eval {'prefs' if task in ('dpo', 'orpo') else 'loss'}",
                message="no data given",
                fix="pass --data FILE.jsonl, or --recipe NAME / --config FILE.yaml to use the run's test split",
            )
        )
    from alignkit.config.resolve import resolve_config
    from alignkit.data.mixer import load_mixture

    cfg = resolve_config(task, recipe=recipe, config_files=[str(c) for c in config or []]).config
    splits = load_mixture(cfg.data, task)
    if "test" not in splits or len(splits["test"]) == 0:
        raise DataError(
            Problem(
                where=f"{recipe or ', '.join(map(str, config or []))}: data",
                message="the data mixture has no test split",
                fix="add a test source (split name containing 'test') or test_split_size, or pass --data",
            )
        )
    test = splits["test"]
    if limit:
        test = test.select(range(min(limit, len(test))))
    return test.to_list(), f"{recipe or config} (test split)", cfg


def run_lm_eval(
    model: str,
    tasks: str,
    *,
    include_path: Optional[Path],
    num_fewshot: Optional[int],
    batch_size: int,
    limit: Optional[int],
    apply_chat_template: bool,
    device: Optional[str],
    trust_remote_code: bool,
) -> dict[str, Any]:
    """lm-evaluation-harness on a local model: the result (``benchmark``, ``tasks``, numeric ``results`` per task)."""
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise UsageError(
            Problem(where="alignkit eval lm-eval", message="lm-evaluation-harness is not installed", fix="pip install 'alignkit[eval]'")
        ) from None
    if not Path(model).is_dir():
        raise UsageError(Problem(where="--model", message=f"{model}: not a local model directory"))
    if include_path is not None and not include_path.is_dir():
        raise UsageError(Problem(where="--include-path", message=f"{include_path}: not a directory"))
    task_list = [t.strip() for t in tasks.split(",") if t.strip()]
    if not task_list:
        raise UsageError(Problem(where="--tasks", message="no task given"))
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    from alignkit.modeling import adapter_base, is_adapter_dir

    margs = f"pretrained={model},trust_remote_code={trust_remote_code}"
    if is_adapter_dir(model):
        margs = f"pretrained={adapter_base(model)},peft={model},trust_remote_code={trust_remote_code}"
    tm = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [t for t in task_list if t not in tm.all_tasks]
    if unknown:
        raise UsageError(
            Problem(where="--tasks", message=f"unknown task(s): {', '.join(unknown)}", fix="check the name, or pass --include-path with the task YAMLs")
        )
    res = lm_eval.simple_evaluate(
        model="hf",
        model_args=margs,
        tasks=task_list,
        num_fewshot=num_fewshot,
        batch_size=batch_size,
        device=device,
        limit=limit,
        task_manager=tm,
        apply_chat_template=apply_chat_template,
    )
    if res is None:
        raise UsageError(Problem(where="alignkit eval lm-eval", message="lm-eval returned no results"))
    metrics = {
        task: {k: v for k, v in vals.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for task, vals in res.get("results", {}).items()
    }
    return {"benchmark": "lm-eval", "model_path": model, "tasks": task_list, "results": metrics}
