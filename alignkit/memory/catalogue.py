"""The shapes of models alignkit knows without the network: hub ids (lower case) and sizes such as ``7b``.

Each entry holds the numbers of the model's published ``config.json`` (hidden_size, num_hidden_layers,
intermediate_size, vocab_size, num_attention_heads, num_key_value_heads, head_dim, tie_word_embeddings, ...)
as keyword arguments of :class:`alignkit.memory.arch.Arch`. Anything else is read from a local directory's
``config.json`` or the Hugging Face cache (alignkit.memory.arch.resolve_arch).
"""

from __future__ import annotations

from typing import Any


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
_MIXTRAL_8X7B = _a(4096, 32, 14336, 32000, 32, 8, experts=8, experts_per_token=2, max_position=32768)

# --- the alignment-handbook's recipe families (the ids its recipes name in model_name_or_path, 2023-11..2025-07).
# Each recipe sets chat_template in its YAML, so its SFT/DPO outputs keep their base's shapes (no tokens added).

# zephyr-7b-gemma: google/gemma-7b config.json: hidden_size 3072, num_hidden_layers 28, intermediate_size 24576
# (GeGLU), num_attention_heads 16 of head_dim 256 (queries 4096 wide, wider than hidden), num_key_value_heads 16,
# vocab_size 256000, max_position_embeddings 8192, embeddings tied (GemmaConfig's default): 8.54B parameters.
_GEMMA_7B = _a(3072, 28, 24576, 256000, 16, 16, head_dim=256, tied=True, max_position=8192)
# zephyr-141b-A35b (ORPO): mistral-community/Mixtral-8x22B-v0.1 config.json: hidden_size 6144, num_hidden_layers 56,
# intermediate_size 16384 per expert, num_attention_heads 48, num_key_value_heads 8, vocab_size 32000,
# num_local_experts 8, num_experts_per_tok 2, max_position_embeddings 65536, tie_word_embeddings false:
# 140.6B parameters stored and trained (every expert), 39.2B active per token (2 of the 8 experts).
_MIXTRAL_8X22B = _a(6144, 56, 16384, 32000, 48, 8, experts=8, experts_per_token=2, max_position=65536)
# starchat2-15b: bigcode/starcoder2-15b config.json: hidden_size 6144, num_hidden_layers 40, intermediate_size 24576
# (an ungated GELU MLP, c_fc/c_proj), num_attention_heads 48, num_key_value_heads 4, vocab_size 49152,
# use_bias true (every linear layer), norm_type layer_norm, max_position_embeddings 16384, tie_word_embeddings
# false: 15.96B parameters.
_STARCODER2_15B = _a(6144, 40, 24576, 49152, 48, 4, gated_mlp=False, linear_bias=True, norm_bias=True,
                     mlp_names=("c_fc", "c_proj"), max_position=16384)
# smollm: HuggingFaceTB/SmolLM-{135M,360M,1.7B} config.json (Llama layout, vocab_size 49152, embeddings tied,
# max_position_embeddings 2048); SmolLM2 has the same shapes with an 8192-token context (_SMOLLM2 above).
_SMOLLM = {
    "135m": _a(576, 30, 1536, 49152, 9, 3, tied=True, max_position=2048),
    "360m": _a(960, 32, 2560, 49152, 15, 5, tied=True, max_position=2048),
    "1.7b": _a(2048, 24, 8192, 49152, 32, 32, tied=True, max_position=2048),
}
# smollm3: HuggingFaceTB/SmolLM3-3B(-Base) config.json (model_type smollm3, Llama layout with NoPE layers: no
# parameter of its own): hidden_size 2048, num_hidden_layers 36, intermediate_size 11008, num_attention_heads 16,
# num_key_value_heads 4, vocab_size 128256, tie_word_embeddings true, max_position_embeddings 65536: 3.08B.
_SMOLLM3_3B = _a(2048, 36, 11008, 128256, 16, 4, tied=True, max_position=65536)

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
    # the handbook's recipe families
    "google/gemma-7b": _GEMMA_7B,  # zephyr-7b-gemma sft
    "google/gemma-7b-it": _GEMMA_7B,
    "huggingfaceh4/zephyr-7b-gemma-sft-v0.1": _GEMMA_7B,  # zephyr-7b-gemma dpo
    "huggingfaceh4/zephyr-7b-gemma-v0.1": _GEMMA_7B,
    "mistral-community/mixtral-8x22b-v0.1": _MIXTRAL_8X22B,  # zephyr-141b-A35b orpo
    "huggingfaceh4/zephyr-orpo-141b-a35b-v0.1": _MIXTRAL_8X22B,
    "bigcode/starcoder2-15b": _STARCODER2_15B,  # starchat2-15b sft
    "huggingfaceh4/starchat2-15b-sft-v0.1": _STARCODER2_15B,  # starchat2-15b dpo
    "huggingfaceh4/starchat2-15b-v0.1": _STARCODER2_15B,
    **{f"huggingfacetb/smollm-{k}": v for k, v in _SMOLLM.items()},  # smollm sft (360M)
    **{f"huggingfacetb/smollm-{k}-instruct": v for k, v in _SMOLLM.items()},
    "loubnabnl/smollm2-1.7b-sft": _SMOLLM2["1.7b"],  # smollm2 dpo
    "loubnabnl/smollm2-360m-sft": _SMOLLM2["360m"],  # smollm2 dpo (smol)
    "huggingfacetb/smollm3-3b": _SMOLLM3_3B,
    "huggingfacetb/smollm3-3b-base": _SMOLLM3_3B,  # smollm3 mid-training
    "huggingfacetb/smollm3-3b-checkpoints": _SMOLLM3_3B,  # smollm3 sft (it-mid-training) and apo (it-SFT)
    "huggingfacetb/smollm3-sft": _SMOLLM3_3B,
    # constitutional-ai dpo and pref_align_scan: Mistral-7B fine-tunes (the CAI SFT sets chat_template: no new
    # tokens; OpenHermes-2.5 added the two ChatML tokens <|im_end|> and <|im_start|>: vocab_size 32002)
    "alignment-handbook/mistral-7b-sft-constitutional-ai": _MISTRAL_7B,
    "teknium/openhermes-2.5-mistral-7b": {**_MISTRAL_7B, "vocab": 32002},
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
