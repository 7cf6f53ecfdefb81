"""Build the launch plan: cluster shape, batch arithmetic, accelerate/DeepSpeed configs, the command.

Nothing here starts a process, touches the network or loads a model: a dry run of a 7B recipe works on
an offline laptop.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from alignkit.config.resolve import Resolved, resolve_config
from alignkit.config.train import checkpointing_on
from alignkit.errors import ConfigError, Problem
from alignkit.launch.spec import BatchMath, LaunchPlan, profile_label
from alignkit.launch.run import RunDir


def detect_gpus() -> int:
    """CUDA GPUs visible to this process, without importing torch (nvidia-smi + CUDA_VISIBLE_DEVICES)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v for v in visible.split(",") if v.strip() and v.strip() != "-1"]
        if not ids:
            return 0
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    count = sum(1 for line in out.splitlines() if line.startswith("GPU "))
    return min(count, len(ids)) if visible is not None else count


def accelerate_executable() -> list[str]:
    """`accelerate` next to this interpreter (a venv need not be activated), else on PATH."""
    local = Path(sys.executable).parent / "accelerate"
    if local.exists():
        return [str(local)]
    found = shutil.which("accelerate")
    return [found] if found else [sys.executable, "-m", "accelerate.commands.accelerate_cli"]


def _processes_per_node(resolved: Resolved, num_gpus: int | None, dry_run: bool) -> tuple[int, str | None]:
    launch = resolved.config.launch
    if num_gpus is not None:
        return num_gpus, None
    if launch.num_gpus is not None:
        return launch.num_gpus, None
    if resolved.profile.cpu:
        return 1, None
    visible = detect_gpus()
    if visible:
        return visible, None
    if dry_run:
        ref = launch.reference_num_gpus or 1
        return ref, f"no GPU visible: planned for the recipe's reference count, {ref} per node (--num-gpus N to change)"
    raise ConfigError(
        Problem("--num-gpus", f"{profile_label(resolved.profile.name, resolved.profile_reason)} needs GPUs and none "
                "is visible",
                f"run on a GPU machine, add the cpu modifier (--profile {resolved.profile.name},cpu), "
                "or add --dry-run to only see the plan")
    )


def batch_math(resolved: Resolved, world_size: int) -> BatchMath:
    """Keep the global batch the recipe was tuned for by recomputing gradient accumulation."""
    train = resolved.config.train
    per_device = train.per_device_train_batch_size
    accum = train.gradient_accumulation_steps
    target = resolved.config.launch.global_batch_size
    # set in the user's --config file(s) or on the command line: respected as given
    user_set_accum = resolved.user_set("train", "gradient_accumulation_steps")
    if target is None or user_set_accum:
        return BatchMath(per_device, accum, world_size, per_device * accum * world_size, target, False)
    per_step = per_device * world_size
    if target % per_step:
        # the smallest few are shown; a huge or prime global batch must not make this search run for hours
        search = range(1, min(target, 1 << 16) + 1)
        worlds = [w for w in search if target % (per_device * w) == 0][:12]
        micro = [b for b in search if target % (b * world_size) == 0][:12]
        fixes = [f"use a world size (--num-gpus x --num-nodes) in {worlds[:12]}"] if worlds else []
        if micro:
            fixes.append(f"--per_device_train_batch_size in {micro[:12]}")
        fixes.append(f"--launch.global_batch_size=null to keep gradient_accumulation_steps={accum} "
                     f"(global batch {per_step * accum})")
        raise ConfigError(
            Problem("launch.global_batch_size",
                    f"{target} cannot be split into {world_size} processes x {per_device} per device",
                    ", or ".join(fixes), resolved.source_of("launch", "global_batch_size"))
        )
    new_accum = target // per_step
    return BatchMath(per_device, new_accum, world_size, target, target, new_accum != accum)


