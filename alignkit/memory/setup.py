"""What the estimate depends on, as plain data (:class:`Setup`), and how it is read from a resolved run: the
launch plan `alignkit sft|dpo --dry-run` prints (its config, DeepSpeed config, batch arithmetic) plus the
profile stack's hardware (cpu or not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignkit.memory.arch import Arch

@dataclass(frozen=True)
class Setup:
    """Everything the estimate depends on, as plain data (built from a launch plan by `setup_from_plan`)."""

    task: str  # sft | dpo | orpo | cpt
    arch: Arch
    adaptation: str = "full"  # full | lora | qlora
    dtype_bytes: int = 2  # weights/compute dtype: 2 (bf16/fp16) or 4 (fp32)
    quant_bits: int | None = None  # 4 or 8 when the base is quantized
    double_quant: bool = False
    lora_r: int = 16
    lora_targets: tuple[str, ...] | str = "all-linear"
    lora_dropout: float = 0.05
    lora_modules_to_save: tuple[str, ...] = ()
    lora_dora: bool = False
    zero_stage: int = 0
    offload_optimizer: bool = False
    offload_params: bool = False
    world_size: int = 1
    micro_batch: int = 8
    grad_accum: int = 1
    max_length: int = 1024
    padded: bool = True  # rows padded to a common length (False: packing / padding-free)
    activation_checkpointing: bool = True
    activation_offloading: bool = False
    optim: str = "adamw_torch_fused"
    attn: str = "sdpa"
    precompute_ref: bool = False
    device: str = "cuda"  # cuda | cpu

    @property
    def global_batch(self) -> int:
        return self.micro_batch * self.grad_accum * self.world_size

    @property
    def rows(self) -> int:
        """Sequences in one forward: DPO and ORPO concatenate chosen and rejected."""
        from alignkit.config.tasks import PREFERENCE

        return self.micro_batch * (2 if self.task in PREFERENCE else 1)

    @property
    def tokens(self) -> int:
        return self.rows * self.max_length



def _train_values(task: str, train: dict[str, Any]) -> dict[str, Any]:
    """The run's train section over TRL's defaults (the resolved config only holds what a layer set)."""
    from alignkit.config.tasks import trl_config
    from alignkit.config.train import trl_snapshot

    defaults = {k: v.get("default") for k, v in trl_snapshot()["tasks"][trl_config(task)].items()}
    return {**defaults, **train}


_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "auto": 2}


def setup_from_plan(p: Any, arch: Arch, *, cpu: bool) -> tuple[Setup, list[str]]:
    """A Setup from a LaunchPlan (what `alignkit sft|dpo --dry-run` prints; read by its attributes, so this
    package needs nothing from alignkit.launch) and whether its profile runs on CPU, plus notes on
    assumptions."""
    notes: list[str] = []
    cfg = p.config.to_dict()
    model, lora = cfg["model"], cfg.get("lora") or {}
    train = _train_values(p.task, cfg["train"])
    device = "cpu" if cpu else "cuda"
    dtype = model.get("dtype") or "bfloat16"
    if dtype == "auto":
        notes.append("model.dtype is auto: assumed a 16-bit checkpoint")
    if lora.get("enabled"):
        quant = 4 if model.get("load_in_4bit") else 8 if model.get("load_in_8bit") else None
        adaptation = "qlora" if quant else "lora"
    else:
        quant, adaptation = None, "full"
    compute = model.get("bnb_4bit_compute_dtype") if quant == 4 else None
    dtype_bytes = _DTYPE_BYTES.get(compute or dtype, 2)
    ds = p.deepspeed_config or {}
    zero = ds.get("zero_optimization") or {}
    stage = int(zero.get("stage", 0) or 0) if ds else 0

    def offloaded(key: str) -> bool:
        return str((zero.get(key) or {}).get("device", "none")).lower() in ("cpu", "nvme")

    sft_like = p.task in ("sft", "cpt")  # SFTConfig: packing and padding-free
    packing = bool(train.get("packing")) if sft_like else False
    padding_free = bool(train.get("padding_free")) and sft_like
    if packing and train.get("packing_strategy", "bfd") in ("bfd", "bfd_split"):
        padding_free = True
    max_length = train.get("max_length")
    if max_length is None:
        max_length = arch.max_position
        notes.append(f"train.max_length is null (no truncation): planned for the model's context, {max_length} "
                     "tokens per row; pass --max_length=N to plan for your data")
    ckpt = train.get("activation_checkpointing")
    if ckpt is None:
        ckpt = train.get("gradient_checkpointing", True)
    attn = model.get("attn_implementation")
    if attn is None:
        attn = "sdpa"
        if device == "cuda":
            notes.append("attention: planned for SDPA; flash_attention_2 (when installed) needs no padding mask "
                         "and slightly less memory")
    targets = lora.get("target_modules") or "all-linear"
    setup = Setup(
        task=p.task,
        arch=arch,
        adaptation=adaptation,
        dtype_bytes=dtype_bytes,
        quant_bits=quant,
        double_quant=bool(model.get("bnb_4bit_use_double_quant")),
        lora_r=int(lora.get("r", 16)),
        lora_targets=targets if isinstance(targets, str) else tuple(targets),
        lora_dropout=float(lora.get("dropout", 0.05)),
        lora_modules_to_save=tuple(lora.get("modules_to_save") or ()),
        lora_dora=bool(lora.get("use_dora")),
        zero_stage=stage,
        offload_optimizer=offloaded("offload_optimizer"),
        offload_params=offloaded("offload_param"),
        world_size=p.world_size,
        micro_batch=p.batch.per_device_train_batch_size,
        grad_accum=p.batch.gradient_accumulation_steps,
        max_length=int(max_length),
        padded=not padding_free,
        activation_checkpointing=bool(ckpt),
        activation_offloading=bool(train.get("activation_offloading")),
        optim=str(train.get("optim") or "adamw_torch_fused"),
        attn=attn,
        precompute_ref=bool(train.get("precompute_ref_log_probs")) if p.task == "dpo" else False,
        device=device,
    )
    if setup.padded:
        notes.append(f"every row counted at max_length ({setup.max_length}): batches padded to their longest row "
                     "usually need less")
    return setup, notes

