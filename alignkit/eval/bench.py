"""The steps MT-Bench and AlpacaEval share: answer what is missing, judge what is missing, and refuse
a run in which no judgment could be scored.

Both keep their answers and judgments in ``JsonlLog`` files, so each step asks only for what the
log lacks: an interrupted run resumes without paying twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Hashable, Iterable

from alignkit.errors import Problem, RuntimeFailure, UsageError
from alignkit.eval.judge import ChatClient, ChatResponse, JsonlLog


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


def ask_missing(
    client: ChatClient,
    log: JsonlLog,
    items: Iterable[Any],
    *,
    key: Callable[[Any], Hashable],
    request: Callable[[Any], dict[str, Any]],
    record: Callable[[Any, ChatResponse], dict],
    on_progress: Callable[[], None] | None = None,
) -> int:
    """Send ``request(item)`` to ``client`` for every item whose ``key(item)`` is not in ``log``;
    ``record(item, response)`` is appended to ``log`` as each answer arrives. Returns the number of answers."""
    jobs = [(item, request(item)) for item in items if key(item) not in log]
    return client.run(jobs, lambda item, resp: log.append(record(item, resp)), on_progress=on_progress)


def unscorable(bench: str, judge: ChatClient, path: Path, *, unreadable: str, seen: str, fix: str, options: str) -> RuntimeFailure:
    """The error for a run in which no judgment gave anything the benchmark's parser can read.

    ``unreadable`` says what was missing from every judgment, ``seen`` (may be empty) what came
    instead, ``fix`` what would help, ``options`` which options make a re-run reuse the judgments
    kept in ``path`` (it would not ask again).
    """
    return RuntimeFailure(
        Problem(
            where=f"judge {judge.model!r} at {judge.endpoint}",
            message=f"{unreadable}; the raw judgments are in {path}" + (f" ({seen})" if seen else ""),
            fix=f"{fix}; the judgments stay in {path} and a re-run with the same {options} reuses them: "
            "delete that file to judge again",
        ),
        title=f"{bench} could not be scored",
    )
