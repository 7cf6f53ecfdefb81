"""The memory planner: per-GPU memory of a run before it starts, and the change that makes it fit.

``alignkit plan`` resolves a run exactly like ``alignkit sft|dpo --dry-run`` and feeds the result to
:func:`estimate`. Nothing here imports torch or loads a model: the architecture comes from a local
``config.json``, the Hugging Face cache, or the table below (hub ids and sizes such as ``7b``).

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
  and an fp32 master copy of 16-bit parameters, partitioned: 16 B/param / world size for AdamW.
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

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from alignkit.errors import ConfigError, Problem

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

EXIT_DOES_NOT_FIT = 3  # `alignkit plan`: the estimate exceeds the memory (0: fits, 2: bad input)


# --------------------------------------------------------------------------- architectures


@dataclass(frozen=True)
class Arch:
    """A decoder-only transformer's shapes (Llama family layout: q/k/v/o, gated MLP, RMSNorm)."""

    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int | None = None
    tied: bool = False
    attention_bias: bool = False
    gated_mlp: bool = True
    experts: int = 1  # MoE: experts per layer (parameters)
    experts_per_token: int = 1  # MoE: experts each token runs through (activations)
    max_position: int = 4096
    name: str = ""
    source: str = ""  # where the shapes came from

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def q_dim(self) -> int:
        return self.heads * self.hd

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.hd

    def linears(self) -> dict[str, tuple[int, int, int]]:
        """Linear layers of one decoder layer: name -> (in, out, copies)."""
        h, i = self.hidden, self.intermediate
        out = {
            "q_proj": (h, self.q_dim, 1),
            "k_proj": (h, self.kv_dim, 1),
            "v_proj": (h, self.kv_dim, 1),
            "o_proj": (self.q_dim, h, 1),
            "up_proj": (h, i, self.experts),
            "down_proj": (i, h, self.experts),
        }
        if self.gated_mlp:
            out["gate_proj"] = (h, i, self.experts)
        return out

    def layer_linear_params(self) -> int:
        return sum(a * b * n for a, b, n in self.linears().values())

    def layer_params(self) -> int:
        extra = 2 * self.hidden  # two norms
        if self.attention_bias:
            extra += self.q_dim + 2 * self.kv_dim
        if self.experts > 1:
            extra += self.hidden * self.experts  # router
        return self.layer_linear_params() + extra

    @property
    def embed_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def head_params(self) -> int:
        return 0 if self.tied else self.vocab * self.hidden

    @property
    def block_linear_params(self) -> int:
        """Parameters in the decoder layers' linear layers: what bitsandbytes quantizes."""
        return self.layers * self.layer_linear_params()

    @property
    def total_params(self) -> int:
        return self.embed_params + self.head_params + self.layers * self.layer_params() + self.hidden

    def describe(self) -> str:
        return (f"{self.total_params / 1e9:.2f}B params: hidden {self.hidden}, {self.layers} layers, MLP "
                f"{self.intermediate}, vocab {self.vocab}, {self.heads} heads / {self.kv_heads} KV"
                + (", tied embeddings" if self.tied else "")
                + (f", MoE {self.experts_per_token} of {self.experts} experts" if self.experts > 1 else ""))


def _a(hidden, layers, inter, vocab, heads, kv, **kw) -> dict[str, Any]:
    return dict(hidden=hidden, layers=layers, intermediate=inter, vocab=vocab, heads=heads, kv_heads=kv, **kw)


