"""Loading what a run trains: tokenizer with its chat template, model (dtype, attention kernel, 4-bit), LoRA
settings, TRL's training arguments, and the merged SFT adapter a DPO run may start from.

TRL 1.16's own helpers were checked and do not fit: trl.get_quantization_config takes the compute dtype from
`dtype` (alignkit has bnb_4bit_compute_dtype), trl.get_peft_config turns a one-module target list into a
string (a regex to peft), and there is no get_kbit_device_map in 1.16.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignkit.config.train import checkpointing_on
from alignkit.launch.run import is_complete, mark_complete
from alignkit.modeling import adapter_base, is_adapter_dir

if TYPE_CHECKING:  # pragma: no cover
    from alignkit.train.common import Run


def load_tokenizer(run: Run, model_path: str):
    """The tokenizer with the run's chat template applied (config > tokenizer's own > Zephyr fallback)."""
    from transformers import AutoTokenizer

    from alignkit.data.chat import apply_template

    m = run.config.model
    source = m.tokenizer_name_or_path or model_path
    tok = AutoTokenizer.from_pretrained(source, revision=m.model_revision, trust_remote_code=m.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token or tok.eos_token
    apply_template(tok, run.config.data)
    return tok


def torch_dtype(name: str | None):
    import torch

    if name in (None, "auto"):
        return "auto"
    return getattr(torch, name)


def attn_implementation(requested: str | None) -> str:
    """flash_attention_2 when installed on CUDA, else sdpa — unless the config says otherwise."""
    if requested:
        return requested
    import importlib.util

    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def _checkpointing_by_its_current_name(kwargs: dict[str, Any], cls) -> None:
    """transformers 5.23 renamed gradient_checkpointing(_kwargs) to activation_checkpointing(_kwargs) and warns
    on every run that uses the old name, which TRL's own default does. Configs keep the handbook's name;
    the trainer gets the current one, resolved the way transformers resolves it (the new name wins)."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(cls)}
    for old, new in (("gradient_checkpointing", "activation_checkpointing"),
                     ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs")):
        if new not in fields or old not in fields:
            continue  # an older transformers: nothing was renamed
        value = kwargs.pop(old, fields[old].default)
        if kwargs.get(new) is None and value not in (None, dataclasses.MISSING):
            kwargs[new] = value


def liger_on_cuda() -> bool:
    """Liger kernels can run here: the package is installed and a CUDA GPU is visible."""
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None


def model_kwargs(run: Run) -> dict[str, Any]:
    """Keyword arguments of `from_pretrained`: dtype, attention, quantization, device placement."""
    import torch

    m = run.config.model
    kwargs: dict[str, Any] = {
        "revision": m.model_revision,
        "trust_remote_code": m.trust_remote_code,
        "dtype": torch_dtype(m.dtype),
        "attn_implementation": attn_implementation(m.attn_implementation),
    }
    if m.load_in_4bit or m.load_in_8bit:
        from accelerate import PartialState
        from transformers import BitsAndBytesConfig

        compute = torch_dtype(m.bnb_4bit_compute_dtype or m.dtype)
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=m.load_in_4bit,
            load_in_8bit=m.load_in_8bit,
            bnb_4bit_quant_type=m.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=m.bnb_4bit_use_double_quant,
            bnb_4bit_compute_dtype=None if compute == "auto" else compute,
            bnb_4bit_quant_storage=torch_dtype(m.bnb_4bit_quant_storage) if m.bnb_4bit_quant_storage else torch.uint8,
        )
        # each DDP process keeps its own quantized copy on its own device
        device = PartialState().process_index if torch.cuda.is_available() else "cpu"
        kwargs["device_map"] = {"": device}
    if checkpointing_on(run.config.train):
        kwargs["use_cache"] = False
    return kwargs


def load_model(path: str, run: Run, **overrides):
    from transformers import AutoModelForCausalLM

    kwargs = {**model_kwargs(run), **overrides}
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def peft_config(run: Run):
    """LoRA settings as a peft.LoraConfig, or None for full fine-tuning."""
    lora = run.config.lora
    if not lora.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        modules_to_save=lora.modules_to_save,
        use_rslora=lora.use_rslora,
        use_dora=lora.use_dora,
        bias="none",
        task_type="CAUSAL_LM",
    )


def trainer_args(run: Run, cls, **fixed: Any):
    """SFTConfig / DPOConfig / ORPOConfig from the run's `train` section (TRL's own field names); `fixed`: what
    the recipe sets itself (CPT's dataset_text_field)."""
    data = run.config.data
    kwargs = {**run.config.train.model_dump(exclude_unset=True), **fixed}
    kwargs["output_dir"] = str(run.output_dir)
    if data.preprocessing_num_workers:
        kwargs["dataset_num_proc"] = data.preprocessing_num_workers
    kwargs.setdefault("run_name", run.output_dir.name)
    _checkpointing_by_its_current_name(kwargs, cls)
    if "use_liger_kernel" not in kwargs and liger_on_cuda():
        # Liger's Triton layer kernels (RMSNorm, SwiGLU, RoPE) when installed on CUDA; TRL 1.16 keeps its own
        # fused LM head for the loss. Deprecated in TRL (use_kernels from the Hub replaces it) but still the
        # offline way to these kernels: on unless the config sets use_liger_kernel itself.
        kwargs["use_liger_kernel"] = True
        warnings.filterwarnings("ignore", message=r"`use_liger_kernel=True` is deprecated", category=FutureWarning)
    # alignkit pushes once, from the main process, after the final save (see push_to_hub below);
    # the Trainer's own pushes on every save hang multi-GPU runs (handbook #198)
    kwargs.pop("push_to_hub", None)
    return cls(**kwargs)


# --------------------------------------------------------------------------- starting from an adapter


def merge_adapter(adapter_dir: str, out_dir: Path, *, dtype: str = "bfloat16", trust_remote_code: bool = False) -> Path:
    """Load the adapter's base in full precision (never 4-bit: merging into quantized weights is lossy),
    merge the adapter, save a full model + tokenizer to `out_dir` atomically (temp dir, then rename)."""
    import shutil
    import tempfile

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = adapter_base(adapter_dir)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code)
    model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        try:
            AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(tmp)
        except (OSError, ValueError):
            AutoTokenizer.from_pretrained(base).save_pretrained(tmp)
        mark_complete(tmp, {"adapter": str(adapter_dir), "base": base})
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def start_model(run: Run, state) -> tuple[str, str]:
    """(path to load, what it is) for the policy. An SFT adapter is merged into its base first, so that a
    new adapter trains on the SFT model and never points at the wrong base (handbook #99)."""
    path = run.config.model.model_name_or_path
    if not is_adapter_dir(path):
        return path, path
    base = adapter_base(path)
    merged = run.layout.merged_dir
    if state.is_main_process and not is_complete(merged):
        dtype = run.config.model.dtype if run.config.model.dtype != "auto" else "bfloat16"
        merge_adapter(path, merged, dtype=dtype, trust_remote_code=run.config.model.trust_remote_code)
    state.wait_for_everyone()
    return str(merged), f"{base} + SFT adapter {path} (merged into {merged})"
