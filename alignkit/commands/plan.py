"""`alignkit plan`: will this recipe fit on these GPUs, and if not, what would make it fit.

Registered like every command module: alignkit/cli.py calls ``register(app)``.

Importing this module is light (typer only); the planner (alignkit.memory) imports no torch. This module
also resolves the runs the planner estimates (:func:`resolve_run`: alignkit.launch, the demo assets), the part
of planning that sits above the memory package.
Exit codes: 0 fits, 3 does not fit (EXIT_DOES_NOT_FIT), 2 bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

import typer

if TYPE_CHECKING:
    from alignkit.memory import MemoryPlan, PlanRequest, Resolved

PLAN_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}
PLAN_EPILOG = (
    "Any config key can follow as an override, exactly as for `alignkit sft`: --per_device_train_batch_size=4, "
    "--max_length=4096, --gradient_checkpointing=false. Exit code: 0 fits, 3 does not fit, 2 bad input. "
    "How the estimate is made: docs/performance.md."
)


def resolve_run(req: PlanRequest) -> Resolved:
    """A plan request resolved exactly like `alignkit sft|dpo --dry-run` (alignkit.memory.Resolve): the launch
    plan and its profile stack's facts. The tiny recipe's demo model is built first when it is planned."""
    from alignkit.launch.build import plan_run
    from alignkit.config.profiles import load_stack
    from alignkit.memory import ProfileFacts, Resolved

    p = plan_run(req.task, recipe=req.recipe, profile=req.profile, config_files=list(req.config_files),
                 overrides=list(req.overrides), num_gpus=req.num_gpus, num_nodes=req.num_nodes, dry_run=True)
    if not req.model:
        _build_demo_model_if_planned(str(p.config.model.model_name_or_path))
    stack = load_stack(p.profile)
    modifiers = tuple(n for n, spec in zip(stack.names, stack.specs) if spec.modifier)
    return Resolved(launch=p, profile=ProfileFacts(adaptation=stack.adaptation, cpu=stack.cpu, modifiers=modifiers))


def _build_demo_model_if_planned(name: str) -> None:
    from alignkit.demo.assets import demo_root

    if name.startswith(str(demo_root())) and not (Path(name) / "config.json").is_file():
        from alignkit.demo.assets import ensure_demo_assets

        ensure_demo_assets()


def plan_request(req: PlanRequest, *, suggest: bool = True) -> MemoryPlan:
    """The memory plan of a request (alignkit.memory.PlanRequest) as `alignkit plan` makes it."""
    from alignkit.memory import plan_memory

    return plan_memory(req, resolve_run, suggest=suggest)


def run(task: str, *, recipe: str | None, profile: str | None, config_files: list[str], extra: list[str],
        num_gpus: int | None, num_nodes: int | None, gpu_mem_gb: float | None, model: str | None,
        as_json: bool) -> int:
    """Plan, print (rich table or JSON on stdout) and return the exit code."""
    from alignkit import ui
    from alignkit.memory import EXIT_DOES_NOT_FIT, PlanRequest

    from alignkit.config.tasks import check_task_option

    check_task_option(task)
    req = PlanRequest(task=task, recipe=recipe, profile=profile, config_files=tuple(config_files),
                      overrides=tuple(extra), num_gpus=num_gpus, num_nodes=num_nodes, model=model,
                      gpu_mem_gb=gpu_mem_gb)
    plan = plan_request(req)
    if as_json:
        ui.print_json(plan.to_json())
    else:
        render(plan)
    return 0 if plan.fits else EXIT_DOES_NOT_FIT


def _gib(x: float) -> str:
    """24 -> "24", 23.6 -> "23.6": a memory size as given, without a made-up decimal."""
    return f"{x:.0f}" if abs(x - round(x)) < 0.05 else f"{x:.1f}"


def render(plan: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    from alignkit import ui

    s, e = plan.setup, plan.estimate
    con = ui.out_console()
    where = "CPU process" if s.device == "cpu" else "GPU"
    title = (f"alignkit plan: {plan.launch.task} {escape(str(plan.launch.config.recipe or ''))} "
             f"profile {escape(plan.launch.profile)}, {s.world_size} x {plan.mem_gib:.0f} GiB")
    head = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    head.add_column(style="bold")
    head.add_column()
    head.add_row("model", escape(f"{s.arch.name}: {s.arch.describe()}"))
    head.add_row("shapes from", escape(s.arch.source))
    adapt = {"full": "full fine-tuning", "lora": f"LoRA r={s.lora_r}", "qlora": f"QLoRA r={s.lora_r} (4-bit base)"}
    head.add_row("training", f"{adapt[s.adaptation]}, {e.trainable_params / 1e6:,.1f}M trainable, "
                 + (f"ZeRO-{s.zero_stage} over {s.world_size}" if s.zero_stage else
                    ("DDP" if s.world_size > 1 else "1 process")))
    head.add_row("batch", f"{s.micro_batch} per device x {s.grad_accum} accumulation x {s.world_size} = "
                 f"{s.global_batch}; {s.rows} rows x {s.max_length} tokens per forward"
                 + (" (chosen + rejected)" if s.task in ("dpo", "orpo") else ""))
    head.add_row("memory", f"{_gib(plan.mem_gib)} GiB per {where} ({escape(plan.mem_source)})")
    con.print(head)

    t = Table(title=f"per {where} (GiB)", title_justify="left")
    t.add_column("component")
    t.add_column("GiB", justify="right")
    t.add_column("what")
    ck = "on" if s.activation_checkpointing else "off"
    rows = [
        ("weights", e.weights, _weights_note(s)),
        ("gradients", e.gradients, "trainable parameters" + (" (own partition)" if s.zero_stage else "")),
        ("optimizer states", e.optimizer, f"{s.optim}" + (" (fp32 master + states, partitioned)" if s.zero_stage
                                                          else "")),
        ("reference model", e.reference_model, _ref_note(s)),
        ("ZeRO-3 gather buffers", e.zero3_buffers, "layers gathered for compute, reduce buckets"),
        ("DDP gradient buckets", e.ddp_buckets, "a second copy of the gradients for all-reduce"),
        ("activations", e.activations, f"checkpointing {ck}: {e.activations_with_checkpointing / 2**30:.2f} GiB "
                                       f"with, {e.activations_without_checkpointing / 2**30:.2f} GiB without"),
        ("LM head / logits", e.logits, "TRL's chunked head: one 4096-token tile of the vocabulary + gradients"),
        ("optimizer step", e.optimizer_step, "temporaries while stepping (after activations are freed)"),
        ("overhead", e.overhead, "Python/torch runtime + allocator" if s.device == "cpu"
         else "CUDA context, NCCL, allocator fragmentation"),
    ]
    for name, value, note in rows:
        if value or name in ("weights", "activations"):
            t.add_row(name, f"{value / 2**30:.2f}", note)
    t.add_row("[bold]peak estimate[/bold]", f"[bold]{plan.total_gib:.2f}[/bold]",
              "static + max(activations + head, optimizer step) + overhead")
    con.print(t)
    share = plan.total_gib / plan.mem_gib
    if plan.fits:
        tight = " [yellow](tight: little room for longer rows or fragmentation)[/yellow]" if share > 0.9 else ""
        con.print(f"[bold green]fits[/bold green]: {plan.total_gib:.1f} of {_gib(plan.mem_gib)} GiB per {where} "
                  f"({share:.0%}){tight}")
    else:
        con.print(f"[bold red]does not fit[/bold red]: {plan.total_gib:.1f} GiB needed, {_gib(plan.mem_gib)} GiB "
                  f"per {where}")
        if plan.suggestions:
            con.print("to make it fit (each alone):")
            for sg in plan.suggestions:
                tight = " (tight)" if sg.total_gib > 0.9 * plan.mem_gib else ""
                con.print(f"  - {escape(sg.change)}: {sg.total_gib:.1f} GiB{tight}\n"
                          f"      add: {escape(' '.join(sg.flags))}")
        else:
            con.print("nothing alignkit can change makes it fit: use GPUs with more memory")
    for n in plan.notes:
        con.print(f"  [cyan]note:[/cyan] {escape(n)}")


def _weights_note(s: Any) -> str:
    if s.quant_bits:
        text = f"{s.quant_bits}-bit base linear layers, embeddings/head in 16-bit, + adapters"
    elif s.adaptation != "full":
        text = f"{s.dtype_bytes * 8}-bit base + adapters"
    else:
        text = f"{s.dtype_bytes * 8}-bit"
    if s.zero_stage == 3:
        text += f", sharded over {s.world_size}"
    return text


def _ref_note(s: Any) -> str:
    from alignkit.memory import reference_kind

    return reference_kind(s) or ""


_RECIPE = typer.Option(None, "--recipe", "-r", help="Shipped recipe (see `alignkit recipes list`).")
_TASK = typer.Option("sft", "--task", "-t", help="sft, dpo, orpo or cpt.")
_PROFILE = typer.Option(None, "--profile", "-p", help="full | lora | qlora | lora-zero3 | cpu, or a stack "
                        "such as qlora,cpu (default: full).")
_CONFIG = typer.Option(None, "--config", "-c", help="Your YAML, layered over recipe and profile (repeatable).")
_NUM_GPUS = typer.Option(None, "--num-gpus", "--num-processes",
                         help="GPUs per node (default: the recipe's reference count when none is visible).")
_NUM_NODES = typer.Option(None, "--num-nodes", help="Machines (default 1).")
_GPU_MEM = typer.Option(None, "--gpu-mem-gb", help="Memory of one GPU in GiB, e.g. 24 or 80 (default: "
                        "nvidia-smi, else 80; on the cpu profile: host RAM / processes).")
_MODEL = typer.Option(None, "--model", "-m", help="Model shapes to plan for: a size (7b, 13b, 70b, ...), a "
                      "directory with config.json, or a hub id (default: the recipe's model).")
_JSON = typer.Option(False, "--json", help="One JSON object on stdout.")


def plan_command(ctx: typer.Context, recipe: Optional[str] = _RECIPE, task: str = _TASK,
                 profile: Optional[str] = _PROFILE, config: Optional[List[Path]] = _CONFIG,
                 num_gpus: Optional[int] = _NUM_GPUS, num_nodes: Optional[int] = _NUM_NODES,
                 gpu_mem_gb: Optional[float] = _GPU_MEM, model: Optional[str] = _MODEL,
                 as_json: bool = _JSON) -> None:
    """Estimate per-GPU memory of a run (weights, gradients, optimizer, activations, logits) and say
    whether it fits, with the change that would make it fit."""
    code = run(task, recipe=recipe, profile=profile, config_files=[str(c) for c in config or []],
               extra=list(ctx.args), num_gpus=num_gpus, num_nodes=num_nodes, gpu_mem_gb=gpu_mem_gb, model=model,
               as_json=as_json)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add `plan` to the alignkit app (what cli.py calls)."""
    app.command("plan", context_settings=PLAN_CONTEXT, epilog=PLAN_EPILOG)(plan_command)

