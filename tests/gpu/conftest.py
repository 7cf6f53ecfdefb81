"""CUDA tests: marked `cuda`, skipped with the reason where no CUDA GPU is visible, run where one is.

They need a CUDA build of torch, not torch 2.13 exactly (a GPU box brings its own; see docs/gpu.md), and
are what scripts/gpu-check.sh runs first.
"""

from __future__ import annotations

import functools

import pytest


@functools.lru_cache(maxsize=1)
def cuda_reason() -> str | None:
    """None when a CUDA GPU is visible, else why the CUDA tests cannot run here."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        return f"torch cannot be imported: {exc}"
    if not torch.cuda.is_available():
        built = torch.version.cuda
        return (f"no CUDA GPU visible (torch {torch.__version__}, "
                f"{'built for CUDA ' + built if built else 'a CPU-only build'})")
    return None


def pytest_collection_modifyitems(config, items):
    reason = cuda_reason()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(pytest.mark.skip(reason=f"needs a CUDA GPU: {reason}"), append=False)
