"""The `model` and `lora` sections: what is loaded and how it is adapted."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Dtype = Literal["auto", "bfloat16", "float16", "float32"]


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_name_or_path: str = Field(
        ...,
        description="Base model to train: a hub id, a local directory, or (DPO) the SFT output dir — "
        "a full model or a LoRA/QLoRA adapter, whose base is resolved from its adapter config.",
    )
    model_revision: str = Field("main", description="Hub revision (branch, tag or commit) of the model.")
    tokenizer_name_or_path: str | None = Field(
        None, description="Tokenizer to use when it is not the model's own."
    )
    dtype: Dtype = Field(
        "bfloat16", description="Dtype the weights are loaded in (bfloat16 on GPUs; float32 on CPU)."
    )
    attn_implementation: Literal["flash_attention_2", "flash_attention_3", "sdpa", "eager"] | None = Field(
        None,
        description="Attention kernel: flash_attention_2 when installed on CUDA, else sdpa. "
        "None lets the profile and what is installed decide.",
    )
    trust_remote_code: bool = Field(
        False, description="Run model code from the hub repository. Off unless you set it."
    )
    load_in_4bit: bool = Field(False, description="Quantize the base to 4 bits with bitsandbytes (QLoRA).")
    load_in_8bit: bool = Field(False, description="Quantize the base to 8 bits with bitsandbytes.")
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit quantization type.")
    bnb_4bit_use_double_quant: bool = Field(
        False, description="Also quantize the quantization constants (saves ~0.4 bit/param)."
    )
    bnb_4bit_compute_dtype: Dtype | None = Field(
        None, description="Dtype of 4-bit matmuls; defaults to `dtype`."
    )
    bnb_4bit_quant_storage: Dtype | Literal["uint8"] | None = Field(
        None, description="Storage dtype of 4-bit weights (set to the compute dtype for ZeRO-3 sharding)."
    )

    @model_validator(mode="after")
    def _one_quantization(self) -> "ModelConfig":
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("load_in_4bit and load_in_8bit are both set; choose one")
        return self


class LoraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Train LoRA adapters instead of all weights.")
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Modules that get adapters: 'all-linear' or a list of names."
    )
    modules_to_save: list[str] | None = Field(
        None, description="Modules trained fully and saved with the adapter (e.g. embed_tokens, lm_head)."
    )
    use_rslora: bool = Field(False, description="Rank-stabilized scaling alpha/sqrt(r).")
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
