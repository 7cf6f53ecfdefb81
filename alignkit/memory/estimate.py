"""The estimate: per-GPU memory of a run, by component, from a :class:`~alignkit.memory.setup.Setup`.

The planner (alignkit.memory.planner) builds a :class:`~alignkit.memory.setup.Setup` from a resolved run and
feeds it to :func:`estimate`. Nothing here imports torch or loads a model.

What is counted, per GPU (per process on the cpu profile), in bytes:

* **weights** — bf16/fp16 2 B/param, fp32 4 B; 4-bit NF4 linear layers 0.5 B + one fp32 absmax per
  64 weights (8-bit with double quantization), embeddings and the LM head stay in the compute dtype;
  divided by the world size under ZeRO-3. LoRA adapters on top: fp32 on a 16-bit base (PEFT
  casts them up), bf16 on a 4-bit base (TRL casts QLoRA adapters to bf16).
* **gradients** — one per trainable parameter in its dtype; ZeRO-3 keeps only its partition. DDP
  with several processes adds its gradient buckets (a second copy).
* **optimizer** — AdamW: 2 states per trainable parameter, in the parameter's dtype with plain torch
  (pure bf16 training keeps bf16 states); 1 state for RMSprop/Lion/Adagrad, 0 for SGD and
  Adafactor (factored, negligible), 1 B per state for 8-bit optimizers. DeepSpeed keeps fp32 states
  and an fp32 master copy of 16-bit parameters, partitioned: 16 B/param / world size for AdamW (6 B with an
  8-bit AdamW, whose 1-byte states step the fp32 master partition).
  ``offload_optimizer`` moves that to host RAM.
* **reference model** (DPO) — full fine-tuning keeps a frozen copy of the starting model (sharded under
  ZeRO-3) unless ``precompute_ref_log_probs``; with LoRA the reference is the policy with its adapter
  disabled: no copy.
* **activations** — tokens per micro-batch × bytes per token. Bytes per token and decoder layer were
  measured with saved-tensor hooks on Llama layers (transformers 5, SDPA; see bench/bench_plan_accuracy.py
  ``--calibrate``): ``8·h`` (the two RMSNorms upcast to fp32) ``+ b·(4·h + 2·q + 2·kv + 4·I)`` with ``b`` the
  compute dtype's bytes, ``h`` hidden, ``q`` and ``kv`` the query and key/value widths (the full width when a padded batch
  makes SDPA repeat the KV heads), ``I`` the MLP width; eager attention adds the ``heads × seq``
  probabilities; LoRA adds the fp32 casts and dropout copies of each adapted layer's input. With
  activation checkpointing only each layer's input (``b·h``) is kept, plus one layer recomputed
  during backward. DPO runs chosen and rejected together: twice the rows.
* **logits** — TRL 1.16 never materializes ``[tokens, vocab]`` logits: its fused LM head projects
  4096 tokens × 32768 vocabulary entries at a time. Counted: that tile (and, on CPU where there is no
  Triton kernel, its fp32 temporaries), the fp32 gradient of the hidden states and, when the LM head
  trains, its fp32 gradient accumulator.
* **overhead** — the CUDA context and NCCL buffers (a fixed amount) and the caching allocator's
  fragmentation (a fraction of the rest); on the cpu profile, the Python + torch + TRL runtime.

The peak is taken as weights + gradients + optimizer + reference + ZeRO-3 gather buffers + the larger of
(activations + logits) and the optimizer step's temporaries, then overhead. It is an estimate for
planning, conservative on padding (every row padded to ``max_length``); bench/bench_plan_accuracy.py
compares it with measured peaks.
"""

from __future__ import annotations

from dataclasses import dataclass

from alignkit.memory.setup import Setup

GIB = 1024**3

# TRL 1.16's fused LM head (trl/kernels/chunked_logprob.py): TOKEN_CHUNK_SIZE x _CHUNKED_LOGPROB_CHUNK_SIZE
HEAD_TOKEN_TILE = 4096
HEAD_VOCAB_TILE = 32768
# fp32 tile-sized tensors alive at once in the backward of the head's torch fallback (CPU, no Triton;
# trl/kernels/chunked_logprob.py `_backward_tile`): y, z, log_p, p, grad, two temporaries of the gradient
# expression and the boolean target mask (a quarter)
CPU_HEAD_FP32_TEMPS = 7.25

CUDA_CONTEXT_GIB = 0.8  # CUDA context, cuBLAS workspaces, kernels loaded
NCCL_GIB = 0.5  # communication buffers when several processes talk
CUDA_FRAGMENTATION = 0.08  # caching-allocator slack, a fraction of what is allocated
# a training worker's Python + torch + transformers + TRL + datasets + accelerate: the peak RSS of the demo
# model's worker (70k parameters), measured by bench/bench_plan_accuracy.py
CPU_RUNTIME_GIB = 0.8
CPU_FRAGMENTATION = 0.05