_MISTRAL_7B = _a(4096, 32, 14336, 32000, 32, 8, max_position=32768)
_LLAMA2_7B = _a(4096, 32, 11008, 32000, 32, 32)
_LLAMA2_13B = _a(5120, 40, 13824, 32000, 40, 40)
_LLAMA2_70B = _a(8192, 80, 28672, 32000, 64, 8)
_LLAMA3_8B = _a(4096, 32, 14336, 128256, 32, 8, max_position=131072)
_LLAMA3_70B = _a(8192, 80, 28672, 128256, 64, 8, max_position=131072)
_LLAMA32_1B = _a(2048, 16, 8192, 128256, 32, 8, tied=True, head_dim=64, max_position=131072)
_LLAMA32_3B = _a(3072, 28, 8192, 128256, 24, 8, tied=True, head_dim=128, max_position=131072)
_QWEN25 = {
    "0.5b": _a(896, 24, 4864, 151936, 14, 2, tied=True, attention_bias=True, max_position=32768),
    "1.5b": _a(1536, 28, 8960, 151936, 12, 2, tied=True, attention_bias=True, max_position=32768),
    "3b": _a(2048, 36, 11008, 151936, 16, 2, tied=True, attention_bias=True, max_position=32768),
    "7b": _a(3584, 28, 18944, 152064, 28, 4, attention_bias=True, max_position=32768),
    "14b": _a(5120, 48, 13824, 152064, 40, 8, attention_bias=True, max_position=32768),
    "32b": _a(5120, 64, 27648, 152064, 40, 8, attention_bias=True, max_position=32768),
    "72b": _a(8192, 80, 29568, 152064, 64, 8, attention_bias=True, max_position=32768),
}
_SMOLLM2 = {
    "135m": _a(576, 30, 1536, 49152, 9, 3, tied=True, max_position=8192),
    "360m": _a(960, 32, 2560, 49152, 15, 5, tied=True, max_position=8192),
    "1.7b": _a(2048, 24, 8192, 49152, 32, 32, tied=True, max_position=8192),
}
_GEMMA_2B = _a(2048, 18, 16384, 256000, 8, 1, head_dim=256, tied=True, max_position=8192)
_GEMMA_7B = _a(3072, 28, 24576, 256000, 16, 16, head_dim=256, tied=True, max_position=8192)
_MIXTRAL_8X7B = _a(4096, 32, 14336, 32000, 32, 8, experts=8, experts_per_token=2, max_position=32768)

#: hub ids (lower case) whose shapes are known without the network
KNOWN_MODELS: dict[str, dict[str, Any]] = {
    "mistralai/mistral-7b-v0.1": _MISTRAL_7B,
    "mistralai/mistral-7b-instruct-v0.1": _MISTRAL_7B,
    "mistralai/mistral-7b-instruct-v0.2": _MISTRAL_7B,
    "mistralai/mistral-7b-v0.3": {**_MISTRAL_7B, "vocab": 32768},
    "mistralai/mistral-7b-instruct-v0.3": {**_MISTRAL_7B, "vocab": 32768},
    "mistralai/mixtral-8x7b-v0.1": _MIXTRAL_8X7B,
    "huggingfaceh4/zephyr-7b-beta": _MISTRAL_7B,
    "alignment-handbook/zephyr-7b-sft-full": _MISTRAL_7B,
    "alignment-handbook/zephyr-7b-sft-qlora": _MISTRAL_7B,  # an adapter on Mistral-7B-v0.1
    "alignment-handbook/zephyr-7b-dpo-full": _MISTRAL_7B,
    "meta-llama/llama-2-7b-hf": _LLAMA2_7B,
    "meta-llama/llama-2-7b-chat-hf": _LLAMA2_7B,
    "meta-llama/llama-2-13b-hf": _LLAMA2_13B,
    "meta-llama/llama-2-13b-chat-hf": _LLAMA2_13B,
    "meta-llama/llama-2-70b-hf": _LLAMA2_70B,
    "meta-llama/llama-2-70b-chat-hf": _LLAMA2_70B,
    "meta-llama/meta-llama-3-8b": _LLAMA3_8B,
    "meta-llama/meta-llama-3-8b-instruct": _LLAMA3_8B,
    "meta-llama/llama-3.1-8b": _LLAMA3_8B,
    "meta-llama/llama-3.1-8b-instruct": _LLAMA3_8B,
    "meta-llama/meta-llama-3-70b": _LLAMA3_70B,
    "meta-llama/llama-3.1-70b": _LLAMA3_70B,
    "meta-llama/llama-3.1-70b-instruct": _LLAMA3_70B,
    "meta-llama/llama-3.2-1b": _LLAMA32_1B,
    "meta-llama/llama-3.2-1b-instruct": _LLAMA32_1B,
    "meta-llama/llama-3.2-3b": _LLAMA32_3B,
    "meta-llama/llama-3.2-3b-instruct": _LLAMA32_3B,
    **{f"qwen/qwen2.5-{k}": v for k, v in _QWEN25.items()},
    **{f"qwen/qwen2.5-{k}-instruct": v for k, v in _QWEN25.items()},
    **{f"huggingfacetb/smollm2-{k}": v for k, v in _SMOLLM2.items()},
    **{f"huggingfacetb/smollm2-{k}-instruct": v for k, v in _SMOLLM2.items()},
    "google/gemma-2b": _GEMMA_2B,
    "google/gemma-7b": _GEMMA_7B,
}

