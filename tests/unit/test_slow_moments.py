"""The test-only timing patches (tests/spawn_guard/slow_moments.py) reach their targets in a process the tests
start, and only when asked for: the fault tests rely on them to land a signal at one exact moment."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import cli_env

PROBE = """
import transformers.trainer_callback as tc, alignkit.train.checkpoints as ck, alignkit.train.common as cm
print(tc.CallbackHandler.on_step_begin.__name__, ck.mark_complete.__name__, cm.write_status.__name__)
"""


def _run(code: str, extra: dict[str, str]) -> list[str]:
    p = subprocess.run([sys.executable, "-c", code], env=cli_env(env_extra=extra), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def test_each_moment_patches_its_target_after_import():
    slow = {"ALIGNKIT_TEST_SLOW_STEP": "0", "ALIGNKIT_TEST_SLOW_SAVE": "0", "ALIGNKIT_TEST_SLOW_EXIT": "0"}
    assert _run(PROBE, slow) == ["slow_on_step_begin", "slow_mark_complete", "write_status_then_wait"]


def test_nothing_is_loaded_without_the_variables():
    code = "import sys; print(hasattr(sys, '_alignkit_slow_moments'), any(type(f).__name__ == '_Finder' for f in sys.meta_path))"
    assert _run(code, {}) == ["False", "False"]
    assert _run(code, {"ALIGNKIT_TEST_SLOW_STEP": "0"}) == ["True", "True"]