ZERO_SUB_GROUP = 1e9  # DeepSpeed's default sub_group_size


@dataclass
class Estimate:
    """Bytes per GPU (per process on CPU), by component."""

    weights: float
    gradients: float
    optimizer: float
    reference_model: float
    zero3_buffers: float
    ddp_buckets: float
    activations: float
    activations_with_checkpointing: float
    activations_without_checkpointing: float
    logits: float
    optimizer_step: float
    overhead: float
    total_params: int
    trainable_params: int

    @property
    def static(self) -> float:
        return (self.weights + self.gradients + self.optimizer + self.reference_model + self.zero3_buffers
                + self.ddp_buckets)

    @property
    def dynamic(self) -> float:
        return max(self.activations + self.logits, self.optimizer_step)

    @property
    def total(self) -> float:
        return self.static + self.dynamic + self.overhead

    def breakdown_gib(self) -> dict[str, float]:
        return {
            "weights": round_gib(self.weights),
            "gradients": round_gib(self.gradients),
            "optimizer_states": round_gib(self.optimizer),
            "reference_model": round_gib(self.reference_model),
            "zero3_gather_buffers": round_gib(self.zero3_buffers),
            "ddp_gradient_buckets": round_gib(self.ddp_buckets),
            "activations": round_gib(self.activations),
            "logits_lm_head": round_gib(self.logits),
            "optimizer_step_temporaries": round_gib(self.optimizer_step),
            "overhead": round_gib(self.overhead),
        }


def round_gib(x: float) -> float:
    return round(x / GIB, 3)


def _optimizer_states(optim: str) -> tuple[float, float]:
    """(states per trainable parameter, bytes per state or 0 for "the parameter's dtype")."""
    o = optim.lower()
    if o in ("sgd", "lomo", "schedule_free_sgd"):
        return 0, 0
    if "adafactor" in o:
        return 0, 0  # factored second moments: rows + columns, negligible
    single = any(k in o for k in ("rmsprop", "lion", "adagrad"))
    states = 1 if single else (3 if "ademamix" in o else 2)
    if "8bit" in o:
        return states, 1
    if "4bit" in o:
        return states, 0.5
    return states, 0


def lora_trainable(s: Setup) -> int:
    """LoRA parameters: r x (in + out) per adapted linear layer (DoRA adds a magnitude per output)."""
    n = 0
    for fan_in, fan_out, copies in _adapted(s).values():
        n += copies * (s.lora_r * (fan_in + fan_out) + (fan_out if s.lora_dora else 0))
    n *= s.arch.layers
    for m in s.lora_modules_to_save:
        if "embed" in m:
            n += s.arch.embed_params
        elif "lm_head" in m:
            n += s.arch.head_params or s.arch.embed_params
    return n


def _adapted(s: Setup) -> dict[str, tuple[int, int, int]]:
    lin = s.arch.linears()
    if s.lora_targets == "all-linear":
        return lin
    return {k: v for k, v in lin.items() if k in s.lora_targets}


def _activation_bytes_per_token_layer(s: Setup, b: int) -> float:
    """Saved activations of one decoder layer per token (see the module docstring for the measurement)."""
    a = s.arch
    h = a.hidden
    kv = a.kv_dim
    sdpa_padded = s.padded and s.attn in ("sdpa", "eager")
    if sdpa_padded:
        kv = a.q_dim  # a padding mask makes transformers repeat the KV heads before SDPA
    inter = a.intermediate * a.experts_per_token
    per = 8 * h + b * (4 * h + 2 * a.q_dim + 2 * kv + 4 * inter) + 40
    if s.attn == "eager":
        per += a.heads * s.max_length * (4 + b)  # fp32 softmax + its cast, per head and key position
    elif sdpa_padded and s.device == "cpu":
        per += s.max_length * b  # CPU SDPA keeps the float mask per layer
    if s.adaptation in ("lora", "qlora"):
        adapted_in = sum(fan_in * copies for fan_in, _, copies in _adapted(s).values())
        adapter_b = 2 if s.adaptation == "qlora" or s.zero_stage == 3 else 4
        if adapter_b > b:
            per += 3 * adapted_in  # the input cast to the fp32 adapters' dtype
        if s.lora_dropout > 0:
            per += adapted_in * max(adapter_b, 3)  # dropout output + mask
    return per


def activation_bytes(s: Setup, checkpointing: bool) -> float:
    a = s.arch
    b = s.dtype_bytes
    per_layer = _activation_bytes_per_token_layer(s, b)
    final = (4 + b) * a.hidden  # final norm
    inter = a.intermediate * a.experts_per_token
    backward_work = b * (2 * inter + 2 * a.hidden)  # gradients of the layer being differentiated
    mask = 0.0
    if s.padded and s.attn in ("sdpa", "eager") and s.device != "cpu":
        mask = s.rows * s.max_length * s.max_length * b / s.tokens  # one [rows, 1, seq, seq] mask, per token
    if s.activation_offloading:
        per_token = per_layer + final + backward_work + mask  # kept layers live in host RAM
    elif checkpointing:
        per_token = a.layers * b * a.hidden + per_layer + final + backward_work + mask
    else:
        per_token = a.layers * per_layer + final + backward_work + mask
    return s.tokens * per_token