def _accelerate_config(resolved: Resolved, world_size: int, num_nodes: int, ds_path: str | None) -> dict:
    stack = resolved.profile
    acc: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "distributed_type": "NO",
        "downcast_bf16": "no",
        "machine_rank": 0,
        "main_training_function": "main",
        "mixed_precision": "no",
        "num_machines": num_nodes,
        "num_processes": world_size,
        "rdzv_backend": "static",
        "same_network": True,
        "tpu_env": [],
        "tpu_use_cluster": False,
        "tpu_use_sudo": False,
        "use_cpu": False,
    }
    from alignkit.config.profiles import deep_merge

    acc = deep_merge(acc, stack.accelerate)
    if stack.uses_deepspeed:
        ds = dict(acc.get("deepspeed_config") or {})
        ds["deepspeed_config_file"] = ds_path
        ds.setdefault("zero3_init_flag", True)
        ds["deepspeed_multinode_launcher"] = "standard"
        acc["deepspeed_config"] = ds
        # with a DeepSpeed config file, precision lives in that file ("auto" follows train.bf16)
        acc.pop("mixed_precision", None)
    elif stack.cpu:
        # several CPU processes need the MULTI_GPU type (gloo); `--cpu` would silently run one
        acc["distributed_type"] = "MULTI_GPU" if world_size > 1 else "NO"
        acc["use_cpu"] = world_size == 1
    if not stack.cpu:
        acc["gpu_ids"] = "all"
    if resolved.config.launch.main_process_port:
        acc["main_process_port"] = resolved.config.launch.main_process_port
    return acc


def plan_from_resolved(
    resolved: Resolved, *, num_gpus: int | None = None, num_nodes: int | None = None, dry_run: bool = False,
    via_accelerate: bool = False,
) -> LaunchPlan:
    """The launch plan of a resolved config. via_accelerate: always `accelerate launch` (Slurm jobs, whose
    environment is the compute node's), whatever launch.launcher says."""
    per_node, note = _processes_per_node(resolved, num_gpus, dry_run)
    nodes = num_nodes if num_nodes is not None else resolved.config.launch.num_nodes
    if per_node < 1:
        raise ConfigError(Problem("--num-gpus", "must be at least 1", "pass --num-gpus N with N >= 1"))
    if nodes < 1:
        raise ConfigError(Problem("--num-nodes", "must be at least 1", "pass --num-nodes N with N >= 1"))
    world = per_node * nodes
    batch = batch_math(resolved, world)

    # the plan's shape edits, made on the typed config and validated once, here: nothing unchecked reaches the child
    cfg = resolved.config
    # absolute and normalized: "../x" from another working dir is the same run dir, never ".../a/../x"
    out_dir = Path(os.path.abspath(os.path.expanduser(cfg.train.output_dir or "trainer_output")))
    train_edits: dict[str, Any] = {"output_dir": str(out_dir),
                                   "gradient_accumulation_steps": batch.gradient_accumulation_steps}
    if resolved.profile.cpu:
        # DDP on CPU needs use_cpu (accelerate then runs MULTI_CPU over gloo); under DeepSpeed it must be
        # off, or accelerate drops DeepSpeed for plain MULTI_CPU. Several processes need the gloo backend
        # named, or accelerate counts a world of one under DeepSpeed; one process must not name it.
        train_edits["use_cpu"] = not resolved.profile.uses_deepspeed
        if world > 1:
            train_edits["ddp_backend"] = "gloo"
    config = cfg.model_copy(update={
        "train": _edited(cfg.train, train_edits, "train"),
        "launch": _edited(cfg.launch, {"num_gpus": per_node, "num_nodes": nodes}, "launch"),
    })
    rdir = RunDir.of(out_dir)
    ds_path = str(rdir.deepspeed_config) if resolved.profile.uses_deepspeed else None
    acc = _accelerate_config(resolved, world, nodes, ds_path)
    deepspeed = resolved.profile.deepspeed if resolved.profile.uses_deepspeed else None

    accelerate_command = [
        *accelerate_executable(), "launch",
        "--config_file", str(rdir.accelerate_config),
        "--num_processes", str(world),
        "--num_machines", str(nodes),
        "--machine_rank", "0",
    ]
    if resolved.config.launch.main_process_port:
        accelerate_command += ["--main_process_port", str(resolved.config.launch.main_process_port)]
    accelerate_command += ["-m", f"alignkit.train.{resolved.task}", "--run", str(rdir.run_file)]
    env = {"ACCELERATE_LOG_LEVEL": "info"}
    if resolved.profile.cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["DS_ACCELERATOR"] = "cpu"  # said, not guessed: DeepSpeed warns "Setting accelerator to CPU" otherwise
    for layer in resolved.layers:  # variables a config asked for (wandb_project → WANDB_PROJECT, …)
        env.update(layer.env)
    direct = (world == 1 and not resolved.profile.uses_deepspeed and resolved.config.launch.launcher == "auto"
              and not via_accelerate)
    if direct:
        command = [sys.executable, "-m", f"alignkit.train.{resolved.task}", "--run", str(rdir.run_file)]
        env.update(accelerate_launch_env(acc))
    else:
        command = accelerate_command

    notes = list(resolved.plan_notes)
    if note:
        notes.append(note)
    if batch.adjusted:
        notes.append(
            f"gradient_accumulation_steps set to {batch.gradient_accumulation_steps} to keep the global batch "
            f"of {batch.global_batch_size} on {world} process{'es' if world > 1 else ''}"
        )
    notes += resolved.config.data.plan_notes()
    notes += _speed_notes(resolved)
    if direct:
        notes.append("one process: started without `accelerate launch` (its environment is set here), which saves "
                     "the 2-3 s its CLI spends importing torch (--launch.launcher=accelerate to use it anyway)")
    if resolved.config.model.trust_remote_code:
        notes.append("trust_remote_code is ON: the model repository's Python code will run")
    return LaunchPlan(
        task=resolved.task,
        profile=resolved.profile.name,
        num_nodes=nodes,
        gpus_per_node=per_node,
        num_gpus_note=note,
        world_size=world,
        batch=batch,
        accelerate_config=acc,
        deepspeed_config=deepspeed,
        config=config,
        output_dir=str(out_dir),
        command=command,
        accelerate_command=accelerate_command,
        env=env,
        notes=notes,
        translations=list(resolved.notes),
        warnings=list(resolved.warnings),
        profile_reason=resolved.profile_reason,
        overridden={
            f"{section}.{key}": src
            for (section, key), src in resolved.provenance.items()
            if resolved.user_set(section, key)
        },
    )


