"""What sft.py and dpo.py share: reading the run file, loading tokenizer and model, checkpoints, outputs.

Runs inside every training process that accelerate starts. Nothing here trains: TRL's trainers do.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.config.train import checkpointing_on
from alignkit.fsutil import write_atomic, write_json_atomic
from alignkit.launch.run import RunDir, RunFile, is_complete, mark_complete
from alignkit.modeling import adapter_base, is_adapter_dir


# --------------------------------------------------------------------------- the run file


@dataclass
class Run:
    """The run file this process was started with, and where it lies."""

    path: Path
    file: RunFile

    @property
    def config(self):  # the task's RunConfig
        return self.file.config

    @property
    def output_dir(self) -> Path:
        return Path(self.config.train.output_dir)

    @property
    def layout(self) -> RunDir:
        return RunDir.of(self.output_dir)


def parse_args(argv: list[str] | None = None) -> Path:
    import argparse

    parser = argparse.ArgumentParser(description="alignkit training entry point (started by accelerate)")
    parser.add_argument("--run", required=True, type=Path, help="<output_dir>/alignkit/run.yaml")
    return parser.parse_args(argv).run


def load_run(path: Path, task: str) -> Run:
    return Run(path=path, file=RunFile.load(path, task))


# --------------------------------------------------------------------------- tokenizer and model


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


def trainer_args(run: Run, cls):
    """SFTConfig / DPOConfig from the run's `train` section (TRL's own field names)."""
    data = run.config.data
    kwargs = run.config.train.model_dump(exclude_unset=True)
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


# --------------------------------------------------------------------------- checkpoints


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Checkpoints whose writing finished (they carry our marker), oldest first."""
    return [p for p in RunDir.of(output_dir).checkpoints() if is_complete(p)]


def rotate_checkpoints(output_dir: Path, limit: int | None, keep: str | None = None) -> list[Path]:
    """Delete the oldest complete checkpoints beyond ``limit`` (save_total_limit), never ``keep`` (the best
    one). Main process only, after the newest checkpoint is marked complete."""
    import shutil

    if not limit:
        return []
    done = complete_checkpoints(output_dir)
    kept = {Path(keep).resolve()} if keep else set()
    removed = []
    for p in done[:-limit]:
        if p.resolve() not in kept:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def clean_incomplete_checkpoints(output_dir: Path) -> list[Path]:
    """Delete checkpoints a killed run left half-written (no marker). Main process only."""
    import shutil

    removed = []
    for p in RunDir.of(output_dir).checkpoints():
        if not is_complete(p):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def resume_checkpoint(run: Run) -> str | None:
    done = complete_checkpoints(run.output_dir)
    return str(done[-1]) if done else None


class Stopper:
    """SIGTERM / SIGUSR1 (Slurm preemption, `kill`): save a checkpoint at the end of the current step and
    stop. The second signal is not caught (a stuck run can still be killed)."""

    signals = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.requested: int | None = None
        for s in self.signals:
            signal.signal(s, self._handle)

    def _handle(self, signum, _frame) -> None:
        self.requested = signum
        for s in self.signals:
            signal.signal(s, signal.SIG_DFL)