#: --model sizes -> the hub id whose shapes stand for that size
SIZES: dict[str, str] = {
    "135m": "huggingfacetb/smollm2-135m",
    "360m": "huggingfacetb/smollm2-360m",
    "0.5b": "qwen/qwen2.5-0.5b",
    "1b": "meta-llama/llama-3.2-1b",
    "1.5b": "qwen/qwen2.5-1.5b",
    "3b": "meta-llama/llama-3.2-3b",
    "7b": "mistralai/mistral-7b-v0.1",
    "8b": "meta-llama/llama-3.1-8b",
    "13b": "meta-llama/llama-2-13b-hf",
    "14b": "qwen/qwen2.5-14b",
    "32b": "qwen/qwen2.5-32b",
    "70b": "meta-llama/llama-3.1-70b",
    "72b": "qwen/qwen2.5-72b",
}


def arch_from_config(cfg: dict[str, Any], name: str = "", source: str = "") -> Arch:
    """Shapes from a transformers config.json (Llama-style keys, GPT-2-style keys as a fallback)."""
    cfg = dict(cfg.get("text_config") or cfg) if "hidden_size" not in cfg and "n_embd" not in cfg else cfg
    try:
        if "hidden_size" in cfg:
            h = int(cfg["hidden_size"])
            heads = int(cfg["num_attention_heads"])
            inter = cfg.get("intermediate_size") or cfg.get("ffn_hidden_size") or 4 * h
            model_type = str(cfg.get("model_type", ""))
            experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or 1)
            return Arch(
                hidden=h,
                layers=int(cfg["num_hidden_layers"]),
                intermediate=int(cfg.get("moe_intermediate_size") or inter) if experts > 1 else int(inter),
                vocab=int(cfg["vocab_size"]),
                heads=heads,
                kv_heads=int(cfg.get("num_key_value_heads") or heads),
                head_dim=int(cfg["head_dim"]) if cfg.get("head_dim") else None,
                tied=bool(cfg.get("tie_word_embeddings", model_type.startswith("gemma"))),
                attention_bias=bool(cfg.get("attention_bias", model_type.startswith("qwen2"))),
                gated_mlp=model_type not in ("gpt2", "gpt_neox", "opt", "falcon", "phi", "starcoder2"),
                experts=experts,
                experts_per_token=int(cfg.get("num_experts_per_tok") or 1),
                max_position=int(cfg.get("max_position_embeddings") or 4096),
                name=name,
                source=source,
            )
        h = int(cfg["n_embd"])
        return Arch(hidden=h, layers=int(cfg["n_layer"]), intermediate=int(cfg.get("n_inner") or 4 * h),
                    vocab=int(cfg["vocab_size"]), heads=int(cfg["n_head"]), kv_heads=int(cfg["n_head"]),
                    tied=bool(cfg.get("tie_word_embeddings", True)), gated_mlp=False,
                    max_position=int(cfg.get("n_positions") or 1024), name=name, source=source)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(Problem(source or name or "config.json", f"cannot read the model shapes ({exc!r} missing "
                                  "or not a number)", "pass --model with a size (7b, 13b, 70b) or a directory "
                                  "whose config.json has hidden_size, num_hidden_layers, num_attention_heads, "
                                  "vocab_size")) from None


