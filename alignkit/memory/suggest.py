"""What would make a run fit: the search behind `alignkit plan`'s suggestions, least invasive first.

Changes within the run's profile and GPUs are tried on the estimate alone (activation checkpointing, a smaller
micro-batch with the global batch kept, DPO's precomputed reference); another adaptation (LoRA, QLoRA) or more
GPUs is re-planned through the caller's ``replan`` (the run resolved again, as `alignkit sft|dpo --dry-run`
would), and only then a shorter max_length is offered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

from alignkit.errors import ConfigError
from alignkit.memory.estimate import GIB, estimate
from alignkit.memory.setup import Setup

if TYPE_CHECKING:
    from alignkit.memory.planner import MemoryPlan, PlanRequest

#: re-plans a request without suggestions (alignkit.memory.planner.plan_memory with the caller's resolver)
Replan = Callable[["PlanRequest"], "MemoryPlan"]


@dataclass
class Suggestion:
    change: str  # what to do, in words
    flags: list[str]  # what to add to the command
    total_gib: float
    mem_gib: float
    setup: Setup | None = field(default=None, repr=False)

    @property
    def fits(self) -> bool:
        return self.total_gib <= self.mem_gib

    def to_json(self) -> dict[str, Any]:
        return {"change": self.change, "flags": self.flags, "total_gib": round(self.total_gib, 2),
                "fits": self.fits}


def _fits(s: Setup, mem: float) -> tuple[bool, float]:
    total = estimate(s).total / GIB
    return total <= mem, total


def _micro_batch_flags(plan_or_launch: Any, s: Setup) -> list[str]:
    flags = [f"--per_device_train_batch_size={s.micro_batch}"]
    launch = plan_or_launch
    managed = launch.config.launch.global_batch_size is not None and \
        "train.gradient_accumulation_steps" not in launch.overridden
    if not managed:
        flags.append(f"--gradient_accumulation_steps={s.grad_accum}")
    return flags


def _smaller_micro_batch(s: Setup, mem: float) -> Setup | None:
    """The largest micro-batch below the current one that fits and keeps the global batch."""
    per_process = s.micro_batch * s.grad_accum
    for b in range(s.micro_batch - 1, 0, -1):
        if per_process % b:
            continue
        cand = replace(s, micro_batch=b, grad_accum=per_process // b)
        if _fits(cand, mem)[0]:
            return cand
    return None


def _tweaks(s: Setup, mem: float, launch: Any) -> list[tuple[str, list[str], Setup]]:
    """Changes within the same profile and GPUs, least invasive first; each one fits."""
    out: list[tuple[str, list[str], Setup]] = []
    keep = f"global batch {s.global_batch} kept"
    if not s.activation_checkpointing:
        ck = replace(s, activation_checkpointing=True)
        if _fits(ck, mem)[0]:
            out.append(("turn on activation checkpointing (recomputes each layer in backward, ~20-30% slower)",
                        ["--gradient_checkpointing=true"], ck))
    mb = _smaller_micro_batch(s, mem)
    if mb is not None:
        out.append((f"micro-batch {s.micro_batch} -> {mb.micro_batch} with gradient accumulation "
                    f"{s.grad_accum} -> {mb.grad_accum} ({keep})", _micro_batch_flags(launch, mb), mb))
    elif not s.activation_checkpointing:
        mb = _smaller_micro_batch(replace(s, activation_checkpointing=True), mem)
        if mb is not None:
            out.append((f"activation checkpointing and micro-batch {s.micro_batch} -> {mb.micro_batch} with "
                        f"gradient accumulation {s.grad_accum} -> {mb.grad_accum} ({keep})",
                        ["--gradient_checkpointing=true", *_micro_batch_flags(launch, mb)], mb))
    if s.task == "dpo" and s.adaptation == "full" and not s.precompute_ref:
        pre = replace(s, precompute_ref=True)
        ok = _fits(pre, mem)[0]
        flags = ["--precompute_ref_log_probs=true"]
        if not ok:
            pre_mb = _smaller_micro_batch(replace(pre, activation_checkpointing=True), mem)
            if pre_mb is not None:
                pre, ok = pre_mb, True
                flags += (["--gradient_checkpointing=true"] if not s.activation_checkpointing else []) + \
                    _micro_batch_flags(launch, pre)
        if ok:
            out.append(("precompute the reference log-probs once before training (no reference copy in memory)",
                        flags, pre))
    return out


def _profile_with(plan: MemoryPlan, adaptation_profile: str) -> str:
    """The plan's profile stack with another adaptation profile, its modifiers (e.g. cpu) kept."""
    return ",".join([adaptation_profile, *plan.profile.modifiers])


