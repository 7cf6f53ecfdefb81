"""``alignkit eval ...`` and ``alignkit report``.

Importing this module is cheap: everything heavy is imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from alignkit.errors import DataError, NotYetAvailable, Problem, UsageError
from alignkit.eval import defaults  # constants only: the evaluation code is imported by each command

app = typer.Typer(
    name="eval",
    help="Evaluate a trained model: MT-Bench, AlpacaEval, held-out preference accuracy, eval loss, lm-eval.",
    no_args_is_help=True,
    add_completion=False,
)

# -- shared options -----------------------------------------------------------------------------

ModelOpt = Annotated[str, typer.Option("--model", help="Model directory (full model or PEFT adapter); with --model-base-url, the served model's name.")]
ModelIdOpt = Annotated[Optional[str], typer.Option("--model-id", help="Name of the model in answer/judgment files (default: the directory's name).")]
BackendOpt = Annotated[str, typer.Option("--backend", help="Generation backend: auto, transformers, endpoint, vllm (auto = endpoint when --model-base-url is given).")]
ModelUrlOpt = Annotated[Optional[str], typer.Option("--model-base-url", help="OpenAI-compatible base URL serving --model (e.g. http://127.0.0.1:8000/v1).")]
ModelKeyOpt = Annotated[Optional[str], typer.Option("--model-api-key-env", help="NAME of the environment variable holding the served model's API key.")]
JudgeUrlOpt = Annotated[str, typer.Option("--judge-base-url", help="OpenAI-compatible base URL of the judge.")]
JudgeKeyOpt = Annotated[Optional[str], typer.Option("--judge-api-key-env", help="NAME of the environment variable holding the judge's API key (default: OPENAI_API_KEY for api.openai.com, none for other hosts). The key is never printed or saved.")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Directory for answers, judgments and results.json (default: MODEL/eval/<benchmark>).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Generation batch size (transformers backend).")]
ConcOpt = Annotated[int, typer.Option("--concurrency", min=1, help="Requests in flight at once (judge and served model).")]
RetryOpt = Annotated[int, typer.Option("--max-retries", min=0, help="Retries per request on 429/5xx/timeouts, with exponential backoff.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds per HTTP request.")]
TemplateOpt = Annotated[Optional[str], typer.Option("--chat-template", help="Chat template override: a .jinja file or a built-in name (zephyr).")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="auto (bf16 on GPUs that have it, fp32 on CPU), bf16, fp16, fp32.")]
AttnOpt = Annotated[Optional[str], typer.Option("--attn-implementation", help="e.g. flash_attention_2, sdpa.")]
TrustOpt = Annotated[bool, typer.Option("--trust-remote-code/--no-trust-remote-code", help="Run code shipped with the model.")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N questions/instructions (smoke tests; the score is not the benchmark's).")]
AnswersOnlyOpt = Annotated[bool, typer.Option("--answers-only", help="Generate answers, skip judging.")]
RefreshOpt = Annotated[bool, typer.Option("--refresh-sources", help="Download URL sources again instead of using the cache under HF_HOME.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Sampling seed for generation.")]


def _console(stderr: bool = False):
    from alignkit import ui

    return ui.err_console() if stderr else ui.out_console()


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_console(stderr=True),
    )


def _judge_client(model: str, base_url: str, key_env: Optional[str], concurrency: int, max_retries: int, timeout: float):
    from alignkit.eval.judge import ChatClient

    import urllib.parse

    # OPENAI_API_KEY is used by default only for OpenAI's own API: never send it to another host
    openai = (urllib.parse.urlsplit(base_url.strip()).hostname or "") == "api.openai.com"
    require = key_env is not None or openai
    if key_env is None and openai:
        key_env = "OPENAI_API_KEY"
    return ChatClient(
        base_url,
        model,
        api_key_env=key_env,
        require_key=require,
        concurrency=concurrency,
        timeout=timeout,
        max_retries=max_retries,
        what="judge",
    )


def _generator_factory(model: str, **kw: Any):
    from alignkit.eval.generate import make_generator

    if kw.get("backend") == "auto" and not kw.get("base_url") and not Path(model).is_dir():
        raise UsageError(
            Problem(where="--model", message=f"{model}: not a local directory", fix="give a model directory, or --model-base-url for a served model")
        )
    return lambda: make_generator(model, **kw)


def _setup(bench: str, model: str, model_id: Optional[str], output: Optional[Path], answers_only: bool,
           judge_model: str, judge_base_url: str, judge_api_key_env: Optional[str], *, concurrency: int,
           max_retries: int, timeout: float, **generation: Any):
    """What every benchmark command starts with: the model id, the output dir (checked), the judge client
    (none with --answers-only) and the generator factory."""
    from alignkit.eval import mtbench

    mid = mtbench.model_id_for(model, model_id)
    out = Path(output) if output else mtbench.default_output(model, mid, bench)
    _check_output(out, mid)
    judge = None if answers_only else _judge_client(judge_model, judge_base_url, judge_api_key_env, concurrency,
                                                    max_retries, timeout)
    factory = _generator_factory(model, concurrency=concurrency, timeout=max(timeout, 600.0),
                                 max_retries=max_retries, **generation)
    return mid, out, judge, factory


def _check_output(output: Path, model_id: str) -> None:
    """Refuse to mix two models' answers in one directory by accident."""
    for name in ("answers.jsonl",):
        f = output / name
        if not f.is_file():
            continue
        with open(f, encoding="utf-8") as fh:
            first = fh.readline()
        try:
            rec = json.loads(first) if first.strip() else {}
        except ValueError:
            continue
        other = rec.get("model_id") or rec.get("generator")
        if other and other != model_id:
            raise UsageError(
                Problem(
                    where=str(f),
                    message=f"holds answers of model {other!r}, not {model_id!r}",
                    fix="use another --output (or the same --model-id to resume that run)",
                )
            )