def _read_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(Problem(str(path), f"unreadable config.json ({exc})", "pass --model with a size "
                                  "(7b, 13b, 70b) or another directory")) from None


def _hf_cache_config(model_id: str) -> Path | None:
    """config.json of a hub model already in the local Hugging Face cache (no network)."""
    home = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(Path.home(), ".cache", "huggingface"), "hub")
    snaps = Path(home) / f"models--{model_id.replace('/', '--')}" / "snapshots"
    if not snaps.is_dir():
        return None
    found = sorted(snaps.glob("*/config.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    return found[0] if found else None


def resolve_arch(model: str, *, _depth: int = 0) -> Arch:
    """Shapes for a size ("7b"), a local model or adapter directory, or a hub id (table, then HF cache)."""
    key = model.strip().lower()
    if key in SIZES:
        hub = SIZES[key]
        return Arch(**KNOWN_MODELS[hub], name=model, source=f"size {key}: shapes of {hub}")
    path = Path(model).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return arch_from_config(_read_config(path / "config.json"), name=model, source=f"{path}/config.json")
        adapter = path / "adapter_config.json"
        if adapter.is_file() and _depth < 3:
            base = json.loads(adapter.read_text()).get("base_model_name_or_path")
            if base:
                arch = resolve_arch(base, _depth=_depth + 1)
                return replace(arch, name=model, source=f"adapter on {base} ({arch.source})")
        raise ConfigError(Problem(str(path), "is a directory without config.json or adapter_config.json",
                                  "pass --model with a size (7b, 13b, 70b) or a model directory"))
    if key in KNOWN_MODELS:
        return Arch(**KNOWN_MODELS[key], name=model, source="alignkit's table of known models")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", model.strip()):
        cached = _hf_cache_config(model.strip())
        if cached is not None:
            return arch_from_config(_read_config(cached), name=model, source=f"Hugging Face cache {cached}")
    sizes = ", ".join(SIZES)
    raise ConfigError(Problem(
        "--model" if _depth == 0 else model,
        f"the shapes of '{model}' are not known offline (not a local directory, not in the table, not in the "
        "Hugging Face cache)",
        f"pass --model with a size ({sizes}), a directory with config.json, or a known hub id"))


# --------------------------------------------------------------------------- the setup being estimated


@dataclass(frozen=True)
class Setup:
    """Everything the estimate depends on, as plain data (built from a launch plan by `setup_from_plan`)."""

    task: str  # sft | dpo
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
        """Sequences in one forward: DPO concatenates chosen and rejected."""
        return self.micro_batch * (2 if self.task == "dpo" else 1)

    @property
    def tokens(self) -> int:
        return self.rows * self.max_length


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
            "weights": _gib(self.weights),
            "gradients": _gib(self.gradients),
            "optimizer_states": _gib(self.optimizer),
            "reference_model": _gib(self.reference_model),
            "zero3_gather_buffers": _gib(self.zero3_buffers),
            "ddp_gradient_buckets": _gib(self.ddp_buckets),
            "activations": _gib(self.activations),
            "logits_lm_head": _gib(self.logits),
            "optimizer_step_temporaries": _gib(self.optimizer_step),
            "overhead": _gib(self.overhead),
        }


def _gib(x: float) -> float:
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
        opt = 0.0 if s.offload_optimizer else trainable * (master + states * 4) / world
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


# --------------------------------------------------------------------------- from a launch plan


def _train_values(task: str, train: dict[str, Any]) -> dict[str, Any]:
    """The run's train section over TRL's defaults (the resolved config only holds what a layer set)."""
    from alignkit.config.train import trl_snapshot

    defaults = {k: v.get("default") for k, v in trl_snapshot()["tasks"][task].items()}
    return {**defaults, **train}


_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "auto": 2}


