"""What the machine can honour, asked in the launching process before anything starts: GPUs and their compute
capability (nvidia-smi, no torch), flash-attn installed (find_spec, no import), the loggers of report_to.

A CPU profile rewrites the GPU-only settings when the config is resolved (config/resolve.py); here the other
profiles' runs are checked: a real run the machine cannot honour is refused naming the key and the fix, a dry
run (a plan for the target machine) says in a note what needs a GPU.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess

from alignkit.errors import Problem
from alignkit.launch.build import detect_gpus
from alignkit.launch.spec import LaunchPlan

AMPERE = 8.0

# report_to name -> the modules that make it work (any one of them), and what to install
LOGGERS: dict[str, tuple[tuple[str, ...], str]] = {
    "wandb": (("wandb",), "wandb"),
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
    "mlflow": (("mlflow",), "mlflow"),
    "comet_ml": (("comet_ml",), "comet_ml"),
    "neptune": (("neptune",), "neptune"),
    "clearml": (("clearml",), "clearml"),
    "dvclive": (("dvclive",), "dvclive"),
    "codecarbon": (("codecarbon",), "codecarbon"),
    "trackio": (("trackio",), "trackio"),
    "dagshub": (("dagshub",), "dagshub"),
    "azure_ml": (("azureml",), "azureml-sdk"),
    "flyte": (("flytekit",), "flytekit"),
    "swanlab": (("swanlab",), "swanlab"),
}


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def flash_attn_installed() -> bool:
    return installed("flash_attn")


def compute_capabilities() -> list[float]:
    """Compute capability of each visible GPU (nvidia-smi; empty when none or unknown)."""
    if detect_gpus() == 0:
        return []
    smi = shutil.which("nvidia-smi")
    try:
        out = subprocess.run([smi or "nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    caps = []
    for line in out.splitlines():
        try:
            caps.append(float(line.strip()))
        except ValueError:
            continue
    return caps


def logger_problems(report_to) -> list[Problem]:
    """A logger of train.report_to whose package is not installed: the trainer would fail at its first step."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    problems = []
    for name in names:
        if name in LOGGERS and not any(installed(m) for m in LOGGERS[name][0]):
            others = [n for n in ("tensorboard", "wandb") if n != name and any(installed(m) for m in LOGGERS[n][0])]
            alt = ", ".join(f"--report_to={n}" for n in [*others, "none"])
            problems.append(Problem("train.report_to", f"{name} is not installed (report_to: {name})",
                                    f"pip install {LOGGERS[name][1]}, or {alt}"))
    return problems


def gpu_settings(p: LaunchPlan) -> list[tuple[str, str, str]]:
    """The run's settings that need a GPU: (key, what it needs, the fix)."""
    cfg = p.config
    out = []
    if getattr(cfg.train, "bf16", None) is True:
        out.append(("train.bf16", "an Ampere or newer GPU",
                    "run on an Ampere or newer GPU, --bf16=false --fp16=true on an older GPU, or --profile "
                    f"{p.profile},cpu"))
    if getattr(cfg.train, "fp16", None) is True:
        out.append(("train.fp16", "a GPU", f"run on a GPU machine, or --profile {p.profile},cpu"))
    if getattr(cfg.train, "tf32", None) is True:
        out.append(("train.tf32", "an Ampere or newer GPU", "--tf32=false (or null), or run on an Ampere or newer GPU"))
    attn = cfg.model.attn_implementation
    if isinstance(attn, str) and attn.startswith("flash"):
        out.append(("model.attn_implementation", "flash-attn installed and a CUDA GPU",
                    "pip install flash-attn (on the GPU machine), or --attn_implementation=sdpa"))
    return out


def hardware_check(p: LaunchPlan, *, dry_run: bool, profile_cpu: bool) -> tuple[list[Problem], list[str]]:
    """(problems that refuse a real run, notes for a plan). Nothing is imported or started."""
    if profile_cpu:
        return [], []
    needs = gpu_settings(p)
    gpus = detect_gpus()
    if dry_run:
        if gpus == 0 and needs:
            return [], ["needs a GPU on the target machine (none here): " +
                        "; ".join(f"{k} ({what})" for k, what, _ in needs)]
        notes = []
        if any(k == "model.attn_implementation" for k, _, _ in needs) and not flash_attn_installed():
            notes.append("model.attn_implementation needs flash-attn, which is not installed here")
        return [], notes
    if gpus == 0:
        return [Problem("--profile", f"{p.profile_label} needs GPUs and none is visible",
                        f"run on a GPU machine, add the cpu modifier (--profile {p.profile},cpu), or add --dry-run "
                        "to only see the plan")], []
    caps = compute_capabilities()
    old = bool(caps) and min(caps) < AMPERE
    problems = []
    for key, what, fix in needs:
        if key in ("train.bf16", "train.tf32") and old:
            problems.append(Problem(key, f"needs {what}; this machine's GPU has compute capability {min(caps):g}",
                                    fix))
        elif key == "model.attn_implementation" and not flash_attn_installed():
            problems.append(Problem(key, f"needs {what}; flash-attn is not installed", fix))
    return problems, []
