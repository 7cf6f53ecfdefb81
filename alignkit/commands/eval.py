"""``alignkit eval ...`` and ``alignkit report``.

Importing this module is cheap: everything heavy is imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from alignkit.commands.eval_options import (
    AnswersOnlyOpt, AttnOpt, BackendOpt, BatchOpt, ConcOpt, ConfigOpt, DtypeOpt, JudgeKeyOpt, JudgeUrlOpt, LimitOpt,
    ModelIdOpt, ModelKeyOpt, ModelOpt, ModelUrlOpt, OutputOpt, PlainBatchOpt, RecipeOpt, RefreshOpt, RetryOpt,
    SeedOpt, TemplateOpt, TimeoutOpt, TrustOpt,
)  # fmt: skip
from alignkit.eval import defaults  # constants only: the evaluation code is imported by each command

app = typer.Typer(
    name="eval",
    help="Evaluate a trained model: MT-Bench, AlpacaEval, held-out preference accuracy, eval loss, lm-eval.",
    no_args_is_help=True,
    add_completion=False,
)

# the options are declared once, in alignkit.commands.eval_options


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


def _prepare(bench: str, o: dict[str, Any]):
    """``bench.prepare`` with the options mt-bench and alpaca-eval share, taken by name from the command's
    parameters ``o``: (model id, output dir, judge client or None, generator factory)."""
    from alignkit.eval.bench import prepare

    return prepare(
        bench, o["model"], o["model_id"], o["output"], o["answers_only"], o["judge_model"], o["judge_base_url"],
        o["judge_api_key_env"], backend=o["backend"], base_url=o["model_base_url"], api_key_env=o["model_api_key_env"],
        batch_size=o["batch_size"], concurrency=o["concurrency"], timeout=o["timeout"], max_retries=o["max_retries"],
        dtype=o["dtype"], attn_implementation=o["attn_implementation"], trust_remote_code=o["trust_remote_code"],
        chat_template=o["chat_template"], seed=o["seed"],
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

    mid, out, judge, factory = _prepare("mt-bench", locals())
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
    from alignkit.fsutil import write_atomic

    write_atomic(out / "results.md", mtbench.results_markdown(result))
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

    mid, out, judge, factory = _prepare("alpaca-eval", locals())
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

    from alignkit.fsutil import write_atomic

    write_atomic(out / "results.md", alpaca.results_markdown(result))

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


def _write_offline(out: Path, result: dict) -> None:
    from alignkit.eval.bench import write_results

    write_results(out / "results.json", result)


def _preference_task(model: str) -> str:
    """The task a model dir was trained with, when alignkit's run file there says orpo; else dpo (whose config
    --recipe/--config name)."""
    from alignkit.config.yamlio import read_yaml
    from alignkit.launch.run import RunDir

    run_file = RunDir.of(model).run_file
    if run_file.is_file():
        try:
            raw = read_yaml(run_file)
        except Exception:  # noqa: BLE001 - an unreadable run file only means: plain dpo
            return "dpo"
        if isinstance(raw, dict) and raw.get("task") == "orpo":
            return "orpo"
    return "dpo"


@app.command("prefs")
def prefs_cmd(
    model: ModelOpt,
    data: Annotated[Optional[Path], typer.Option("--data", help="Held-out preference rows (.json/.jsonl): prompt, chosen, rejected.")] = None,
    recipe: RecipeOpt = None,
    config: ConfigOpt = None,
    ref: Annotated[Optional[str], typer.Option("--ref", help="Reference model dir for DPO's implicit reward (e.g. the SFT model).")] = None,
    beta: Annotated[Optional[float], typer.Option("--beta", help="DPO beta for the implicit reward (default: the recipe's, else 0.1).")] = None,
    batch_size: PlainBatchOpt = 16,
    limit: LimitOpt = None,
    output: OutputOpt = None,
    chat_template: TemplateOpt = None,
) -> None:
    """Held-out preference accuracy and mean reward margin (DPO implicit reward against --ref)."""
    from alignkit.eval import prefs
    from alignkit.eval.offline import default_output, held_out_rows

    task = _preference_task(model)
    rows, source, cfg = held_out_rows(task, data, recipe, config, limit)
    if beta is None:  # ORPO's beta is its odds-ratio weight, not a DPO reward scale
        beta = float((getattr(getattr(cfg, "train", None), "beta", None) if task == "dpo" else None) or 0.1)
    kwargs: dict[str, Any] = {"ref_model_dir": ref, "beta": beta, "batch_size": batch_size}
    if chat_template:
        from alignkit.eval.generate import resolve_chat_template

        kwargs["chat_template"] = resolve_chat_template(chat_template)
    res = prefs.preference_metrics(model, rows, **kwargs)
    result = {"benchmark": "prefs", "model_path": model, "ref_model_path": ref, "data": source, **res}
    out = Path(output) if output else default_output(model, "prefs")
    _write_offline(out, result)
    _print_kv("held-out preferences", result)
    _console().print(f"results: {out / 'results.json'}")


@app.command("loss")
def loss_cmd(
    model: ModelOpt,
    data: Annotated[Optional[Path], typer.Option("--data", help="SFT test rows (.json/.jsonl) with 'messages'.")] = None,
    recipe: RecipeOpt = None,
    config: ConfigOpt = None,
    batch_size: PlainBatchOpt = 8,
    limit: LimitOpt = None,
    output: OutputOpt = None,
    chat_template: TemplateOpt = None,
) -> None:
    """Eval loss (assistant tokens) and perplexity on an SFT test split."""
    from alignkit.eval import prefs
    from alignkit.eval.offline import default_output, held_out_rows

    rows, source, _ = held_out_rows("sft", data, recipe, config, limit)
    kwargs: dict[str, Any] = {"batch_size": batch_size}
    if chat_template:
        from alignkit.eval.generate import resolve_chat_template

        kwargs["chat_template"] = resolve_chat_template(chat_template)
    res = prefs.eval_loss(model, rows, **kwargs)
    result = {"benchmark": "loss", "model_path": model, "data": source, **res}
    out = Path(output) if output else default_output(model, "loss")
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
    batch_size: PlainBatchOpt = 8,
    limit: LimitOpt = None,
    apply_chat_template: Annotated[bool, typer.Option("--apply-chat-template/--no-apply-chat-template", help="Render prompts with the model's chat template.")] = False,
    device: Annotated[Optional[str], typer.Option("--device", help="cuda, cuda:0, cpu (default: cuda when available).")] = None,
    output: OutputOpt = None,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Run lm-evaluation-harness tasks on a local model (optional extra: pip install 'alignkit[eval]')."""
    from alignkit.eval.offline import run_lm_eval

    result = run_lm_eval(model, tasks, include_path=include_path, num_fewshot=num_fewshot, batch_size=batch_size,
                         limit=limit, apply_chat_template=apply_chat_template, device=device,
                         trust_remote_code=trust_remote_code)
    metrics = result["results"]
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
    run_dirs: Annotated[list[Path], typer.Argument(
        help="Run output directories to compare, one column each; a directory of runs (runs/demo) stands for "
             "its runs.", show_default=False, metavar="RUN_DIR...")],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", metavar="DIR", help="Where report.md and the PNG plots go (default: <first run>/report).")] = None,
) -> None:
    """Curves and eval results of runs, side by side (PNG + Markdown).

    Loss/reward curves and eval results of several runs: PNG plots and a Markdown table, one column per run."""
    from alignkit.eval.report import make_report

    res = make_report(list(run_dirs), output)
    console = _console()
    for parent, names in res.get("expanded", {}).items():
        console.print(f"{parent} holds {len(names)} runs: {', '.join(names)} (one column each)", markup=False,
                      highlight=False)
    console.print(Path(res["report"]).read_text(encoding="utf-8"), markup=False, highlight=False)
    console.print(f"report: {res['report']}", markup=False, highlight=False)
    for p in res["plots"]:
        console.print(f"plot: {p}", markup=False, highlight=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="eval")
    root.command("report")(report)