def logits_bytes(s: Setup) -> float:
    """TRL 1.16's fused chunked LM head (see HEAD_TOKEN_TILE)."""
    a = s.arch
    b = s.dtype_bytes
    tile = min(s.tokens, HEAD_TOKEN_TILE) * min(a.vocab, HEAD_VOCAB_TILE)
    total = tile * b
    if s.device == "cpu":
        total += tile * 4 * CPU_HEAD_FP32_TEMPS
        if b != 4:
            total += min(a.vocab, HEAD_VOCAB_TILE) * a.hidden * 4
    total += s.tokens * a.hidden * (4 + b)  # fp32 gradient of the hidden states, then its cast
    head_trains = s.adaptation == "full" or any("lm_head" in m for m in s.lora_modules_to_save)
    if head_trains:
        total += (a.head_params or a.embed_params) * 4  # fp32 gradient accumulator of the LM head
    return total


def estimate(s: Setup, overhead: bool = True) -> Estimate:
    a = s.arch
    b = s.dtype_bytes
    world = max(1, s.world_size)
    shard = world if s.zero_stage == 3 else 1
    total_params = a.total_params

    # weights of the base
    if s.quant_bits:
        if s.quant_bits == 4:  # NF4: two weights per byte + an absmax per 64 (fp32, or 8-bit with double quant)
            per_q = 0.5 + ((1 + 4 / 256) / 64 if s.double_quant else 4 / 64)
        else:  # LLM.int8: one byte per weight + an fp32 scale per row
            per_q = 1.0 + 4 / a.hidden
        base = a.block_linear_params * per_q + (total_params - a.block_linear_params) * b
    else:
        base = total_params * b
    base_gpu = 0.0 if s.offload_params else base / shard

    if s.adaptation == "full":
        trainable = total_params
        param_b = b
        extra_weights = 0.0
    else:
        trainable = lora_trainable(s)
        param_b = 2 if (s.adaptation == "qlora" or s.zero_stage == 3) else 4
        extra_weights = trainable * param_b
        total_params += trainable
    weights = base_gpu + extra_weights / shard

    states, state_b = _optimizer_states(s.optim)
    if s.zero_stage:
        grads = trainable * param_b / world
        master = 4 if param_b != 4 else 0
        # DeepSpeed's own Adam keeps fp32 states; a client 8-bit optimizer (adamw_bnb_8bit, which transformers
        # hands to DeepSpeed as an untested optimizer) keeps its 1-byte states on the fp32 master partition
        opt = 0.0 if s.offload_optimizer else trainable * (master + states * (state_b or 4)) / world
        # the step upcasts each sub-group's gradient partition to fp32 (sub_group_size: 1e9 elements)
        opt_step = 0.0 if s.offload_optimizer or param_b == 4 else min(trainable / world, ZERO_SUB_GROUP) * 4
        ddp = 0.0
    else:
        grads = trainable * param_b
        opt = trainable * states * (state_b or param_b)
        ddp = grads if world > 1 else 0.0
        if s.optim == "adamw_torch" and s.device == "cuda":
            opt_step = trainable * param_b  # foreach temporaries
        else:
            opt_step = 0.0

    ref = 0.0
    if s.task == "dpo" and s.adaptation == "full" and not s.precompute_ref:
        ref = (0.0 if s.offload_params else total_params * b / shard)

    zero3 = 0.0
    if s.zero_stage == 3:
        gathered_b = 0.5 if s.quant_bits == 4 else b
        zero3 = (2 * a.layer_params() * gathered_b + max(a.embed_params, a.head_params) * b
                 + 2 * a.hidden * a.hidden * 4)

    act_ckpt = activation_bytes(s, True)
    act_full = activation_bytes(s, False)
    acts = act_ckpt if s.activation_checkpointing else act_full
    logits = logits_bytes(s)

    est = Estimate(weights=weights, gradients=grads, optimizer=opt, reference_model=ref, zero3_buffers=zero3,
                   ddp_buckets=ddp, activations=acts, activations_with_checkpointing=act_ckpt,
                   activations_without_checkpointing=act_full, logits=logits, optimizer_step=opt_step,
                   overhead=0.0, total_params=int(total_params), trainable_params=int(trainable))
    if overhead:
        used = est.static + est.dynamic
        if s.device == "cpu":
            est.overhead = CPU_RUNTIME_GIB * GIB + CPU_FRAGMENTATION * used
        else:
            est.overhead = CUDA_CONTEXT_GIB * GIB + (NCCL_GIB * GIB if world > 1 else 0.0) + CUDA_FRAGMENTATION * used
    return est

