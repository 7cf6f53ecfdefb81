"""What a bug report needs and a run records (env.json), and nothing secret: versions, platform, GPUs.

Below the training processes (train/ writes env.json with it) and the CLI (`alignkit env` renders it).
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from alignkit import __version__

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "deepspeed", "datasets", "bitsandbytes",
            "flash-attn", "liger-kernel", "typer", "rich", "pydantic")


def collect() -> dict[str, Any]:
    info: dict[str, Any] = {
        "alignkit": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": {},
    }
    for pkg in PACKAGES:
        try:
            info["packages"][pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info["packages"][pkg] = None
    if "torch" in sys.modules:  # a training process: ask torch itself (importing it here would cost seconds)
        try:
            import torch

            info["cuda"] = torch.version.cuda
            info["cuda_available"] = torch.cuda.is_available()
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            info["bf16_supported"] = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        except Exception as exc:  # noqa: BLE001 - an env report must not fail
            info["cuda"] = f"unavailable ({type(exc).__name__})"
    else:
        info.update(gpu_info(info["packages"].get("torch")))
    info["accelerate_default_config"] = _accelerate_default()
    info["hub_token_set"] = bool(os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"))
    info["offline"] = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
    return info


def gpu_info(torch_version: str | None) -> dict[str, Any]:
    """CUDA build, visible GPUs and bf16 support without importing torch (`alignkit env` answers in under a
    second instead of seconds): the CUDA version from torch's build tag (2.13.0+cpu, +cu128) or its CUDA
    runtime package, and nvidia-smi for the GPUs (names, compute capability: bf16 from 8.0, Ampere), limited
    to CUDA_VISIBLE_DEVICES. A CPU build of torch sees no GPU, whatever nvidia-smi says."""
    import re
    import shutil
    import subprocess

    cuda: str | None = None
    local = (torch_version or "").partition("+")[2]
    if local.startswith("cu") and local[2:].isdigit():
        cuda = f"{local[2:-1]}.{local[-1]}"
    elif torch_version and not local:
        for pkg in ("nvidia-cuda-runtime-cu13", "nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime"):
            try:
                cuda = ".".join(metadata.version(pkg).split(".")[:2])
                break
            except metadata.PackageNotFoundError:
                continue
    gpus: list[str] = []
    caps: list[float] = []
    smi = shutil.which("nvidia-smi")
    if cuda is not None and smi:
        try:
            out = subprocess.run([smi, "--query-gpu=index,name,compute_cap", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        wanted = None if visible is None else [v.strip() for v in visible.split(",") if v.strip()]
        for line in out.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) < 3 or (wanted is not None and parts[0] not in wanted):
                continue
            gpus.append(parts[1])
            m = re.match(r"\d+(\.\d+)?", parts[2])
            caps.append(float(m.group(0)) if m else 0.0)
    return {"cuda": cuda, "cuda_available": bool(gpus), "gpus": gpus,
            "bf16_supported": bool(caps) and min(caps) >= 8.0}


def _accelerate_default() -> str | None:
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    path = home / "accelerate" / "default_config.yaml"
    return path.read_text() if path.exists() else None
