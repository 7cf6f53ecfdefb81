"""How long work reports progress: a ``Reporter`` (no-op by default) and a rich one with throughput."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator


@contextlib.contextmanager
def quiet_hf(datasets_too: bool = False) -> Iterator[None]:
    """No tqdm bars from transformers (weight loading) or datasets (saving) inside our own bars."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    ds_was = None
    if datasets_too:
        import datasets

        ds_was = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()
        if ds_was:
            import datasets

            datasets.enable_progress_bars()


class Reporter:
    """The interface: ``start`` a task, ``advance`` it (items done, tokens produced), ``finish`` it."""

    def start(self, label: str, total: int, done: int = 0, unit: str = "completions") -> None:
        pass

    def advance(self, n: int = 1, tokens: int = 0) -> None:
        pass

    def reset_clock(self) -> None:
        """Measure throughput from now (after a model has loaded)."""

    def finish(self) -> None:
        pass

    def note(self, text: str) -> None:
        pass


class RichReporter(Reporter):
    """One rich progress bar per task, with items/s and tokens/s measured over this run."""

    def __init__(self, console=None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.progress import TimeRemainingColumn

        from alignkit import ui

        self.console = console or ui.err_console()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._task: Any = None
        self._t0 = 0.0
        self._n = 0
        self._tokens = 0
        self._unit = ""

    def __enter__(self) -> "RichReporter":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start(self, label: str, total: int, done: int = 0, unit: str = "completions") -> None:
        from rich.markup import escape

        self._task = self.progress.add_task(escape(label), total=total, completed=done, rate="")
        self._t0 = time.monotonic()
        self._n = 0
        self._tokens = 0
        self._unit = unit

    def reset_clock(self) -> None:
        self._t0 = time.monotonic()
        self._n = 0
        self._tokens = 0

    def advance(self, n: int = 1, tokens: int = 0) -> None:
        if self._task is None:
            return
        self._n += n
        self._tokens += tokens
        dt = max(time.monotonic() - self._t0, 1e-6)
        rate = f"{self._n / dt:.2f} {self._unit}/s"
        if self._tokens:
            rate += f" · {self._tokens / dt:.0f} tok/s"
        self.progress.update(self._task, advance=n, rate=rate)

    def finish(self) -> None:
        self._task = None

    def note(self, text: str) -> None:
        from rich.markup import escape

        from alignkit.secrets import redact

        self.progress.console.print(escape(redact(text)))
