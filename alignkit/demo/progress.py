"""What a training child is doing, read from its output: the Trainer's progress bar and its logged loss.

The demo shows this one line (``step 40/100, loss 1.23``) instead of the child's raw output, so that library
warnings, tracebacks of optional imports and progress-bar fragments stay in the stage's log file. When the
output is not a terminal (CI, ``make demo > log``) the same line is printed every ``interval`` seconds.
"""

from __future__ import annotations

import re
import time

# the Trainer's bar has no description: " 40%|████      | 40/100 [00:33<00:40,  1.45it/s]"
_TRAIN_BAR = re.compile(r"^\s*\d+%\|[^|]*\|\s*(\d+)/(\d+) \[")
# a described bar: "Tokenizing train dataset:  82%|████▏ | 261/320 [..." -> what the child is preparing
_PREP_BAR = re.compile(r"^\s*([A-Z][\w ,()-]{2,60}?):\s+\d+%\|")
_LOSS = re.compile(r"\{'loss': '?([-+0-9.eE]+|nan|inf)'?")
_EVAL_LOSS = re.compile(r"'eval_loss': '?([-+0-9.eE]+|nan|inf)'?")


class StageProgress:
    """Feed it the child's output as it comes (``feed``); ``line()`` says where the stage is."""

    def __init__(self, name: str, *, interval: float = 15.0, clock=time.monotonic) -> None:
        self.name = name
        self.interval = interval
        self.clock = clock
        self.start = clock()
        self.step: int | None = None
        self.total: int | None = None
        self.loss: float | None = None
        self.eval_loss: float | None = None
        self.phase = "starting"
        self._last_printed: float = self.start
        self._last_line: str | None = None

    def feed(self, text: str) -> None:
        for piece in re.split(r"[\r\n]", text):
            m = _TRAIN_BAR.match(piece)
            # the first bar without a description is the training loop's; the evaluation loop's bars look the
            # same but count eval batches (another total): they are not the training step
            if m and (self.total is None or int(m.group(2)) == self.total):
                self.step, self.total = int(m.group(1)), int(m.group(2))
                self.phase = "training"
            m = _PREP_BAR.match(piece)
            if m and self.step is None:
                self.phase = m.group(1).strip().lower()
            m = _LOSS.search(piece)
            if m:
                self.loss = _num(m.group(1))
            m = _EVAL_LOSS.search(piece)
            if m:
                self.eval_loss = _num(m.group(1))

    def status(self) -> str:
        """``step 40/100, loss 1.23`` (or the preparation phase before the first step)."""
        if self.step is None:
            return self.phase
        parts = [f"step {self.step}/{self.total}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.3g}")
        if self.eval_loss is not None:
            parts.append(f"eval loss {self.eval_loss:.3g}")
        return ", ".join(parts)

    def line(self) -> str:
        return f"{self.name}: {self.status()} ({self.clock() - self.start:.0f} s)"

    def due(self) -> str | None:
        """The progress line when ``interval`` seconds have passed since the last one, else None."""
        now = self.clock()
        if now - self._last_printed < self.interval:
            return None
        self._last_printed = now
        return self.line()


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