# -- mt-bench --------------------------------------------------------------------------------


@app.command("mt-bench")
def mt_bench(
    model: ModelOpt,
    judge_model: Annotated[str, typer.Option("--judge-model", help="Judge model name (FastChat used gpt-4).")] = "gpt-4",
    judge_base_url: JudgeUrlOpt = "https://api.openai.com/v1",
    judge_api_key_env: JudgeKeyOpt = None,
    questions: Annotated[str, typer.Option("--questions", help="question.jsonl: a path or URL.")] = defaults.MTBENCH_QUESTIONS,
    references: Annotated[str, typer.Option("--references", help="Reference answers (reference_answer/gpt-4.jsonl): a path or URL.")] = defaults.MTBENCH_REFERENCES,
    judge_prompts: Annotated[str, typer.Option("--judge-prompts", help="judge_prompts.jsonl: a path or URL.")] = defaults.MTBENCH_JUDGE_PROMPTS,
    output: OutputOpt = None,
    model_id: ModelIdOpt = None,
    backend: BackendOpt = "auto",
    model_base_url: ModelUrlOpt = None,
    model_api_key_env: ModelKeyOpt = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="FastChat's MT-Bench uses 1024.")] = 1024,
    batch_size: BatchOpt = 8,
    concurrency: ConcOpt = 8,
    max_retries: RetryOpt = 6,
    timeout: TimeoutOpt = 120.0,
    chat_template: TemplateOpt = None,
    dtype: DtypeOpt = "auto",
    attn_implementation: AttnOpt = None,
    trust_remote_code: TrustOpt = False,
    seed: SeedOpt = 0,
    limit: LimitOpt = None,
    answers_only: AnswersOnlyOpt = False,
    refresh_sources: RefreshOpt = False,
) -> None:
    """MT-Bench with FastChat's rules: 80 two-turn questions, single-answer grading by a judge model."""
    from alignkit.eval import mtbench

    mid, out, judge, factory = _setup(
        "mt-bench", model, model_id, output, answers_only, judge_model, judge_base_url, judge_api_key_env,
        backend=backend, base_url=model_base_url, api_key_env=model_api_key_env, batch_size=batch_size,
        concurrency=concurrency, timeout=timeout, max_retries=max_retries, dtype=dtype,
        attn_implementation=attn_implementation, trust_remote_code=trust_remote_code, chat_template=chat_template,
        seed=seed,
    )
    with _progress() as progress:
        result = mtbench.run_mt_bench(
            model=model,
            model_id=mid,
            output=out,
            generator_factory=factory,
            judge=judge,
            questions_spec=questions,
            references_spec=references,
            judge_prompts_spec=judge_prompts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            limit=limit,
            refresh_sources=refresh_sources,
            progress=progress,
        )
    console = _console()
    if not result.get("judged"):
        console.print(f"answers: {result['answers']} ({result['n_questions']} questions); judging skipped")
        return
    from alignkit.eval.judge import write_text_atomic

    md = mtbench.results_markdown(result)
    write_text_atomic(out / "results.md", md)
    _print_mt_table(console, result)
    try:
        from alignkit.eval.report import plot_mtbench_categories

        plot_mtbench_categories([(mid, result)], out / "categories.png")
    except Exception:  # noqa: BLE001 - a plot must never sink a paid-for evaluation
        pass
    console.print(f"results: {out / 'results.json'}")


