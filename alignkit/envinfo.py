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
    try:
        import torch

        info["cuda"] = torch.version.cuda
        info["cuda_available"] = torch.cuda.is_available()
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["bf16_supported"] = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except Exception as exc:  # noqa: BLE001 - an env report must not fail
        info["cuda"] = f"unavailable ({type(exc).__name__})"
    info["accelerate_default_config"] = _accelerate_default()
    info["hub_token_set"] = bool(os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"))
    info["offline"] = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True")
    return info


def _accelerate_default() -> str | None:
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    path = home / "accelerate" / "default_config.yaml"
    return path.read_text() if path.exists() else None
