"""``alignkit aif generate|judge|binarize|distill``: SFT and preference data the Zephyr way.

Importing this module is cheap (typer, the standard library, alignkit.errors and the shared options
of alignkit.commands.options): everything else is imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from alignkit.commands.options import (
    AifOverwriteOpt,
    AttnOpt,
    BackendOpt,
    BatchOpt,
    ColumnOpt,
    ConcOpt,
    DtypeOpt,
    LimitOpt,
    MaxNewOpt,
    ModelKeyOpt,
    PromptsOpt,
    RetryOpt,
    SeedOpt,
    SplitOpt,
    TempOpt,
    TemplateOpt,
    TestSizeOpt,
    TimeoutOpt,
    TopPOpt,
    TrustOpt,
)
from alignkit.errors import Problem, UsageError

app = typer.Typer(
    name="aif",
    help="Build data the Zephyr way: distill (teacher answers → SFT data), generate (completions from "
    "several models), judge (AI-feedback ratings), binarize (preference pairs). docs/aif.md has the details.",
    no_args_is_help=True,
    add_completion=False,
)

def _reporter():
    from alignkit.aif.progress import RichReporter

    return RichReporter()


def _out():
    from alignkit import ui

    return ui.out_console()


def _sampling(n: int, temperature: float, top_p: float, max_new_tokens: int):
    from alignkit.aif.models import Sampling

    if top_p <= 0:
        raise UsageError(Problem(where="--top-p", message="must be > 0", fix="e.g. 0.95, or 1.0 for no nucleus cut"))
    return Sampling(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, n=n)


def _generation_options(batch_size: int, dtype: str, attn_implementation: Optional[str], trust_remote_code: bool,
                        seed: int, concurrency: int, timeout: float, max_retries: int):
    """(LocalOptions, EndpointOptions) from the options `generate` and `distill` share."""
    from alignkit.aif.generate import EndpointOptions, LocalOptions

    local = LocalOptions(batch_size=batch_size, dtype=dtype, attn_implementation=attn_implementation,
                         trust_remote_code=trust_remote_code, seed=seed)  # fmt: skip
    return local, EndpointOptions(concurrency=concurrency, timeout=timeout, max_retries=max_retries)


def _print_generation(summary: dict, work: Path) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title="completions")
    for col in ("model", "where", "done before", "new", "tokens", "cut at max", "seconds"):
        t.add_column(col, justify="left" if col in ("model", "where") else "right")
    for mid, s in summary.items():
        t.add_row(escape(mid), escape(s["where"]), str(s["already_done"]), str(s["new"]), str(s["tokens"]),
                  str(s["truncated"]), f"{s['seconds']:.1f}")  # fmt: skip
    con = _out()
    con.print(t)
    con.print(f"work directory: {escape(str(work))}")


# -- generate ---------------------------------------------------------------------------------


@app.command("generate")
def generate(
    prompts: PromptsOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="Work directory: completions.jsonl (appended, resumable) and aif.json.")],
    model: Annotated[Optional[list[str]], typer.Option("--model", help="A model, repeatable: a local directory, an endpoint as URL#MODEL, either as NAME=... to name it.")] = None,
    models_file: Annotated[Optional[Path], typer.Option("--models-file", help="YAML with models: and per-model settings (path or base_url+model, temperature, top_p, max_new_tokens, n, ...).")] = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Completions per prompt per model.")] = 4,
    temperature: TempOpt = 0.7,
    top_p: TopPOpt = 1.0,
    max_new_tokens: MaxNewOpt = 512,
    prompts_split: SplitOpt = "train",
    prompt_column: ColumnOpt = "prompt",
    limit: LimitOpt = None,
    backend: BackendOpt = "transformers",
    batch_size: BatchOpt = 8,
    dtype: DtypeOpt = "auto",
    attn_implementation: AttnOpt = None,
    trust_remote_code: TrustOpt = False,
    chat_template: TemplateOpt = None,
    seed: SeedOpt = 0,
    model_api_key_env: ModelKeyOpt = None,
    concurrency: ConcOpt = 8,
    max_retries: RetryOpt = 6,
    timeout: TimeoutOpt = 600.0,
) -> None:
    """Sample N completions per prompt from each model, appended to OUTPUT/completions.jsonl as they arrive.

    A re-run skips every (prompt, model, sample) already there: an interrupted run resumes, a larger --n adds samples, another --model adds a model.
    """
    from alignkit.aif import generate as gen
    from alignkit.aif.manifest import WorkDir
    from alignkit.aif.models import check_unique, load_models_file, parse_model_arg
    from alignkit.aif.prompts import load_prompts

    sampling = _sampling(n, temperature, top_p, max_new_tokens)
    specs = [
        parse_model_arg(m, sampling, api_key_env=model_api_key_env, backend=backend, chat_template=chat_template)
        for m in (model or [])
    ]
    if models_file is not None:
        specs += load_models_file(models_file, sampling, backend=backend, chat_template=chat_template)
    check_unique(specs)
    plist, info = load_prompts(prompts, split=prompts_split, column=prompt_column, limit=limit)
    work = WorkDir(output)
    local, endpoint = _generation_options(batch_size, dtype, attn_implementation, trust_remote_code, seed,
                                          concurrency, timeout, max_retries)  # fmt: skip
    with _reporter() as rep:
        rep.note(f"{len(plist)} prompts × {len(specs)} model(s) → {work.path}")
        summary = gen.generate_completions(plist, info, specs, work, local=local, endpoint=endpoint, reporter=rep)
    _print_generation(summary, work.path)


# -- judge ------------------------------------------------------------------------------------


@app.command("judge")
def judge(
    input: Annotated[Path, typer.Option("--input", "-i", help="Work directory written by `aif generate`; ratings.jsonl is added there.")],
    judge_model: Annotated[str, typer.Option("--judge-model", help="Judge model name at the endpoint (UltraFeedback used GPT-4).")],
    judge_base_url: Annotated[str, typer.Option("--judge-base-url", help="OpenAI-compatible base URL of the judge.")] = "https://api.openai.com/v1",
    aspects: Annotated[Optional[str], typer.Option("--aspects", help="Comma-separated aspects, one judge call each (default: helpfulness,honesty,instruction_following,truthfulness).")] = None,
    judge_api_key_env: Annotated[Optional[str], typer.Option("--judge-api-key-env", help="NAME of the environment variable holding the judge's API key (default: OPENAI_API_KEY for api.openai.com, none elsewhere). Never printed or saved.")] = None,
    judge_prompts: Annotated[Optional[Path], typer.Option("--judge-prompts", help="YAML: aspect → {system, template} with {prompt} and {completion}; replaces or adds aspects.")] = None,
    judge_max_tokens: Annotated[int, typer.Option("--judge-max-tokens", min=16, help="Longest judge answer (rationale + rating).")] = 1024,
    retry_unparsable: Annotated[bool, typer.Option("--retry-unparsable", help="Ask again where an earlier answer had no valid [[1-5]] rating.")] = False,
    concurrency: ConcOpt = 8,
    max_retries: RetryOpt = 6,
    timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds per HTTP request.")] = 120.0,
) -> None:
    """Rate every completion on each aspect (1-5, with a rationale); resumable, no call is paid twice."""
    from alignkit.aif import judge as aj
    from alignkit.aif.manifest import WorkDir
    from alignkit.client import make_client

    prompts = aj.load_judge_prompts(judge_prompts)
    chosen = aj.parse_aspects(aspects, prompts)
    work = WorkDir(input)
    work.require_completions()
    client = make_client(judge_base_url, judge_model, api_key_env=judge_api_key_env, concurrency=concurrency,
                         timeout=timeout, max_retries=max_retries, what="judge")  # fmt: skip
    with _reporter() as rep:
        result = aj.judge_completions(work, client, chosen, prompts, max_tokens=judge_max_tokens,
                                      retry_unparsable=retry_unparsable, reporter=rep)  # fmt: skip
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"ratings by {escape(result['judge'])}")
    for col in ("aspect", "valid", "unparsable", "out of 1-5"):
        t.add_column(col, justify="left" if col == "aspect" else "right")
    for a in chosen:
        c = result["counts"].get(a, {})
        t.add_row(escape(a), str(c.get("ok", 0)), str(c.get("unparsable", 0)), str(c.get("out_of_range", 0)))
    con = _out()
    con.print(t)
    con.print(f"{result['requests']} judge requests made this run; ratings in {escape(str(work.ratings))}")


# -- binarize ---------------------------------------------------------------------------------


@app.command("binarize")
def binarize(
    input: Annotated[Path, typer.Option("--input", "-i", help="Work directory with completions and ratings.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Dataset directory to write (save_to_disk): train_prefs, test_prefs, train_sft, test_sft.")],
    strategy: Annotated[str, typer.Option("--strategy", help="best-vs-random (Zephyr: the best completion vs a random lower-rated one) or best-vs-worst.")] = "best-vs-random",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random choices (per prompt) and the test split.")] = 42,
    min_margin: Annotated[float, typer.Option("--min-margin", min=0.0, help="Only pair completions whose scores differ by at least this much.")] = 0.0,
    test_size: TestSizeOpt = "0.05",
    judge_model: Annotated[Optional[str], typer.Option("--judge-model", help="Whose ratings to use when several judges rated this work directory.")] = None,
    aspects: Annotated[Optional[str], typer.Option("--aspects", help="Comma-separated aspects the score averages (default: all the judge rated).")] = None,
    overwrite: AifOverwriteOpt = False,
) -> None:
    """One (chosen, rejected) pair per prompt in ultrafeedback_binarized's format; ties reported and skipped."""
    from rich.markup import escape

    from alignkit.aif import binarize as ab
    from alignkit.aif.manifest import WorkDir, parse_test_size

    aspect_list = [a.strip() for a in aspects.split(",") if a.strip()] if aspects else None
    m = ab.binarize(WorkDir(input), output, strategy=strategy, seed=seed, min_margin=min_margin,
                    test_size=parse_test_size(test_size), judge=judge_model, aspects=aspect_list, overwrite=overwrite)  # fmt: skip
    c = m["counts"]
    con = _out()
    from rich.table import Table

    t = Table(title="completions by model")
    for col in ("model", "completions", "scored", "mean score", "chosen", "rejected"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for mid, pm in sorted(m["per_model"].items()):
        mean = "–" if pm["mean_score"] is None else f"{pm['mean_score']:.2f}"
        t.add_row(escape(mid), str(pm["completions"]), str(pm["rated"]), mean, str(pm["chosen"]), str(pm["rejected"]))
    con.print(t)
    skipped = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in c["skipped"].items() if v) or "none"
    con.print(f"{c['pairs']} pairs from {c['prompts']} prompts "
              f"(train_prefs {m['splits']['train_prefs']['rows']}, test_prefs {m['splits']['test_prefs']['rows']}); "
              f"skipped: {escape(skipped)}")  # fmt: skip
    if c["completions_unrated"] or c["completions_invalid_rating"]:
        con.print(f"completions without a score: {c['completions_unrated']} not yet rated on every aspect, "
                  f"{c['completions_invalid_rating']} with an unparsable rating (see `aif judge --retry-unparsable`)")  # fmt: skip
    con.print(f"dataset: {escape(str(output))}  (use it as data.mixture: [{{path: {escape(str(output))}, split: train_prefs}}, "
              f"{{path: {escape(str(output))}, split: test_prefs}}])")  # fmt: skip