def _print_mt_table(console, result: dict) -> None:
    from rich.table import Table

    def f(x):
        return "–" if x is None else f"{x:.2f}"

    t = Table(title=f"MT-Bench — {result['model']} (judge {result['judge_model']})")
    for col in ("category", "turn 1", "turn 2", "overall", "n"):
        t.add_column(col, justify="left" if col == "category" else "right")
    for cat, s in result["categories"].items():
        t.add_row(cat, f(s["turn_1"]), f(s["turn_2"]), f(s["overall"]), str(s["n"]))
    t.add_row("[bold]all", f(result["turn_1"]), f(result["turn_2"]), f"[bold]{f(result['overall'])}", str(result["counts"]["scored"]))
    console.print(t)
    if result["dropped"]:
        console.print(f"{result['dropped']} judgment(s) had no parsable rating and were dropped")


# -- alpaca-eval -----------------------------------------------------------------------------


@app.command("alpaca-eval")
def alpaca_eval(
    model: ModelOpt,
    reference: Annotated[str, typer.Option("--reference", help="Reference outputs (AlpacaEval model_outputs.json format, e.g. the GPT-4 Turbo baseline): a path or URL.")],
    judge_model: Annotated[str, typer.Option("--judge-model", help="Judge model name (AlpacaEval 2.0 used gpt-4-1106-preview).")] = "gpt-4-1106-preview",
    judge_base_url: JudgeUrlOpt = "https://api.openai.com/v1",
    judge_api_key_env: JudgeKeyOpt = None,
    judge_prompt: Annotated[str, typer.Option("--judge-prompt", help="AlpacaEval annotator prompt template: a path or URL.")] = defaults.ALPACA_JUDGE_PROMPT,
    judge_parser: Annotated[str, typer.Option("--judge-parser", help="weighted (AlpacaEval 2.0, needs logprobs), clf, ranking, token.")] = "weighted",
    output: OutputOpt = None,
    model_id: ModelIdOpt = None,
    backend: BackendOpt = "auto",
    model_base_url: ModelUrlOpt = None,
    model_api_key_env: ModelKeyOpt = None,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="Sampling temperature (0 = greedy).")] = 0.7,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 2048,
    switch_seed: Annotated[int, typer.Option("--switch-seed", help="AlpacaEval's order-randomization seed.")] = 0,
    batch_size: BatchOpt = 8,
    concurrency: ConcOpt = 8,
    max_retries: RetryOpt = 6,
    timeout: TimeoutOpt = 120.0,
    chat_template: TemplateOpt = None,
    dtype: DtypeOpt = "auto",
    attn_implementation: AttnOpt = None,
    trust_remote_code: TrustOpt = False,
    seed: SeedOpt = 0,
    limit: LimitOpt = None,
    answers_only: AnswersOnlyOpt = False,
    refresh_sources: RefreshOpt = False,
) -> None:
    """AlpacaEval: pairwise judgments against reference outputs, AlpacaEval's win rates."""
    from alignkit.eval import alpaca

    mid, out, judge, factory = _setup(
        "alpaca-eval", model, model_id, output, answers_only, judge_model, judge_base_url, judge_api_key_env,
        backend=backend, base_url=model_base_url, api_key_env=model_api_key_env, batch_size=batch_size,
        concurrency=concurrency, timeout=timeout, max_retries=max_retries, dtype=dtype,
        attn_implementation=attn_implementation, trust_remote_code=trust_remote_code, chat_template=chat_template,
        seed=seed,
    )
    with _progress() as progress:
        result = alpaca.run_alpaca_eval(
            model=model,
            model_id=mid,
            output=out,
            reference_spec=reference,
            generator_factory=factory,
            judge=judge,
            judge_prompt_spec=judge_prompt,
            parser=judge_parser,
            seed=switch_seed,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            limit=limit,
            refresh_sources=refresh_sources,
            progress=progress,
        )
    console = _console()
    if not result.get("judged"):
        console.print(f"outputs: {result['model_outputs']} ({result['n_instructions']} instructions); judging skipped")
        return
    from rich.table import Table

    from alignkit.eval.judge import write_text_atomic

    write_text_atomic(out / "results.md", alpaca.results_markdown(result))

    def f(x):
        return "–" if x is None else f"{x:.2f}"

    t = Table(title=f"AlpacaEval — {mid} vs {result['reference_generator']} (judge {result['judge_model']}, {judge_parser})")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("win rate", f"{f(result['win_rate'])} ± {f(result['standard_error'])}")
    t.add_row("discrete win rate", f(result["discrete_win_rate"]))
    lc = result["length_controlled_win_rate"]
    t.add_row("length-controlled win rate", f(lc) if lc is not None else "unavailable")
    t.add_row("wins / losses / draws", f"{result['n_wins']} / {result['n_wins_base']} / {result['n_draws']}")
    t.add_row("judged / dropped", f"{result['n_total']} / {result['n_dropped']}")
    console.print(t)
    if lc is None:
        console.print(f"length-controlled win rate unavailable: {result['length_controlled_note']}")
    console.print(f"results: {out / 'results.json'}")


