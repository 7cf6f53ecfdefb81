"""Test-only guard, on PYTHONPATH for every Python process the tests start (tests/helpers.py,
tests/conftest.py): while ``$ALIGNKIT_TESTS_NO_TRAINING`` names a log file, a process that tries to start
training (``accelerate launch``, ``python -m alignkit.train.*``) writes the command to that file and gets
an error instead. tests/conftest.py then fails the test that did it: a test that trains must be marked
e2e, so `make test-fast` (-m "not e2e and not slurm") trains nothing. Without the variable: nothing.
Not part of alignkit: production code has no test hooks for this.

It also loads slow_moments.py (this folder) when an ALIGNKIT_TEST_SLOW_* variable is set: the timing hooks of
the tests that signal or kill a run at one exact moment.
"""

from __future__ import annotations

import os
import shlex
import sys

GUARD_VAR = "ALIGNKIT_TESTS_NO_TRAINING"
_EVENTS = {"subprocess.Popen": 1, "os.exec": 1, "os.posix_spawn": 1, "os.spawn": 2}


def training_command(argv) -> str | None:
    """The command line when ``argv`` starts training, else None."""
    if isinstance(argv, (str, bytes)):
        text = os.fsdecode(argv)
        try:
            tokens = shlex.split(text)
        except ValueError:
            tokens = text.split()
    else:
        try:
            tokens = [os.fsdecode(a) for a in argv]
        except TypeError:
            return None
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        base = os.path.basename(tok)
        if nxt == "launch" and (base == "accelerate" or tok.startswith("accelerate.commands")):
            return " ".join(tokens)
        if tok == "-m" and (nxt == "alignkit.train" or nxt.startswith("alignkit.train.")):
            return " ".join(tokens)
        if tok.replace(os.sep, "/").endswith(("alignkit/train/sft.py", "alignkit/train/dpo.py")):
            return " ".join(tokens)
    return None


def _hook(event: str, args) -> None:
    index = _EVENTS.get(event)
    log = os.environ.get(GUARD_VAR)
    if index is None or not log or len(args) <= index:
        return
    command = training_command(args[index])
    if command is None:
        return
    try:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"pid {os.getpid()}: {command}\n")
    except OSError:
        pass
    raise RuntimeError(f"tests: training refused in a test not marked e2e ({GUARD_VAR} is set): {command}")


def install() -> None:
    if not getattr(sys, "_alignkit_training_guard", False):
        sys._alignkit_training_guard = True
        sys.addaudithook(_hook)


if os.environ.get(GUARD_VAR):
    install()

# the timing hooks of the tests that signal or kill a run at one moment (slow_moments.py), when asked for
if any(os.environ.get(v) for v in ("ALIGNKIT_TEST_SLOW_SAVE", "ALIGNKIT_TEST_SLOW_STEP", "ALIGNKIT_TEST_SLOW_EXIT")):
    import importlib.util

    _spec = importlib.util.spec_from_file_location("_alignkit_slow_moments",
                                                   os.path.join(os.path.dirname(__file__), "slow_moments.py"))
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    _module.install()