def _edited(section, edits: dict[str, Any], name: str):
    """``section`` with ``edits`` applied and validated (the set fields stay the set fields: the run file's
    `train` holds what some layer, or the plan, set)."""
    from pydantic import ValidationError

    try:
        return type(section).model_validate({**section.model_dump(exclude_unset=True), **edits})
    except ValidationError as exc:
        raise ConfigError([Problem(f"{name}.{'.'.join(str(x) for x in err['loc'])}",
                                   err["msg"].removeprefix("Value error, "), "check --num-gpus, --num-nodes and the "
                                   "batch settings") for err in exc.errors()]) from None


def accelerate_launch_env(acc: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment `accelerate launch --config_file <acc>` gives one training process, without importing
    accelerate (whose CLI imports torch): what accelerate 1.x's simple launcher sets (utils/launch.py,
    prepare_simple_launcher_cmd_env, and the thread default of commands/launch.py). A test runs the real
    `accelerate launch` on the same config and compares."""
    environ = os.environ if environ is None else environ
    use_cpu = bool(acc.get("use_cpu"))
    dynamo = acc.get("dynamo_config") or {}
    env = {
        "ACCELERATE_USE_CPU": str(use_cpu),
        "ACCELERATE_MIXED_PRECISION": str(acc.get("mixed_precision") or "no").lower(),
        "ACCELERATE_DYNAMO_BACKEND": str(dynamo.get("dynamo_backend", "no")).upper(),
        "ACCELERATE_DYNAMO_MODE": str(dynamo.get("dynamo_mode", "default")),
        "ACCELERATE_DYNAMO_USE_FULLGRAPH": str(bool(dynamo.get("dynamo_use_fullgraph", False))),
        "ACCELERATE_DYNAMO_USE_DYNAMIC": str(bool(dynamo.get("dynamo_use_dynamic", False))),
        "ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION": str(bool(dynamo.get("dynamo_use_regional_compilation",
                                                                           False))),
    }
    if use_cpu:
        env["KMP_AFFINITY"] = "granularity=fine,compact,1,0"
        env["KMP_BLOCKTIME"] = "1"
    threads = environ.get("OMP_NUM_THREADS", "")
    if not (threads.isdigit() and int(threads) > 0):
        threads = "1"
        if use_cpu:  # accelerate: one thread per physical core on a CPU run
            import psutil

            threads = str(max(1, int((psutil.cpu_count(logical=False) or 1) / max(int(acc["num_processes"]), 1))))
    env["OMP_NUM_THREADS"] = threads
    return env


def _speed_notes(resolved: Resolved) -> list[str]:
    """What the run turns on for speed and memory, and why. Choices that depend on the training machine
    (flash-attn, Liger) are made there, by the rule stated here; <output_dir>/alignkit/model.json records
    what was in effect."""
    cfg = resolved.config
    train = cfg.train
    notes = []
    if cfg.model.attn_implementation is None:
        notes.append("attention: flash_attention_2 when flash-attn is installed on CUDA, else sdpa")
    if "use_liger_kernel" not in train.model_fields_set:
        notes.append("Liger kernels (RMSNorm, SwiGLU, RoPE) when liger-kernel is installed on CUDA; the loss is "
                     "TRL's fused LM head either way (log-probs in chunks, never the full logits)")
    elif getattr(train, "use_liger_kernel", False):
        notes.append("Liger kernels on (set in the config; TRL 1.16 keeps its own fused LM head for the loss)")
    if getattr(train, "train_sampling_strategy", None) == "group_by_length":
        notes.append("batches of similar-length rows (train_sampling_strategy=group_by_length): less padding, "
                     "1.6x useful tokens/s on long-tailed chat data (bench/bench_tokens.py)")
    if resolved.task in ("sft", "cpt"):  # SFTConfig: packing and padding-free
        if getattr(train, "packing", False):
            notes.append(f"packing on ({getattr(train, 'packing_strategy', 'bfd')}): padding-free batches; with "
                         "flash-attention rows never attend to each other")
        elif getattr(train, "padding_free", False):
            notes.append("padding-free batches (no pad tokens; best with flash-attention)")
        else:
            notes.append("packing off (the recipe's steps and batch semantics); --packing=true packs rows "
                         "padding-free, faster on GPUs with flash-attention")
    if cfg.model.load_in_4bit:
        notes.append("4-bit NF4 base (bitsandbytes), LoRA adapters train in "
                     f"{cfg.model.bnb_4bit_compute_dtype or cfg.model.dtype}")
    if checkpointing_on(train):
        notes.append("activation checkpointing on (trades ~20% speed for memory)")
    return notes


def plan_run(
    task: str,
    *,
    recipe: str | None = None,
    profile: str | None = None,
    config_files: list[str] | tuple[str, ...] = (),
    overrides: list[str] | dict[str, Any] | None = None,
    num_gpus: int | None = None,
    num_nodes: int | None = None,
    dry_run: bool = False,
    via_accelerate: bool = False,
) -> LaunchPlan:
    """Validate a run exactly as `alignkit sft/dpo` do and plan its launch (raises ConfigError)."""
    resolved = resolve_config(task, recipe=recipe, profile=profile, config_files=config_files, overrides=overrides)
    return plan_from_resolved(resolved, num_gpus=num_gpus, num_nodes=num_nodes, dry_run=dry_run,
                              via_accelerate=via_accelerate)
