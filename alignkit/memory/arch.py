"""A model's shapes, without loading it: from a size ("7b"), a local ``config.json`` (or a LoRA adapter
directory, planned for its base), alignkit's catalogue of hub ids, or the local Hugging Face cache.

Nothing here imports torch or touches the network.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from alignkit.errors import ConfigError, Problem
from alignkit.memory.catalogue import KNOWN_MODELS, SIZES


@dataclass(frozen=True)
class Arch:
    """A decoder-only transformer's shapes (Llama family layout: q/k/v/o, gated MLP, RMSNorm; the fields below
    cover Gemma, Mixtral's experts and StarCoder2's biased, ungated MLP and LayerNorms)."""

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
    linear_bias: bool = False  # every linear layer has a bias (StarCoder2's use_bias)
    norm_bias: bool = False  # LayerNorm with a bias instead of RMSNorm (StarCoder2)
    mlp_names: tuple[str, str] = ("up_proj", "down_proj")  # the MLP's in/out projections (StarCoder2: c_fc, c_proj)
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
        up, down = self.mlp_names
        out = {
            "q_proj": (h, self.q_dim, 1),
            "k_proj": (h, self.kv_dim, 1),
            "v_proj": (h, self.kv_dim, 1),
            "o_proj": (self.q_dim, h, 1),
            up: (h, i, self.experts),
            down: (i, h, self.experts),
        }
        if self.gated_mlp:
            out["gate_proj"] = (h, i, self.experts)
        return out

    def layer_linear_params(self) -> int:
        return sum(a * b * n for a, b, n in self.linears().values())

    def layer_params(self) -> int:
        extra = 2 * self.hidden * (2 if self.norm_bias else 1)  # two norms
        if self.attention_bias or self.linear_bias:
            extra += self.q_dim + 2 * self.kv_dim
        if self.linear_bias:
            extra += sum(fan_out * n for name, (_, fan_out, n) in self.linears().items()
                         if name not in ("q_proj", "k_proj", "v_proj"))
        if self.experts > 1:
            extra += self.hidden * self.experts  # router
        return self.layer_linear_params() + extra

    def expert_params(self) -> int:
        """Parameters of one expert of one layer (MoE; 0 for a dense model)."""
        if self.experts <= 1:
            return 0
        return sum(fan_in * fan_out + (fan_out if self.linear_bias else 0)
                   for fan_in, fan_out, n in self.linears().values() if n == self.experts)

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
        final_norm = self.hidden * (2 if self.norm_bias else 1)
        return self.embed_params + self.head_params + self.layers * self.layer_params() + final_norm

    @property
    def active_params(self) -> int:
        """Parameters one token runs through: a MoE model's total less its unused experts (all are stored,
        trained and sharded; only `experts_per_token` of them make activations)."""
        unused = self.layers * (self.experts - self.experts_per_token) * self.expert_params()
        return self.total_params - unused

    def describe(self) -> str:
        return (f"{self.total_params / 1e9:.2f}B params: hidden {self.hidden}, {self.layers} layers, MLP "
                f"{self.intermediate}, vocab {self.vocab}, {self.heads} heads / {self.kv_heads} KV"
                + (", tied embeddings" if self.tied else "")
                + (f", MoE {self.experts_per_token} of {self.experts} experts "
                   f"({self.active_params / 1e9:.1f}B active)" if self.experts > 1 else ""))


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
            starcoder2 = model_type == "starcoder2"  # biased linears (use_bias, default true), LayerNorm, c_fc/c_proj
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
                linear_bias=starcoder2 and bool(cfg.get("use_bias", True)),
                norm_bias=starcoder2,
                mlp_names=("c_fc", "c_proj") if starcoder2 else ("up_proj", "down_proj"),
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
