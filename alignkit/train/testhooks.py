"""Test hooks, and the only ones in production code: tests/robustness/test_faults.py needs a signal or a kill
to land at one exact moment of a tiny run (whose steps take milliseconds). No effect unless the variable is set.

    ALIGNKIT_TEST_SLOW_SAVE=SECONDS  sleep after the Trainer wrote a checkpoint and before it is marked complete
                                     (a test SIGKILLs a run while a checkpoint is being written)
    ALIGNKIT_TEST_SLOW_STEP=SECONDS  sleep at the start of every optimizer step (a signal lands during a step)
    ALIGNKIT_TEST_SLOW_EXIT=SECONDS  sleep after the run is saved and marked completed (a signal lands between
                                     the end of the run and the end of its processes)

They stay here rather than in a sitecustomize the tests put on PYTHONPATH because the moments they mark are
inside TRL's training loop (between the Trainer's save and alignkit's marker); patching them from outside
would mean importing transformers at interpreter start in every process a test starts.
"""

from __future__ import annotations

import os
import time

SLOW_SAVE = "ALIGNKIT_TEST_SLOW_SAVE"
SLOW_STEP = "ALIGNKIT_TEST_SLOW_STEP"
SLOW_EXIT = "ALIGNKIT_TEST_SLOW_EXIT"


def pause_for_test(variable: str) -> None:
    delay = os.environ.get(variable)
    if delay:
        try:
            time.sleep(float(delay))
        except ValueError:
            pass
