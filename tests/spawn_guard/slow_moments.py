"""Test-only: hold a training process at one exact moment, so that a test's signal or SIGKILL lands there (a
tiny run's steps take milliseconds). Loaded by this folder's sitecustomize.py in every Python process the tests
start, and only when one of the variables is set; alignkit itself has no test hooks.

    ALIGNKIT_TEST_SLOW_SAVE=SECONDS  after the Trainer wrote a checkpoint, before alignkit marks it complete
                                     (alignkit.train.checkpoints' `mark_complete` is called late)
    ALIGNKIT_TEST_SLOW_STEP=SECONDS  at the start of every optimizer step (transformers' CallbackHandler)
    ALIGNKIT_TEST_SLOW_EXIT=SECONDS  after the run's status is written "completed" (alignkit.train.common's
                                     `write_status`), before its processes end

Nothing heavy is imported at start-up: each patch is applied right after its module first runs (a finder on
sys.meta_path wraps that module's loader). A patch whose target has gone (renamed in alignkit) raises there, so
the test that relies on it fails instead of silently timing nothing.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
import time

VARS = ("ALIGNKIT_TEST_SLOW_SAVE", "ALIGNKIT_TEST_SLOW_STEP", "ALIGNKIT_TEST_SLOW_EXIT")


def _seconds(var: str) -> float:
    return float(os.environ[var])


def _late_marks(module) -> None:  # ALIGNKIT_TEST_SLOW_SAVE
    mark_complete = module.mark_complete

    def slow_mark_complete(*args, **kwargs):
        time.sleep(_seconds("ALIGNKIT_TEST_SLOW_SAVE"))
        return mark_complete(*args, **kwargs)

    module.mark_complete = slow_mark_complete


def _slow_steps(module) -> None:  # ALIGNKIT_TEST_SLOW_STEP
    handler = module.CallbackHandler
    on_step_begin = handler.on_step_begin

    def slow_on_step_begin(self, *args, **kwargs):
        time.sleep(_seconds("ALIGNKIT_TEST_SLOW_STEP"))
        return on_step_begin(self, *args, **kwargs)

    handler.on_step_begin = slow_on_step_begin


def _late_exit(module) -> None:  # ALIGNKIT_TEST_SLOW_EXIT
    write_status = module.write_status

    def write_status_then_wait(run, state, *args, **kwargs):
        out = write_status(run, state, *args, **kwargs)
        if state == "completed":
            time.sleep(_seconds("ALIGNKIT_TEST_SLOW_EXIT"))
        return out

    module.write_status = write_status_then_wait


PATCHES = {
    "ALIGNKIT_TEST_SLOW_SAVE": ("alignkit.train.checkpoints", _late_marks),
    "ALIGNKIT_TEST_SLOW_STEP": ("transformers.trainer_callback", _slow_steps),
    "ALIGNKIT_TEST_SLOW_EXIT": ("alignkit.train.common", _late_exit),
}


class _PatchAfterExec(importlib.abc.Loader):
    def __init__(self, loader, patch) -> None:
        self._loader, self._patch = loader, patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._patch(module)

    def __getattr__(self, name):  # get_source, get_code, ...: the real loader's
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, patches: dict) -> None:
        self._patches = patches  # module name -> patch

    def find_spec(self, name, path, target=None):
        patch = self._patches.get(name)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchAfterExec(spec.loader, patch)
                return spec
        return None


def install() -> None:
    wanted = {PATCHES[v][0]: PATCHES[v][1] for v in VARS if os.environ.get(v)}
    if not wanted or getattr(sys, "_alignkit_slow_moments", False):
        return
    sys._alignkit_slow_moments = True
    for name in [n for n in wanted if n in sys.modules]:  # already imported: patch it now
        wanted.pop(name)(sys.modules[name])
    sys.meta_path.insert(0, _Finder(wanted))
