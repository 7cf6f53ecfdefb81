"""What MT-Bench and AlpacaEval share: where a run writes, the answering loop, and results.json.

Both keep their answers and judgments in ``JsonlLog`` files (``alignkit.client``), so each step asks
only for what the log lacks: an interrupted run resumes without paying twice. Judging itself (the
judge's client, asking it, the error when nothing could be scored) is in ``alignkit.eval.judge``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Optional

from alignkit.client import JsonlLog, chunks
from alignkit.errors import Problem, UsageError
from alignkit.eval.judge import judge_client
from alignkit.fsutil import write_json_atomic

ANSWERS = "answers.jsonl"


# ---------------------------------------------------------------------------------------------
# where a run writes


def model_id_for(model: str, model_id: str | None) -> str:
    if model_id:
        return model_id
    name = Path(model.rstrip("/")).name
    if not name:
        raise UsageError(Problem(where="--model-id", message="cannot derive a model id", fix="pass --model-id"))
    return name


def default_output(model: str, model_id: str, bench: str) -> Path:
    p = Path(model)
    if p.is_dir():
        return p / "eval" / bench
    # a model id is a name, not a path: "org/model", "../x" or "/abs" must stay one directory under eval/
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", model_id).strip("._") or "model"
    return Path("eval") / bench / safe


def check_output(output: Path, model_id: str) -> None:
    """Refuse to mix two models' answers in one directory by accident."""
    f = output / ANSWERS
    if not f.is_file():
        return
    with open(f, encoding="utf-8") as fh:
        first = fh.readline()
    try:
        rec = json.loads(first) if first.strip() else {}
    except ValueError:
        return
    other = rec.get("model_id") or rec.get("generator")
    if other and other != model_id:
        raise UsageError(
            Problem(
                where=str(f),
                message=f"holds answers of model {other!r}, not {model_id!r}",
                fix="use another --output (or the same --model-id to resume that run)",
            )
        )


def prepare(bench: str, model: str, model_id: Optional[str], output: Optional[Path], answers_only: bool,
            judge_model: str, judge_base_url: str, judge_api_key_env: Optional[str], *, concurrency: int,
            max_retries: int, timeout: float, **generation: Any):
    """What every benchmark command starts with: (model id, output dir (checked), the judge client (none with
    --answers-only), the generator factory). ``generation`` goes to ``make_generator``."""
    mid = model_id_for(model, model_id)
    out = Path(output) if output else default_output(model, mid, bench)
    check_output(out, mid)
    judge = None if answers_only else judge_client(judge_model, judge_base_url, judge_api_key_env,
                                                   concurrency=concurrency, max_retries=max_retries, timeout=timeout)
    factory = generator_factory(model, concurrency=concurrency, timeout=max(timeout, 600.0),
                                max_retries=max_retries, **generation)
    return mid, out, judge, factory


def generator_factory(model: str, **kw: Any) -> Callable[[], Any]:
    """A function that makes the answer generator (a model is loaded only when answers are missing)."""
    if kw.get("backend") == "auto" and not kw.get("base_url") and not Path(model).is_dir():
        raise UsageError(
            Problem(where="--model", message=f"{model}: not a local directory", fix="give a model directory, or --model-base-url for a served model")
        )

    def make():
        from alignkit.eval.generate import make_generator

        return make_generator(model, **kw)

    return make


# ---------------------------------------------------------------------------------------------
# answering


def progress_step(progress, description: str, total: int) -> Callable[[int], None] | None:
    """A bar on ``progress`` (a ``rich.progress.Progress`` or None) and the function that advances it."""
    if not progress:
        return None
    task = progress.add_task(description, total=total)
    return lambda n=1: progress.advance(task, n)


def answer_missing(
    todo: int,
    generator_factory: Callable[[], Any] | None,
    answer: Callable[[Any, Callable[[int], None] | None], Any],
    *,
    missing: str,
    progress=None,
) -> None:
    """Run ``answer(generator, on_progress)`` when ``todo`` items have no answer yet.

    The generator is made only then (loading a model is slow) and always closed. ``missing`` says
    what lacks an answer, for the error when there is no generator ("questions have no answer yet").
    """
    if not todo:
        return
    if generator_factory is None:
        raise UsageError(Problem(where="--model", message=f"{todo} {missing} and no generator is set"))
    advance = progress_step(progress, "answering", todo)
    generator = generator_factory()
    try:
        answer(generator, advance)
    finally:
        generator.close()


def generate_missing(
    items: Iterable[Any],
    generator,
    log: JsonlLog,
    *,
    key: Callable[[Any], Hashable],
    turns: Callable[[Any], list[str]],
    temperature: Callable[[Any], float],
    record: Callable[[Any, list[str], float], dict],
    max_new_tokens: int,
    batch_size: int = 8,
    on_progress: Callable[[int], None] | None = None,
) -> None:
    """Answer every item whose ``key(item)`` is not in ``log``, in batches of items that share a temperature.

    An item's ``turns`` are user messages asked in order in one conversation (turn 2's prompt holds
    turn 1 and the model's own turn-1 answer); ``record(item, answers, temperature)`` is appended to
    ``log`` as soon as its batch is answered.
    """
    by_temp: dict[float, list[Any]] = {}
    for item in items:
        if key(item) not in log:
            by_temp.setdefault(temperature(item), []).append(item)
    for temp, group in by_temp.items():
        for batch in chunks(group, batch_size):
            prompts = [turns(item) for item in batch]
            convs: list[list[dict]] = [[] for _ in batch]
            answers: list[list[str]] = [[] for _ in batch]
            for t in range(max(len(p) for p in prompts)):
                idx = [i for i, p in enumerate(prompts) if len(p) > t]
                for i in idx:
                    convs[i].append({"role": "user", "content": prompts[i][t]})
                outs = generator.generate([list(convs[i]) for i in idx], temperature=temp, max_new_tokens=max_new_tokens)
                for i, text in zip(idx, outs):
                    convs[i].append({"role": "assistant", "content": text})
                    answers[i].append(text)
            for item, texts in zip(batch, answers):
                log.append(record(item, texts, temp))
            if on_progress is not None:
                on_progress(len(batch))


def collect_answers(
    output: Path,
    key: Callable[[dict], tuple],
    ids: list[Any],
    *,
    model_id: str,
    generator_factory: Callable[[], Any] | None,
    answer: Callable[[Any, JsonlLog, Callable[[int], None] | None], Any],
    missing: str,
    progress=None,
) -> dict[Any, dict]:
    """The model's answers kept in ``output/answers.jsonl`` (keyed ``(id, model_id)``), after
    ``answer(generator, log, on_progress)`` has answered the ``ids`` it lacks. Returns id -> record."""
    output.mkdir(parents=True, exist_ok=True)
    log = JsonlLog(output / ANSWERS, key)
    answer_missing(
        sum(1 for i in ids if (i, model_id) not in log),
        generator_factory,
        lambda generator, advance: answer(generator, log, advance),
        missing=missing,
        progress=progress,
    )
    return {i: rec for (i, mid), rec in log.records.items() if mid == model_id}


# ---------------------------------------------------------------------------------------------
# results


def finite_or_none(x: float | None) -> float | None:
    """JSON-safe number: NaN/inf become None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def write_results(path: Path, obj: Any) -> None:
    """A results file (results.json, model_outputs.json): UTF-8 text kept as is, no NaN, written atomically."""
    write_json_atomic(path, obj, ensure_ascii=False, strict=True)