def callbacks(stopper: Stopper) -> list:
    """Trainer callbacks: mark complete checkpoints; stop with a checkpoint on a signal."""
    from transformers import TrainerCallback

    class MarkComplete(TrainerCallback):
        """Marks each checkpoint complete after the Trainer wrote it, and only then deletes old ones. The
        Trainer's own rotation (save_total_limit) runs before any callback sees the new checkpoint: a kill
        between the two would leave only an unmarked checkpoint (with save_total_limit=1, as in the Zephyr
        recipes: all progress lost). So the limit is taken over here."""

        limit: int | None = None

        def on_init_end(self, args, state, control, **kwargs):
            self.limit, args.save_total_limit = args.save_total_limit, None
            return control

        def on_save(self, args, state, control, **kwargs):
            _barrier()
            if state.is_world_process_zero:
                ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                _test_sleep(TEST_SLOW_SAVE)
                if ckpt.is_dir():
                    mark_complete(ckpt, {"global_step": state.global_step,
                                         "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
                    rotate_checkpoints(Path(args.output_dir), self.limit, keep=state.best_model_checkpoint)
            _barrier()
            return control

    class StopOnSignal(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            _test_sleep(TEST_SLOW_STEP)
            return control

        def on_step_end(self, args, state, control, **kwargs):
            if _any_rank(stopper.requested is not None):
                control.should_save = True
                control.should_training_stop = True
            return control

    return [MarkComplete(), StopOnSignal()]


# Test hooks (tests/robustness/test_faults.py), no effect unless set:
#   ALIGNKIT_TEST_SLOW_SAVE=SECONDS sleeps after the Trainer wrote a checkpoint and before it is marked
#     complete, so that a test can SIGKILL a run while a checkpoint is being written;
#   ALIGNKIT_TEST_SLOW_STEP=SECONDS sleeps at the start of every optimizer step, so that a signal lands
#     during a step (a tiny model's steps take milliseconds);
#   ALIGNKIT_TEST_SLOW_EXIT=SECONDS sleeps after the run is saved and marked completed, so that a signal
#     lands between the end of the run and the end of its processes.
TEST_SLOW_SAVE = "ALIGNKIT_TEST_SLOW_SAVE"
TEST_SLOW_STEP = "ALIGNKIT_TEST_SLOW_STEP"
TEST_SLOW_EXIT = "ALIGNKIT_TEST_SLOW_EXIT"


def _test_sleep(variable: str) -> None:
    delay = os.environ.get(variable)
    if delay:
        try:
            time.sleep(float(delay))
        except ValueError:
            pass


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _any_rank(flag: bool) -> bool:
    """True on every rank when it is true on one (signals may reach ranks at different steps)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device="cuda" if torch.cuda.is_available() else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


# --------------------------------------------------------------------------- outputs


def write_status(run: Run, state: str, **extra: Any) -> None:
    run.layout.write_status(state, **extra)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def write_env(run: Run, state) -> None:
    from alignkit.envinfo import collect

    info = collect()
    info.update(git_commit=git_commit(), argv=run.file.argv, world_size=state.num_processes,
                distributed_type=str(state.distributed_type), python_executable=sys.executable)
    info.pop("accelerate_default_config", None)
    write_json_atomic(run.layout.env_file, info)


def describe_model(model) -> dict[str, Any]:
    """What was actually loaded: parameter counts (ZeRO-3 aware) and quantized linear layers."""
    counts: dict[str, int] = {}
    total = trainable = 0
    for module in model.modules():
        cls = type(module)
        if cls.__module__.startswith("bitsandbytes") and cls.__name__ in ("Linear4bit", "Linear8bitLt"):
            counts[cls.__name__] = counts.get(cls.__name__, 0) + 1
    for p in model.parameters():
        n = getattr(p, "ds_numel", None) or p.numel()
        if type(p).__name__ == "Params4bit":
            n *= 2  # two 4-bit values per stored byte
        total += n
        trainable += n if p.requires_grad else 0
    return {"class": type(model).__name__, "total_params": total, "trainable_params": trainable,
            "quantized_linear": counts, "dtype": str(next(model.parameters()).dtype),
            "zero3_partitioned": any(hasattr(p, "ds_id") for p in model.parameters())}


def speed_settings(trainer) -> dict[str, Any]:
    """The speed-related choices in effect, as the trainer has them (what the dry run said would be decided
    on the training machine: attention kernel, Liger, padding-free, batching, checkpointing)."""
    args = trainer.args
    model = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
    return {"attn_implementation": getattr(getattr(model, "config", None), "_attn_implementation", None),
            "use_liger_kernel": bool(args.use_liger_kernel),
            "padding_free": bool(getattr(trainer, "padding_free", False)),
            "packing": bool(getattr(args, "packing", False)),
            "train_sampling_strategy": str(getattr(args, "train_sampling_strategy", "random")),
            "gradient_checkpointing": bool(args.gradient_checkpointing)}


def write_model_summary(run: Run, trainer) -> dict[str, Any]:
    info = {**describe_model(trainer.model), "speed": speed_settings(trainer)}
    write_json_atomic(run.layout.model_file, info)
    return info


def finalize_model(trainer, tokenizer) -> None:
    """eos on the generation config and use_cache back on, so the saved model generates well."""
    model = trainer.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base, "generation_config", None) is not None and tokenizer.eos_token_id is not None:
        base.generation_config.eos_token_id = tokenizer.eos_token_id
        base.generation_config.pad_token_id = tokenizer.pad_token_id
    base.config.use_cache = True


def write_model_card(trainer, run: Run, base_model: str, datasets: list[str]) -> None:
    """TRL's model card plus what alignkit knows: recipe, profile, version, the command."""
    from alignkit import __version__

    try:
        trainer.create_model_card(model_name=run.output_dir.name, dataset_name=", ".join(datasets) or None,
                                  tags=["alignkit", run.config.task])
    except Exception:  # noqa: BLE001 - the card is documentation, never a reason to lose a trained model
        pass
    readme = run.output_dir / "README.md"
    head = readme.read_text() if readme.exists() else f"# {run.output_dir.name}\n"
    argv = " ".join(run.file.argv)
    section = (
        "\n## Trained with alignkit\n\n"
        f"- alignkit {__version__}, task `{run.config.task}`, recipe `{run.config.recipe}`, "
        f"profile `{run.config.profile}`\n"
        f"- base model: `{base_model}`\n"
        f"- datasets: {', '.join(f'`{d}`' for d in datasets) or '-'}\n"
        f"- command: `{argv}`\n"
        f"- full resolved config: `alignkit/run.yaml`; library versions: `alignkit/env.json`\n"
    )
    write_atomic(readme, head.rstrip() + "\n" + section)


def push_to_hub(run: Run) -> None:
    """Upload the final model from the main process only (never inside a collective: handbook #198)."""
    from huggingface_hub import HfApi

    train = run.config.train
    repo = train.hub_model_id or run.output_dir.name
    api = HfApi()
    api.create_repo(repo, private=bool(train.hub_private_repo), exist_ok=True)
    api.upload_folder(folder_path=str(run.output_dir), repo_id=repo, revision=train.hub_revision,
                      ignore_patterns=["checkpoint-*", "runs/*", "alignkit/lock"])


def dataset_names(run: Run) -> list[str]:
    return list(dict.fromkeys(s.name for s in run.config.data.mixture))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


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


# --------------------------------------------------------------------------- the stages both recipes share


def check_world_size(run: Run, state) -> None:
    """Every process must see the world the launcher planned: a mismatch means the processes would each
    train alone on the same output dir (e.g. MULTI_GPU on a machine without CUDA and without use_cpu)."""
    planned = run.file.world_size
    if planned and state.num_processes != planned:
        raise RuntimeError(
            f"alignkit planned {planned} processes but this one sees a world of {state.num_processes} "
            f"({state.distributed_type}); refusing to train so that processes do not overwrite each other"
        )


def prepare_output_dir(run: Run, state, logger) -> str | None:
    """Drop half-written checkpoints, record the environment; return the checkpoint to resume from."""
    if state.is_main_process:
        for p in clean_incomplete_checkpoints(run.output_dir):
            logger.warning("removed incomplete checkpoint %s (its writer was killed)", p)
        write_env(run, state)
    state.wait_for_everyone()
    resume_from = resume_checkpoint(run)
    if resume_from:
        logger.info("resuming from %s", resume_from)
    return resume_from


def train(run: Run, trainer, state, stopper: Stopper, resume_from: str | None, logger) -> bool:
    """trainer.train(); False when a signal stopped it (a checkpoint was saved and the status says so)."""
    if state.is_main_process:
        logger.info("model: %s", write_model_summary(run, trainer))
        write_status(run, "running")
    result = trainer.train(resume_from_checkpoint=resume_from)
    if stopper.requested is not None:
        if state.is_main_process:
            write_status(run, "preempted", global_step=trainer.state.global_step, checkpoint=resume_checkpoint(run))
        logger.warning("stopped by signal %s after saving a checkpoint; re-run to resume", stopper.requested)
        return False
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    return True


def evaluate(trainer) -> None:
    if trainer.eval_dataset is not None:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)


def save(run: Run, trainer, tokenizer, state, base_model: str) -> None:
    """The final model or adapter with tokenizer and chat template, model card, optional Hub push."""
    finalize_model(trainer, tokenizer)
    trainer.save_model(str(run.output_dir))
    if state.is_main_process:
        tokenizer.save_pretrained(str(run.output_dir))
        write_model_card(trainer, run, base_model, dataset_names(run))
        if run.config.train.push_to_hub:
            push_to_hub(run)
        write_status(run, "completed", global_step=trainer.state.global_step)
        _test_sleep(TEST_SLOW_EXIT)
    state.wait_for_everyone()