def _alternative(req: PlanRequest, replan: Replan, *, profile: str | None = None, num_gpus: int | None = None,
                 num_nodes: int | None = None, micro_batch: int | None = None) -> tuple[MemoryPlan | None, list[str]]:
    """Re-plan with another profile or cluster shape. When the global batch cannot be split over the new world
    size at the current micro-batch, retry with the largest micro-batch that splits it (its flag is returned)."""
    alt = replace(req, profile=profile or req.profile, num_gpus=num_gpus or req.num_gpus,
                  num_nodes=num_nodes or req.num_nodes)
    try:
        return replan(alt), []
    except ConfigError as exc:
        problems = exc.problems
    if micro_batch is None or not any(pr.where == "launch.global_batch_size" for pr in problems):
        return None, []
    target = world = None
    for pr in problems:
        m = re.match(r"(\d+) cannot be split into (\d+) processes", pr.message)
        if m:
            target, world = int(m.group(1)), int(m.group(2))
    if target is None or world is None or target % world:
        return None, []
    for b in range(min(micro_batch, target // world), 0, -1):
        if (target // world) % b == 0:
            flag = f"--per_device_train_batch_size={b}"
            try:
                return replan(replace(alt, overrides=(*alt.overrides, flag))), [flag]
            except ConfigError:
                return None, []
    return None, []


def _fitting(found: tuple[MemoryPlan | None, list[str]]) -> tuple[str, list[str], Setup, float] | None:
    """The alternative as is when it fits, else with the least invasive tweak that makes it fit."""
    alt, extra = found
    if alt is None:
        return None
    if alt.fits:
        return "", extra, alt.setup, alt.total_gib
    for change, flags, cand in _tweaks(alt.setup, alt.mem_gib, alt.launch):
        if any(f.startswith("--per_device_train_batch_size") for f in flags):
            extra = [f for f in extra if not f.startswith("--per_device_train_batch_size")]
        return change, [*extra, *flags], cand, estimate(cand).total / GIB
    return None


_ADAPT_NAMES = {"full": "full fine-tuning", "lora": "LoRA", "qlora": "QLoRA"}


def suggestions(plan: MemoryPlan, req: PlanRequest, replan: Replan, limit: int = 5) -> list[Suggestion]:
    """Changes that make the run fit, least invasive first: checkpointing, micro-batch (global batch kept),
    precomputed DPO reference, then LoRA/QLoRA, more GPUs (ZeRO-3 shards), then a shorter max_length."""
    s, mem, launch = plan.setup, plan.mem_gib, plan.launch
    out: list[Suggestion] = []
    for change, flags, cand in _tweaks(s, mem, launch):
        out.append(Suggestion(change, flags, estimate(cand).total / GIB, mem, cand))

    current = plan.profile.adaptation
    recipe_note = " (the recipe's variant for it)" if req.recipe else ""
    for adapt in {"full": ["lora", "qlora"], "lora": ["qlora"], "qlora": []}[current]:
        profile = _profile_with(plan, adapt)
        gpu_flags: list[str] = []
        found = _fitting(_alternative(req, replan, profile=profile, micro_batch=s.micro_batch))
        if found is None and s.device == "cuda":
            # the variant may be tuned for fewer GPUs (a QLoRA recipe's global batch on one GPU)
            alt, extra = _alternative(replace(req, num_gpus=None, num_nodes=None), replan, profile=profile)
            found = _fitting((alt, extra))
            if found is not None and alt is not None and alt.launch.world_size != s.world_size:
                gpu_flags = [f"--num-gpus {alt.launch.gpus_per_node}"] + \
                    ([f"--num-nodes {alt.launch.num_nodes}"] if alt.launch.num_nodes > 1 else [])
        if found is None:
            continue
        change, flags, cand, total = found
        text = f"{_ADAPT_NAMES[adapt]} instead of {_ADAPT_NAMES[current]}{recipe_note}"
        if gpu_flags:
            text += f" on {cand.world_size} GPU(s)"
        out.append(Suggestion(text + (f", and {change}" if change else ""),
                              [f"--profile {profile}", *gpu_flags, *flags], total, mem, cand))

    if s.device == "cuda" and current in ("full", "lora"):
        sharded = "full" if current == "full" else "lora-zero3"
        profile = launch.profile if s.zero_stage == 3 else _profile_with(plan, sharded)
        for world in (2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256):
            if world <= s.world_size:
                continue
            gpus, nodes = (world, 1) if world <= 8 else (8, world // 8)
            found = _fitting(_alternative(req, replan, profile=profile, num_gpus=gpus, num_nodes=nodes,
                                           micro_batch=s.micro_batch))
            if found is None:
                continue
            change, flags, cand, total = found
            gpu_flags = ([f"--profile {profile}"] if profile != launch.profile else []) + \
                [f"--num-gpus {gpus}"] + ([f"--num-nodes {nodes}"] if nodes > 1 else [])
            out.append(Suggestion(f"{world} GPUs with ZeRO-3 sharding weights, gradients and optimizer states"
                                  + (f", and {change}" if change else " (global batch kept)"),
                                  [*gpu_flags, *flags], total, mem, cand))
            break

    if not out:
        length = s.max_length // 2
        while length >= 128:
            cand = replace(s, max_length=length, activation_checkpointing=True)
            ok, total = _fits(cand, mem)
            if ok:
                flags = [f"--max_length={length}"] + ([] if s.activation_checkpointing
                                                      else ["--gradient_checkpointing=true"])
                out.append(Suggestion(f"truncate rows at {length} tokens instead of {s.max_length} (changes the "
                                      "data: `alignkit mix preview` shows how many rows get cut)", flags, total, mem,
                                      cand))
                break
            length //= 2
    return out[:limit]
