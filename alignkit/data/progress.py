"""Progress bars for the data pipeline (loading, validating, templating, hashing): rich bars on a
console, or nothing at all without one. rich is imported only when there is a console."""

from __future__ import annotations


class _NullTask:
    def advance(self, n: int = 1) -> None:
        pass


class _Task:
    def __init__(self, progress, task_id):
        self._p, self._id = progress, task_id

    def advance(self, n: int = 1) -> None:
        self._p.advance(self._id, n)


class Progress:
    """Rich progress bars (loading, validating, templating, hashing), or nothing without a console."""

    def __init__(self, console=None):
        self._console = console
        self._progress = None

    def __enter__(self) -> "Progress":
        if self._console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress
            from rich.progress import TextColumn, TimeElapsedColumn

            self._progress = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def task(self, description: str, total: int | None) -> _Task | _NullTask:
        if self._progress is None:
            return _NullTask()
        return _Task(self._progress, self._progress.add_task(description, total=total))


def progress_for(console) -> Progress:
    return Progress(console)
