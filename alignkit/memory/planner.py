"""The memory plan of one run: resolve it, read its model's shapes, estimate, and (when it does not fit)
search for the changes that would make it fit.

Resolving a run (recipe + profile + config files + overrides -> a launch plan) is alignkit.launch's job, a
layer this package does not import: the caller passes a ``resolve`` function (:data:`Resolve`) that turns
a :class:`PlanRequest` into a :class:`Resolved` — the launch plan `alignkit sft|dpo --dry-run` prints and
the facts of its profile stack. ``alignkit plan`` passes alignkit.commands.plan.resolve_run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from alignkit.errors import ConfigError, Problem
from alignkit.memory.arch import Arch, resolve_arch
from alignkit.memory.estimate import GIB, Estimate, estimate, round_gib
from alignkit.memory.hardware import memory_budget
from alignkit.memory.setup import Setup, setup_from_plan
from alignkit.memory.suggest import Suggestion, suggestions

EXIT_DOES_NOT_FIT = 3  # `alignkit plan`: the estimate exceeds the memory (0: fits, 2: bad input)


@dataclass
class PlanRequest:
    """What `alignkit plan` was asked (kept to re-plan alternatives: another profile, more GPUs)."""

    task: str
    recipe: str | None = None
    profile: str | None = None
    config_files: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    num_gpus: int | None = None
    num_nodes: int | None = None
    model: str | None = None
    gpu_mem_gb: float | None = None


@dataclass(frozen=True)
class ProfileFacts:
    """What the planner needs to know of the run's profile stack (alignkit.config.profiles.ProfileStack)."""

    adaptation: str  # full | lora | qlora: what the stack chooses
    cpu: bool  # the stack runs on CPU
    modifiers: tuple[str, ...] = ()  # modifier profiles in the stack (e.g. cpu), kept when the adaptation changes


@dataclass(frozen=True)
class Resolved:
    """A request resolved like `alignkit sft|dpo --dry-run`: the launch plan and its profile stack's facts."""

    launch: Any  # alignkit.launch.spec.LaunchPlan (read by its attributes)
    profile: ProfileFacts


#: turns a request into the resolved run; raises ConfigError on bad input
Resolve = Callable[[PlanRequest], Resolved]


@dataclass
class MemoryPlan:
    launch: Any  # LaunchPlan
    profile: ProfileFacts
    setup: Setup
    estimate: Estimate
    mem_gib: float
    mem_source: str
    notes: list[str] = field(default_factory=list)
    suggestions: list[Suggestion] = field(default_factory=list)

    @property
    def total_gib(self) -> float:
        return self.estimate.total / GIB

    @property
    def fits(self) -> bool:
        return self.total_gib <= self.mem_gib

    @property
    def unit(self) -> str:
        return "process (host RAM)" if self.setup.device == "cpu" else "GPU"

    def to_json(self) -> dict[str, Any]:
        s, e, a = self.setup, self.estimate, self.setup.arch
        return {
            "task": self.launch.task,
            "recipe": self.launch.config.recipe,
            "profile": self.launch.profile,
            "device": s.device,
            "model": {"name": a.name, "source": a.source, "params": e.total_params,
                      "trainable_params": e.trainable_params, "active_params": a.active_params,
                      "arch": {k: v for k, v in asdict(a).items() if k not in ("name", "source")}},
            "world_size": s.world_size,
            "num_nodes": self.launch.num_nodes,
            "gpus_per_node": self.launch.gpus_per_node,
            "memory_per_device_gib": round(self.mem_gib, 2),
            "memory_source": self.mem_source,
            "settings": {
                "adaptation": s.adaptation,
                "quantization_bits": s.quant_bits,
                "dtype_bytes": s.dtype_bytes,
                "zero_stage": s.zero_stage,
                "offload_optimizer": s.offload_optimizer,
                "offload_params": s.offload_params,
                "per_device_train_batch_size": s.micro_batch,
                "gradient_accumulation_steps": s.grad_accum,
                "global_batch_size": s.global_batch,
                "max_length": s.max_length,
                "rows_per_forward": s.rows,
                "tokens_per_micro_batch": s.tokens,
                "padded": s.padded,
                "activation_checkpointing": s.activation_checkpointing,
                "optim": s.optim,
                "attn_implementation": s.attn,
                "reference_model": reference_kind(s),
            },
            "breakdown_gib": e.breakdown_gib(),
            "activations_gib": {"with_checkpointing": round_gib(e.activations_with_checkpointing),
                                "without_checkpointing": round_gib(e.activations_without_checkpointing)},
            "total_gib": round(self.total_gib, 2),
            "fits": self.fits,
            "headroom_gib": round(self.mem_gib - self.total_gib, 2),
            "suggestions": [x.to_json() for x in self.suggestions],
            "notes": self.notes,
        }


def reference_kind(s: Setup) -> str | None:
    if s.task == "orpo":
        return "none (ORPO trains without a reference model)"
    if s.task != "dpo":
        return None
    if s.adaptation != "full":
        return "policy with the adapter disabled (no copy)"
    return "precomputed log-probs (no copy)" if s.precompute_ref else "frozen copy of the starting model"



def _arch_for(p: Any, model: str | None) -> Arch:
    if model:
        return resolve_arch(model)
    name = str(p.config.model.model_name_or_path)
    try:
        return resolve_arch(name)
    except ConfigError as exc:
        raise ConfigError([Problem("--model", f"{pr.message} (model.model_name_or_path = {name})", pr.fix)
                           for pr in exc.problems]) from None


def plan_memory(req: PlanRequest, resolve: Resolve, *, suggest: bool = True) -> MemoryPlan:
    """Resolve the run with `resolve`, estimate its memory, and (when it does not fit) find the changes that
    would make it fit (each alternative is resolved with `resolve` too)."""
    resolved = resolve(req)
    p = resolved.launch
    arch = _arch_for(p, req.model)
    setup, notes = setup_from_plan(p, arch, cpu=resolved.profile.cpu)
    mem, mem_source = memory_budget(setup.device, p.gpus_per_node, req.gpu_mem_gb)
    if p.num_gpus_note:
        notes.insert(0, p.num_gpus_note)
    if setup.offload_optimizer or setup.offload_params:
        notes.append("DeepSpeed offload: optimizer states / parameters counted in host RAM, not on the GPU")
    if setup.optim.startswith("paged_"):
        notes.append(f"{setup.optim}: optimizer states are paged and can spill to host RAM under pressure")
    plan = MemoryPlan(launch=p, profile=resolved.profile, setup=setup, estimate=estimate(setup), mem_gib=mem,
                      mem_source=mem_source, notes=notes)
    if suggest and not plan.fits:
        plan.suggestions = suggestions(plan, req, lambda alt: plan_memory(alt, resolve, suggest=False))
    return plan