# -- offline metrics ---------------------------------------------------------------------------


def _load_rows(
    task: str, data: Optional[Path], recipe: Optional[str], config: Optional[list[Path]], limit: Optional[int]
) -> tuple[list[dict], str, Any]:
    """Rows from ``--data`` (a local file), or the test split of a recipe/config's data mixture.

    Returns (rows, where they came from, the resolved config or None).
    """
    if data is not None and (recipe or config):
        raise UsageError(Problem(where="--data", message="goes without --recipe/--config", fix="give one or the other"))
    if data is not None:
        from alignkit.eval.sources import read_records

        if not data.is_file():
            raise DataError(Problem(where="--data", message=f"no such file: {data}", fix="give a local .json or .jsonl file"))
        rows = read_records(data, option="--data")
        return (rows[:limit] if limit else rows), str(data), None
    if not recipe and not config:
        raise UsageError(
            Problem(
                where=f"alignkit eval {'prefs' if task == 'dpo' else 'loss'}",
                message="no data given",
                fix="pass --data FILE.jsonl, or --recipe NAME / --config FILE.yaml to use the run's test split",
            )
        )
    from alignkit.config.resolve import resolve_config
    from alignkit.data.mixer import load_mixture

    cfg = resolve_config(task, recipe=recipe, config_files=[str(c) for c in config or []]).config
    splits = load_mixture(cfg.data, task)
    if "test" not in splits or len(splits["test"]) == 0:
        raise DataError(
            Problem(
                where=f"{recipe or ', '.join(map(str, config or []))}: data",
                message="the data mixture has no test split",
                fix="add a test source (split name containing 'test') or test_split_size, or pass --data",
            )
        )
    test = splits["test"]
    if limit:
        test = test.select(range(min(limit, len(test))))
    return test.to_list(), f"{recipe or config} (test split)", cfg