# -- distill ----------------------------------------------------------------------------------


@app.command("distill")
def distill(
    prompts: PromptsOpt,
    teacher: Annotated[str, typer.Option("--teacher", help="The teacher: a local directory or an endpoint as URL#MODEL (NAME=... to name it).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Dataset directory to write (save_to_disk): train_sft, test_sft.")],
    work_dir: Annotated[Optional[Path], typer.Option("--work-dir", help="Where the answers are logged (resumable); default: OUTPUT.work next to OUTPUT.")] = None,
    temperature: TempOpt = 0.7,
    top_p: TopPOpt = 1.0,
    max_new_tokens: MaxNewOpt = 1024,
    test_size: TestSizeOpt = "0.05",
    seed: Annotated[int, typer.Option("--seed", help="Seed for sampling (local teachers) and the test split.")] = 42,
    drop_truncated: Annotated[bool, typer.Option("--drop-truncated", help="Leave out answers cut off at --max-new-tokens.")] = False,
    prompts_split: SplitOpt = "train",
    prompt_column: ColumnOpt = "prompt",
    limit: LimitOpt = None,
    backend: BackendOpt = "transformers",
    batch_size: BatchOpt = 8,
    dtype: DtypeOpt = "auto",
    attn_implementation: AttnOpt = None,
    trust_remote_code: TrustOpt = False,
    chat_template: TemplateOpt = None,
    model_api_key_env: Annotated[Optional[str], typer.Option("--teacher-api-key-env", help="NAME of the environment variable with the teacher endpoint's API key (never printed or saved).")] = None,
    concurrency: ConcOpt = 8,
    max_retries: RetryOpt = 6,
    timeout: TimeoutOpt = 600.0,
    overwrite: AifOverwriteOpt = False,
) -> None:
    """dSFT data: the teacher's answer to every prompt as `messages` rows (ultrachat_200k's format)."""
    from rich.markup import escape

    from alignkit.aif import distill as ad
    from alignkit.aif.manifest import WorkDir, parse_test_size
    from alignkit.aif.models import parse_model_arg
    from alignkit.aif.prompts import load_prompts

    size = parse_test_size(test_size)
    spec = parse_model_arg(teacher, _sampling(1, temperature, top_p, max_new_tokens), api_key_env=model_api_key_env,
                           backend=backend, chat_template=chat_template, option="--teacher")  # fmt: skip
    plist, info = load_prompts(prompts, split=prompts_split, column=prompt_column, limit=limit)
    work = WorkDir(work_dir if work_dir is not None else Path(str(output).rstrip("/") + ".work"))
    local, endpoint = _generation_options(batch_size, dtype, attn_implementation, trust_remote_code, seed,
                                          concurrency, timeout, max_retries)  # fmt: skip
    with _reporter() as rep:
        manifest, summary = ad.distill(
            plist, info, spec, work, output, test_size=size, seed=seed, drop_truncated=drop_truncated,
            local=local, endpoint=endpoint, reporter=rep, overwrite=overwrite,
        )  # fmt: skip
    _print_generation(summary, work.path)
    c = manifest["counts"]
    _out().print(
        f"{c['rows']} SFT rows (train_sft {manifest['splits']['train_sft']['rows']}, test_sft "
        f"{manifest['splits']['test_sft']['rows']}); empty answers dropped: {c['empty_answers_dropped']}; "
        f"cut at --max-new-tokens: {c['truncated_answers']}{' (dropped)' if drop_truncated else ''}\n"
        f"dataset: {escape(str(output))}"
    )


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="aif")
