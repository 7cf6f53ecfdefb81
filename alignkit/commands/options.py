"""Command-line options that several commands declare the same way, in typer's Annotated style (the
default stays with each parameter): ``alignkit mix preview|build|decontaminate`` and
``alignkit aif generate|judge|binarize|distill``, and the run commands (``sft``, ``dpo``, ``validate``,
``recipes show``). Only typer, the standard library and the task table (alignkit.config.tasks, itself plain
Python) are imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from alignkit.config.tasks import task_choices_help

# -- runs: sft, dpo, validate ----------------------------------------------------------------------

# commands that take config overrides after their options (`--learning_rate=1e-5`, `--lora.r=32`)
RUN_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}
OVERRIDES_HELP = (
    "Any config key can follow as an override: --learning_rate=1e-5, --lora.r=32, --report_to=wandb "
    "(values are YAML: 3e-5, true, [a, b]). A bare .yaml path is a config file (the handbook's form). "
    "Layers, lowest first: defaults < recipe < profile < --config files < overrides. "
    "All keys: `alignkit config fields --task sft|dpo|orpo|cpt`."
)

Recipe = Annotated[Optional[str], typer.Option("--recipe", "-r", help="Shipped recipe (see `alignkit recipes list`).")]
Profile = Annotated[Optional[str], typer.Option(
    "--profile", "-p", help="full | lora | qlora | lora-zero3 | cpu, or a stack such as qlora,cpu (default: qlora or lora when the config sets load_in_4bit or use_peft, else full).")]
ConfigFiles = Annotated[Optional[List[Path]], typer.Option(
    "--config", "-c", help="Your YAML, layered over recipe and profile (repeatable).")]
NumGpus = Annotated[Optional[int], typer.Option(
    "--num-gpus", "--num-processes", help="Processes per node (default: GPUs visible; 1 on the cpu profile).")]
NumNodes = Annotated[Optional[int], typer.Option("--num-nodes", help="Machines (default 1).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the plan and the exact command; start nothing.")]
Json = Annotated[bool, typer.Option("--json", help="With --dry-run: one JSON object on stdout.")]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", help="Start over in an output dir that holds a different run (deletes its checkpoints).")]
PushToHub = Annotated[bool, typer.Option("--push-to-hub", help="Push the result to the Hub (checks for a token first).")]

# -- mix: where the data comes from, and the output ------------------------------------------------

TaskOpt = Annotated[str, typer.Option("--task", "-t", help=f"The task whose data this is: {task_choices_help()}.")]
#: mix preview's --task, which may be left out
OptionalTaskOpt = Annotated[Optional[str], typer.Option(
    "--task", "-t", help=f"The task whose data this is: {task_choices_help()} (default: the recipe's task, else sft).")]
RecipeOpt = Recipe
ProfileOpt = Annotated[Optional[str], typer.Option("--profile", "-p", help="Launch profile (default: full).")]
ConfigOpt = Annotated[Optional[List[Path]], typer.Option("--config", "-c", help="Your YAML, layered over the recipe (repeatable).")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="A YAML file with only a 'data:' section (instead of a recipe).")]
TokenizerOpt = Annotated[Optional[str], typer.Option("--tokenizer", help="Tokenizer (local dir or Hub id); default: the model's.")]
SkipOpt = Annotated[bool, typer.Option("--skip-invalid", help="Drop invalid rows (counted per source) instead of failing.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]

# -- aif: prompts, sampling, local models and endpoints ----------------------------------------------

PromptsOpt = Annotated[str, typer.Option("--prompts", help="Prompts: a JSONL/JSON/Parquet/CSV file, a dataset directory (save_to_disk or files named by split), or a Hub dataset id.")]
SplitOpt = Annotated[str, typer.Option("--prompts-split", help="Split to read when --prompts is a dataset.")]
ColumnOpt = Annotated[str, typer.Option("--prompt-column", help="Column holding the prompt text.")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N distinct prompts (smoke tests).")]
TempOpt = Annotated[float, typer.Option("--temperature", min=0.0, help="Sampling temperature (below 1e-4 = greedy); a models file may set it per model.")]
TopPOpt = Annotated[float, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus sampling top-p; a models file may set it per model.")]
MaxNewOpt = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Longest completion, in tokens; a models file may set it per model.")]
BackendOpt = Annotated[str, typer.Option("--backend", help="How local models generate: transformers or vllm.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Generation batch size (local transformers models).")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="auto (bf16 on GPUs that have it, fp32 on CPU), bf16, fp16, fp32.")]
AttnOpt = Annotated[Optional[str], typer.Option("--attn-implementation", help="e.g. flash_attention_2, sdpa (local models).")]
TrustOpt = Annotated[bool, typer.Option("--trust-remote-code/--no-trust-remote-code", help="Run code shipped with a local model.")]
TemplateOpt = Annotated[Optional[str], typer.Option("--chat-template", help="Chat template for local models without one (or to override theirs): a .jinja file or a built-in name (zephyr).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Sampling seed (local models).")]
ModelKeyOpt = Annotated[Optional[str], typer.Option("--model-api-key-env", help="NAME of the environment variable with the endpoints' API key (never printed or saved).")]
ConcOpt = Annotated[int, typer.Option("--concurrency", min=1, help="Requests in flight at once per endpoint.")]
RetryOpt = Annotated[int, typer.Option("--max-retries", min=0, help="Retries per request on 429/5xx/timeouts, with exponential backoff.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds per HTTP request.")]
TestSizeOpt = Annotated[str, typer.Option("--test-size", help="Rows for the test splits: a count (200) or a fraction (0.05); 0 = none.")]
AifOverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace --output even if alignkit aif did not write it.")]


# -- help text: placeholders instead of Python types ---------------------------------------------------

_TYPE_METAVARS = {int: "N", float: "NUM"}
#: placeholders by option name where the type alone says too little (or the name is too long to repeat)
_NAMED_METAVARS = {"config": "FILE", "data": "FILE", "eval": "FILE", "decontaminate": "FILE", "env-setup": "FILE",
                   "output": "DIR", "truncation-mode": "MODE", "attn-implementation": "IMPL",
                   "model-api-key-env": "NAME", "api-key-env": "NAME", "judge-api-key-env": "NAME",
                   "job-name": "NAME", "chat-template": "TEMPLATE", "sbatch-arg": "ARG"}


def _base_type(annotation: Any) -> Any:
    """``Optional[List[Path]]`` -> ``Path``: the type one value on the command line has."""
    import types
    import typing

    while True:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = args[0]
        elif origin in (typing.Union, types.UnionType, list, List):
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _metavar(info: Any, param_name: str, annotation: Any) -> str | None:
    base = _base_type(annotation)
    if base is bool:
        return None
    if isinstance(info, typer.models.ArgumentInfo):
        return param_name.upper()
    longs = [d for d in (info.param_decls or ()) if isinstance(d, str) and d.startswith("--")]
    name = (longs[0][2:] if longs else param_name.replace("_", "-")).split("/")[0]
    if name in _NAMED_METAVARS:
        return _NAMED_METAVARS[name]
    if base in _TYPE_METAVARS:
        return _TYPE_METAVARS[base]
    if isinstance(base, type) and issubclass(base, Path):
        return "PATH"
    return name.replace("-", "_").upper() if len(name) <= 12 else "VALUE"


def set_metavars(app: typer.Typer) -> None:
    """Give every option and argument that has no ``metavar=`` a placeholder (``--config FILE``,
    ``--num-gpus N``, ``--recipe RECIPE``, ``merge ADAPTER``) instead of typer's ``<list[Path]>``, ``<str>``
    and ``{adapter}``. Runs once, after the commands are registered and before typer builds them."""
    import inspect
    import typing

    def commands(t: typer.Typer):
        for c in t.registered_commands:
            yield c.callback
        for g in t.registered_groups:
            if g.typer_instance is not None:
                yield from commands(g.typer_instance)

    for fn in commands(app):
        if fn is None:
            continue
        hints = typing.get_type_hints(fn, include_extras=True)
        for name, param in inspect.signature(fn).parameters.items():
            annotation = hints.get(name, param.annotation)
            infos = [m for m in getattr(annotation, "__metadata__", ())
                     if isinstance(m, typer.models.ParameterInfo)]
            if isinstance(param.default, typer.models.ParameterInfo):
                infos.append(param.default)
            for info in infos:
                if info.metavar is None:
                    info.metavar = _metavar(info, name, annotation)
        # with `from __future__ import annotations` every evaluation of the string annotations builds new
        # OptionInfo objects: keep the evaluated ones, so that typer reads the metavars set here
        fn.__annotations__ = {**fn.__annotations__, **hints}
