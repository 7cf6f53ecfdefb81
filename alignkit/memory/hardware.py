"""How much memory one process may use: a GPU's (nvidia-smi, no torch), the host's RAM on the cpu profile,
or what the user said (--gpu-mem-gb)."""

from __future__ import annotations

import os
from pathlib import Path

from alignkit.errors import ConfigError, Problem
from alignkit.memory.estimate import GIB


def host_memory_gib() -> float | None:
    """The machine's RAM (/proc/meminfo, else sysconf), or None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    except (ValueError, OSError, AttributeError):
        return None


def detect_gpu_memory_gib() -> float | None:
    """The smallest visible GPU's memory (nvidia-smi; no torch), or None."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
        values = [float(v) for v in out.split() if v.strip()]
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    return min(values) / 1024 if values else None


def memory_budget(device: str, gpus_per_node: int, gpu_mem_gb: float | None) -> tuple[float, str]:
    """(GiB one process may use, where that number came from) for a run on `device` (cuda | cpu)."""
    if gpu_mem_gb is not None:
        if gpu_mem_gb <= 0:
            raise ConfigError(Problem("--gpu-mem-gb", f"must be positive (got {gpu_mem_gb})",
                                      "pass the memory of one GPU, e.g. --gpu-mem-gb 24 or 80"))
        return float(gpu_mem_gb), "--gpu-mem-gb"
    if device == "cpu":
        ram = host_memory_gib() or 16.0
        return ram / max(1, gpus_per_node), f"host RAM {ram:.1f} GiB shared by {gpus_per_node} process(es)"
    found = detect_gpu_memory_gib()
    if found:
        return found, "nvidia-smi (smallest visible GPU)"
    return 80.0, "assumed 80 GiB (A100/H100 80GB); pass --gpu-mem-gb to plan for other GPUs"

