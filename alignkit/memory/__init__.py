"""The memory planner behind `alignkit plan`: per-GPU memory of a run before it starts, and the change that
makes it fit. Nothing here imports torch or loads a model.

One job per module:

* ``catalogue`` — the shapes of known hub models and the sizes ``--model 7b`` stands for
* ``arch`` — :class:`Arch` (a model's shapes, parameter counts) and where shapes come from: a size, a
  ``config.json``, an adapter's base, the catalogue, the Hugging Face cache
* ``setup`` — :class:`Setup`, what the estimate depends on, read from a resolved run
* ``estimate`` — the bytes per GPU, by component (the module docstring says what is counted and how)
* ``hardware`` — the memory one process may use (nvidia-smi, host RAM, --gpu-mem-gb)
* ``suggest`` — the search for changes that make a run fit
* ``planner`` — :func:`plan_memory`: resolve, estimate, suggest; the run is resolved by a function the caller
  passes (alignkit.commands.plan.resolve_run), so this package imports only alignkit's ground floor and config

Imports: alignkit.errors and alignkit.config only (a test keeps it so).
"""

from alignkit.memory.arch import Arch, arch_from_config, resolve_arch
from alignkit.memory.catalogue import KNOWN_MODELS, SIZES
from alignkit.memory.estimate import GIB, Estimate, activation_bytes, estimate, logits_bytes, lora_trainable
from alignkit.memory.hardware import detect_gpu_memory_gib, host_memory_gib, memory_budget
from alignkit.memory.planner import (EXIT_DOES_NOT_FIT, MemoryPlan, PlanRequest, ProfileFacts, Resolve, Resolved,
                                     plan_memory, reference_kind)
from alignkit.memory.setup import Setup, setup_from_plan
from alignkit.memory.suggest import Suggestion, suggestions

__all__ = [
    "Arch", "arch_from_config", "resolve_arch", "KNOWN_MODELS", "SIZES", "GIB", "Estimate", "activation_bytes",
    "estimate", "logits_bytes", "lora_trainable", "detect_gpu_memory_gib", "host_memory_gib", "memory_budget",
    "EXIT_DOES_NOT_FIT", "MemoryPlan", "PlanRequest", "ProfileFacts", "Resolve", "Resolved", "plan_memory",
    "reference_kind", "Setup", "setup_from_plan", "Suggestion", "suggestions",
]