def setup_from_plan(p: Any, arch: Arch) -> tuple[Setup, list[str]]:
    """A Setup from a LaunchPlan (what `alignkit sft|dpo --dry-run` prints), plus notes on assumptions."""
    from alignkit.launch.profiles import load_stack

    notes: list[str] = []
    cfg = p.config
    model, lora = cfg["model"], cfg.get("lora") or {}
    train = _train_values(p.task, cfg["train"])
    stack = load_stack(p.profile)
    device = "cpu" if stack.cpu else "cuda"
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

    packing = bool(train.get("packing")) if p.task == "sft" else False
    padding_free = bool(train.get("padding_free")) and p.task == "sft"
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


# --------------------------------------------------------------------------- the plan and what would make it fit


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


@dataclass
class MemoryPlan:
    launch: Any  # LaunchPlan
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
            "recipe": self.launch.config.get("recipe"),
            "profile": self.launch.profile,
            "device": s.device,
            "model": {"name": a.name, "source": a.source, "params": e.total_params,
                      "trainable_params": e.trainable_params,
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
                "reference_model": _reference_kind(s),
            },
            "breakdown_gib": e.breakdown_gib(),
            "activations_gib": {"with_checkpointing": _gib(e.activations_with_checkpointing),
                                "without_checkpointing": _gib(e.activations_without_checkpointing)},
            "total_gib": round(self.total_gib, 2),
            "fits": self.fits,
            "headroom_gib": round(self.mem_gib - self.total_gib, 2),
            "suggestions": [x.to_json() for x in self.suggestions],
            "notes": self.notes,
        }


def _reference_kind(s: Setup) -> str | None:
    if s.task != "dpo":
        return None
    if s.adaptation != "full":
        return "policy with the adapter disabled (no copy)"
    return "precomputed log-probs (no copy)" if s.precompute_ref else "frozen copy of the starting model"


def host_memory_gib() -> float | None:
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


def _memory_budget(setup: Setup, gpus_per_node: int, gpu_mem_gb: float | None) -> tuple[float, str]:
    if gpu_mem_gb is not None:
        if gpu_mem_gb <= 0:
            raise ConfigError(Problem("--gpu-mem-gb", f"must be positive (got {gpu_mem_gb})",
                                      "pass the memory of one GPU, e.g. --gpu-mem-gb 24 or 80"))
        return float(gpu_mem_gb), "--gpu-mem-gb"
    if setup.device == "cpu":
        ram = host_memory_gib() or 16.0
        return ram / max(1, gpus_per_node), f"host RAM {ram:.1f} GiB shared by {gpus_per_node} process(es)"
    found = detect_gpu_memory_gib()
    if found:
        return found, "nvidia-smi (smallest visible GPU)"
    return 80.0, "assumed 80 GiB (A100/H100 80GB); pass --gpu-mem-gb to plan for other GPUs"


def _arch_for(p: Any, model: str | None) -> Arch:
    if model:
        return resolve_arch(model)
    name = str(p.config["model"]["model_name_or_path"])
    from alignkit.demo.assets import demo_root

    if name.startswith(str(demo_root())) and not (Path(name) / "config.json").is_file():
        from alignkit.demo.assets import ensure_demo_assets

        ensure_demo_assets()
    try:
        return resolve_arch(name)
    except ConfigError as exc:
        raise ConfigError([Problem("--model", f"{pr.message} (model.model_name_or_path = {name})", pr.fix)
                           for pr in exc.problems]) from None


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


