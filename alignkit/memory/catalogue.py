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