def _prefs_module():
    try:
        from alignkit.eval import prefs
    except ImportError:
        raise NotYetAvailable(Problem(where="alignkit.eval.prefs", message="the offline metrics module has not landed yet")) from None
    return prefs


def _write_offline(out: Path, result: dict) -> None:
    from alignkit.eval.judge import write_json_atomic

    write_json_atomic(out / "results.json", result)


RecipeOpt = Annotated[Optional[str], typer.Option("--recipe", "-r", help="Use the test split of this recipe's data mixture.")]
ConfigOpt = Annotated[Optional[list[Path]], typer.Option("--config", "-c", help="Your run YAML (repeatable): its data mixture's test split.")]


@app.command("prefs")
def prefs_cmd(
    model: ModelOpt,
    data: Annotated[Optional[Path], typer.Option("--data", help="Held-out preference rows (.json/.jsonl): prompt, chosen, rejected.")] = None,
    recipe: RecipeOpt = None,
    config: ConfigOpt = None,
    ref: Annotated[Optional[str], typer.Option("--ref", help="Reference model dir for DPO's implicit reward (e.g. the SFT model).")] = None,
    beta: Annotated[Optional[float], typer.Option("--beta", help="DPO beta for the implicit reward (default: the recipe's, else 0.1).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 16,
    limit: LimitOpt = None,
    output: OutputOpt = None,
    chat_template: TemplateOpt = None,
) -> None:
    """Held-out preference accuracy and mean reward margin (DPO implicit reward against --ref)."""
    prefs = _prefs_module()
    rows, source, cfg = _load_rows("dpo", data, recipe, config, limit)
    if beta is None:
        beta = float(getattr(getattr(cfg, "train", None), "beta", None) or 0.1)
    kwargs: dict[str, Any] = {"ref_model_dir": ref, "beta": beta, "batch_size": batch_size}
    if chat_template:
        from alignkit.eval.generate import resolve_chat_template

        kwargs["chat_template"] = resolve_chat_template(chat_template)
    res = prefs.preference_metrics(model, rows, **kwargs)
    result = {"benchmark": "prefs", "model_path": model, "ref_model_path": ref, "data": source, **res}
    out = Path(output) if output else (Path(model) / "eval" / "prefs" if Path(model).is_dir() else Path("eval/prefs"))
    _write_offline(out, result)
    _print_kv("held-out preferences", result)
    _console().print(f"results: {out / 'results.json'}")


@app.command("loss")
def loss_cmd(
    model: ModelOpt,
    data: Annotated[Optional[Path], typer.Option("--data", help="SFT test rows (.json/.jsonl) with 'messages'.")] = None,
    recipe: RecipeOpt = None,
    config: ConfigOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    limit: LimitOpt = None,
    output: OutputOpt = None,
    chat_template: TemplateOpt = None,
) -> None:
    """Eval loss (assistant tokens) and perplexity on an SFT test split."""
    prefs = _prefs_module()
    rows, source, _ = _load_rows("sft", data, recipe, config, limit)
    kwargs: dict[str, Any] = {"batch_size": batch_size}
    if chat_template:
        from alignkit.eval.generate import resolve_chat_template

        kwargs["chat_template"] = resolve_chat_template(chat_template)
    res = prefs.eval_loss(model, rows, **kwargs)
    result = {"benchmark": "loss", "model_path": model, "data": source, **res}
    out = Path(output) if output else (Path(model) / "eval" / "loss" if Path(model).is_dir() else Path("eval/loss"))
    _write_offline(out, result)
    _print_kv("eval loss", result)
    _console().print(f"results: {out / 'results.json'}")


def _print_kv(title: str, result: dict) -> None:
    from rich.table import Table

    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in result.items():
        if k in ("benchmark", "model_path", "ref_model_path", "data") or v is None:
            continue
        t.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    _console().print(t)


@app.command("lm-eval")
def lm_eval_cmd(
    model: ModelOpt,
    tasks: Annotated[str, typer.Option("--tasks", help="Comma-separated lm-evaluation-harness task names.")],
    include_path: Annotated[Optional[Path], typer.Option("--include-path", help="Directory of extra task YAMLs (local tasks work offline).")] = None,
    num_fewshot: Annotated[Optional[int], typer.Option("--num-fewshot", min=0)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    limit: LimitOpt = None,
    apply_chat_template: Annotated[bool, typer.Option("--apply-chat-template/--no-apply-chat-template", help="Render prompts with the model's chat template.")] = False,
    device: Annotated[Optional[str], typer.Option("--device", help="cuda, cuda:0, cpu (default: cuda when available).")] = None,
    output: OutputOpt = None,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Run lm-evaluation-harness tasks on a local model (optional extra: pip install 'alignkit[eval]')."""
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise UsageError(
            Problem(where="alignkit eval lm-eval", message="lm-evaluation-harness is not installed", fix="pip install 'alignkit[eval]'")
        ) from None
    if not Path(model).is_dir():
        raise UsageError(Problem(where="--model", message=f"{model}: not a local model directory"))
    if include_path is not None and not include_path.is_dir():
        raise UsageError(Problem(where="--include-path", message=f"{include_path}: not a directory"))
    task_list = [t.strip() for t in tasks.split(",") if t.strip()]
    if not task_list:
        raise UsageError(Problem(where="--tasks", message="no task given"))
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    from alignkit.modeling import adapter_base, is_adapter_dir

    margs = f"pretrained={model},trust_remote_code={trust_remote_code}"
    if is_adapter_dir(model):
        margs = f"pretrained={adapter_base(model)},peft={model},trust_remote_code={trust_remote_code}"
    tm = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [t for t in task_list if t not in tm.all_tasks]
    if unknown:
        raise UsageError(
            Problem(where="--tasks", message=f"unknown task(s): {', '.join(unknown)}", fix="check the name, or pass --include-path with the task YAMLs")
        )
    res = lm_eval.simple_evaluate(
        model="hf",
        model_args=margs,
        tasks=task_list,
        num_fewshot=num_fewshot,
        batch_size=batch_size,
        device=device,
        limit=limit,
        task_manager=tm,
        apply_chat_template=apply_chat_template,
    )
    if res is None:
        raise UsageError(Problem(where="alignkit eval lm-eval", message="lm-eval returned no results"))
    metrics = {
        task: {k: v for k, v in vals.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for task, vals in res.get("results", {}).items()
    }
    result = {"benchmark": "lm-eval", "model_path": model, "tasks": task_list, "results": metrics}
    out = Path(output) if output else (Path(model) / "eval" / "lm-eval")
    _write_offline(out, result)
    from rich.table import Table

    t = Table(title="lm-evaluation-harness")
    for col in ("task", "metric", "value"):
        t.add_column(col, justify="right" if col == "value" else "left")
    for task, vals in metrics.items():
        for k, v in vals.items():
            t.add_row(task, k, f"{v:.4f}" if isinstance(v, float) else str(v))
    _console().print(t)
    _console().print(f"results: {out / 'results.json'}")


# -- report ------------------------------------------------------------------------------------


def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run output directories to compare.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where report.md and the PNG plots go.")] = Path("report"),
) -> None:
    """Loss/reward curves and eval results of several runs: PNG plots and a Markdown table."""
    from alignkit.eval.report import make_report

    res = make_report(list(run_dirs), output)
    console = _console()
    console.print(Path(res["report"]).read_text(encoding="utf-8"), markup=False, highlight=False)
    console.print(f"report: {res['report']}")
    for p in res["plots"]:
        console.print(f"plot: {p}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="eval")
    root.command("report")(report)
