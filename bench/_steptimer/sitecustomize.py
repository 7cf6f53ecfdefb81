"""Benchmark harness only (bench/bench_overhead.py puts this directory first on PYTHONPATH): when
ALIGNKIT_BENCH_STEP_LOG names a directory, time every `transformers.Trainer.training_step` (forward + backward
of one micro-batch) of this process and write the durations to <dir>/<pid>.json at exit.

The same patch goes into the alignkit child and the plain TRL script, so their per-step times compare like for
like; a median over thousands of steps is steadier on a shared machine than one total.
"""

import os

_LOG = os.environ.get("ALIGNKIT_BENCH_STEP_LOG")

if _LOG:
    import atexit
    import importlib.abc
    import importlib.util
    import json
    import sys
    import time

    _times: list[float] = []

    def _patch(module) -> None:
        trainer_cls = module.Trainer
        original = trainer_cls.training_step

        def training_step(self, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                _times.append(time.perf_counter() - t0)

        trainer_cls.training_step = training_step

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "transformers.trainer":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module

            def exec_and_patch(module):
                exec_module(module)
                _patch(module)

            spec.loader.exec_module = exec_and_patch
            return spec

    sys.meta_path.insert(0, _Finder())

    @atexit.register
    def _write() -> None:
        if _times:
            os.makedirs(_LOG, exist_ok=True)
            with open(os.path.join(_LOG, f"{os.getpid()}.json"), "w") as fh:
                json.dump(_times, fh)