def plan_memory(req: PlanRequest, *, suggest: bool = True) -> MemoryPlan:
    """Resolve the run like `alignkit sft|dpo --dry-run`, estimate its memory, and (when it does not fit)
    find the changes that would make it fit."""
    from alignkit.launch.build import plan_run

    p = plan_run(req.task, recipe=req.recipe, profile=req.profile, config_files=list(req.config_files),
                 overrides=list(req.overrides), num_gpus=req.num_gpus, num_nodes=req.num_nodes, dry_run=True)
    arch = _arch_for(p, req.model)
    setup, notes = setup_from_plan(p, arch)
    mem, mem_source = _memory_budget(setup, p.gpus_per_node, req.gpu_mem_gb)
    if p.num_gpus_note:
        notes.insert(0, p.num_gpus_note)
    if setup.offload_optimizer or setup.offload_params:
        notes.append("DeepSpeed offload: optimizer states / parameters counted in host RAM, not on the GPU")
    if setup.optim.startswith("paged_"):
        notes.append(f"{setup.optim}: optimizer states are paged and can spill to host RAM under pressure")
    plan = MemoryPlan(launch=p, setup=setup, estimate=estimate(setup), mem_gib=mem, mem_source=mem_source,
                      notes=notes)
    if suggest and not plan.fits:
        plan.suggestions = suggestions(plan, req)
    return plan


def _fits(s: Setup, mem: float) -> tuple[bool, float]:
    total = estimate(s).total / GIB
    return total <= mem, total


def _micro_batch_flags(plan_or_launch: Any, s: Setup) -> list[str]:
    flags = [f"--per_device_train_batch_size={s.micro_batch}"]
    launch = plan_or_launch
    managed = launch.config["launch"].get("global_batch_size") is not None and \
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


def _profile_with(profile: str, adaptation_profile: str) -> str:
    from alignkit.launch.profiles import load_stack

    stack = load_stack(profile)
    modifiers = [n for n, spec in zip(stack.names, stack.specs) if spec.modifier]
    return ",".join([adaptation_profile, *modifiers])


def _alternative(req: PlanRequest, *, profile: str | None = None, num_gpus: int | None = None,
                 num_nodes: int | None = None, micro_batch: int | None = None) -> tuple[MemoryPlan | None, list[str]]:
    """Re-plan with another profile or cluster shape. When the global batch cannot be split over the new world
    size at the current micro-batch, retry with the largest micro-batch that splits it (its flag is returned)."""
    alt = replace(req, profile=profile or req.profile, num_gpus=num_gpus or req.num_gpus,
                  num_nodes=num_nodes or req.num_nodes)
    try:
        return plan_memory(alt, suggest=False), []
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
                return plan_memory(replace(alt, overrides=(*alt.overrides, flag)), suggest=False), [flag]
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


def suggestions(plan: MemoryPlan, req: PlanRequest, limit: int = 5) -> list[Suggestion]:
    """Changes that make the run fit, least invasive first: checkpointing, micro-batch (global batch kept),
    precomputed DPO reference, then LoRA/QLoRA, more GPUs (ZeRO-3 shards), then a shorter max_length."""
    from alignkit.launch.profiles import load_stack

    s, mem, launch = plan.setup, plan.mem_gib, plan.launch
    out: list[Suggestion] = []
    for change, flags, cand in _tweaks(s, mem, launch):
        out.append(Suggestion(change, flags, estimate(cand).total / GIB, mem, cand))

    current = load_stack(launch.profile).adaptation
    recipe_note = " (the recipe's variant for it)" if req.recipe else ""
    for adapt in {"full": ["lora", "qlora"], "lora": ["qlora"], "qlora": []}[current]:
        profile = _profile_with(launch.profile, adapt)
        gpu_flags: list[str] = []
        found = _fitting(_alternative(req, profile=profile, micro_batch=s.micro_batch))
        if found is None and s.device == "cuda":
            # the variant may be tuned for fewer GPUs (a QLoRA recipe's global batch on one GPU)
            alt, extra = _alternative(replace(req, num_gpus=None, num_nodes=None), profile=profile)
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
        profile = launch.profile if s.zero_stage == 3 else _profile_with(launch.profile, sharded)
        for world in (2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256):
            if world <= s.world_size:
                continue
            gpus, nodes = (world, 1) if world <= 8 else (8, world // 8)
            found = _fitting(_alternative(req, profile=profile, num_gpus=gpus, num_nodes=nodes,
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
