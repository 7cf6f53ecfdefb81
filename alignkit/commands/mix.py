"""`alignkit mix preview|build|decontaminate`: see what a run trains on, freeze it, check it.

Inputs come either from the config layers (``--recipe R --task T [--config F] [--key=value]``, T one of the
tasks of alignkit.config.tasks, resolved as ``alignkit T`` resolves them) or stand alone (``--data FILE.yaml`` with a ``data:`` section, plus ``--tokenizer DIR``). datasets,
transformers and pyarrow are imported inside the commands only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from alignkit.commands.options import (
    ConfigOpt,
    DataOpt,
    JsonOpt,
    OptionalTaskOpt,
    ProfileOpt,
    RecipeOpt,
    SkipOpt,
    TaskOpt,
    TokenizerOpt,
)
from alignkit.data.inputs import MixInputs, resolve_inputs
from alignkit.errors import Problem, UsageError

app = typer.Typer(
    help="Data mixtures: preview what a recipe trains on, build a reproducible mix, decontaminate.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}
EPILOG = (
    "Overrides follow as --key=value (e.g. --data.mix_seed=3, --max_length=2048). Without --recipe/--config, "
    "--data FILE.yaml gives the data section (a 'data:' mapping) and --tokenizer DIR the tokenizer."
)


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _stdout():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, width=max(100, _term_width()))


def _term_width() -> int:
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


# ----------------------------------------------------------------------------------------------
# rendering for humans


def _plan_tables(plan, console) -> None:
    from rich.table import Table

    for split, rows in plan.splits.items():
        title = f"{split} split"
        if split == "test" and plan.test_from == "carved":
            title += " (carved from train by test_split_size)"
        t = Table(title=title, title_justify="left")
        for col, just in (("source", "left"), ("split", "left"), ("available", "right"), ("invalid", "right"), ("weight", "right"), ("rows", "right")):
            t.add_column(col, justify=just)
        for r in rows:
            name = r.name + (f":{r.config}" if r.config else "")
            weight = "-" if r.weight is None else f"{r.weight:g}"
            avail = "?" if r.available is None else f"{r.available:,}"
            t.add_row(name, r.split, avail, f"{r.invalid:,}" if r.invalid else "0", weight, f"{r.rows:,}")
        t.add_section()
        t.add_row("total", "", "", "", "", f"{plan.rows(split):,}")
        console.print(t)
    for w in plan.warnings:
        console.print(f"warning: {w}", markup=False)


def _stats_table(tokens: dict, console) -> None:
    from rich.table import Table

    template = tokens.get("chat_template") or "none, plain text"
    t = Table(title=f"token lengths ({tokens.get('tokenizer')}, template: {template})", title_justify="left")
    for col in ("split", "rows measured", "p50", "p95", "max", "over max_length"):
        t.add_column(col, justify="left" if col == "split" else "right")
    for split, s in tokens.get("splits", {}).items():
        measured = f"{s['rows_measured']:,}" + (f" of {s['rows']:,} (sample)" if s["sampled"] else "")
        over = "-"
        if s.get("max_length"):
            over = f"{s['over_max_length']:,} ({s['over_max_length_pct']}%) > {s['max_length']}"
        t.add_row(split, measured, str(s["p50"]), str(s["p95"]), str(s["max"]), over)
    console.print(t)
    for split, s in tokens.get("splits", {}).items():
        note = _trainer_note(s)
        if note:
            console.print(f"{split}: {note}", markup=False)


def _trainer_note(s: dict) -> str | None:
    """One sentence on what the task's TRL trainer does to this split's rows at max_length."""
    trl, ml = s.get("trl"), s.get("max_length")
    if not trl or not ml:
        return None
    of = f" of {s['rows_measured']:,}" + (" measured" if s.get("sampled") else "")
    name = trl.get("trainer", "DPOTrainer")
    if name == "SFTTrainer":
        return _packing_note(trl, ml, of)
    if name == "ORPOTrainer":
        if not trl["truncated"]:
            return f"TRL's ORPOTrainer keeps all{of} rows whole at max_length {ml}"
        return (f"TRL's ORPOTrainer drops no rows; it keeps the prompt whole and cuts the end of the completions of "
                f"{trl['truncated']:,}{of} rows at max_length {ml}, {trl['no_completion_left']:,} of which have a "
                f"prompt of {ml} tokens or more and keep no completion token at all")
    if not trl["dropped"] and not trl["truncated"]:
        return f"TRL's DPOTrainer keeps all{of} rows whole at max_length {ml} (truncation_mode {trl['truncation_mode']})"
    if trl["truncation_mode"] == "keep_start":
        return (f"TRL's DPOTrainer drops {trl['dropped']:,}{of} rows whose prompt alone has {ml} tokens or more, "
                f"and cuts the end of the completions of {trl['truncated']:,} more (truncation_mode keep_start)")
    return (f"TRL's DPOTrainer drops no rows (truncation_mode keep_end); it cuts the start of the prompt of "
            f"{trl['truncated']:,}{of} rows, {trl['no_prompt_left']:,} of which keep no prompt token at all")


def _packing_note(trl: dict, ml: int, of: str) -> str:
    """CPT text in TRL's SFTTrainer: packed into max_length sequences, or one document per row, cut."""
    if not trl["packing"]:
        if not trl["truncated"]:
            return f"no packing: TRL's SFTTrainer keeps all{of} documents whole at max_length {ml}"
        cut = "end" if trl["truncation_mode"] == "keep_start" else "start"
        return (f"no packing: TRL's SFTTrainer cuts the {cut} of {trl['truncated']:,}{of} documents longer than "
                f"max_length {ml} ({trl['tokens_dropped']:,} of {trl['tokens']:,} tokens dropped)")
    text = (f"packing ({trl['packing_strategy']}):{of.replace(' of', '', 1)} documents ({trl['tokens']:,} tokens) make "
            f"{trl['sequences']:,} sequences of up to {ml} tokens")
    if "sequences_estimate" in trl:
        text += f" (about {trl['sequences_estimate']:,} for the whole split)"
    if trl["tokens_dropped"]:
        text += (f"; {trl['packing_strategy']} cuts the {trl['documents_longer']:,} documents longer than {ml} to their "
                 f"first {ml} tokens ({trl['tokens_dropped']:,} tokens dropped; --packing_strategy=bfd_split keeps them)")
    return text


def _samples(samples: list[dict], console) -> None:
    from rich.panel import Panel
    from rich.text import Text

    for s in samples:
        tokens = f", {s['tokens']:,} tokens" if "tokens" in s else ""
        title = f"sample {s['index']}{tokens} — {s['source']} row {s['row']}"
        if "text" in s:
            body = s["text"]
        elif "prompt" in s and isinstance(s.get("prompt"), str):
            body = f"{s['prompt']}\n─── chosen ───\n{s['chosen']}\n─── rejected ───\n{s['rejected']}"
        else:
            body = json.dumps(s.get("raw"), indent=1, ensure_ascii=False)
        console.print(Panel(Text(body), title=title, title_align="left"))


# ----------------------------------------------------------------------------------------------
# commands


def _inputs(ctx: typer.Context, task: str, recipe: str | None, profile: str | None, config: list[Path] | None,
            data: Path | None, tokenizer: str | None, skip_invalid: bool, *, max_length: int | None = None,
            truncation_mode: str | None = None) -> MixInputs:
    """``resolve_inputs`` from the options every command takes, with the ``--key=value`` overrides."""
    return resolve_inputs(task, recipe=recipe, profile=profile, config=config, data_file=data, tokenizer=tokenizer,
                          max_length=max_length, extra=list(ctx.args), skip_invalid=skip_invalid,
                          truncation_mode=truncation_mode)  # fmt: skip


def _check_ngram(ngram: int) -> None:
    if ngram < 1:
        raise UsageError(Problem(where="--ngram", message="must be >= 1"))


def _build(inp: MixInputs, output: Path, *, render: bool, eval_files: list[Path] | None, ngram: int, overwrite: bool, console):
    """``build_mixture`` of the resolved inputs (``mix build`` and ``mix decontaminate --drop``)."""
    from alignkit.data.build import build_mixture

    return build_mixture(
        inp.data, inp.task, output, tokenizer_name=inp.tokenizer, tokenizer_revision=inp.tokenizer_revision,
        render=render, eval_files=[str(p) for p in eval_files or []], ngram=ngram, overwrite=overwrite, console=console,
    )


@app.command(context_settings=CONTEXT, epilog=EPILOG)
def preview(
    ctx: typer.Context,
    task: OptionalTaskOpt = None,
    recipe: RecipeOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    data: DataOpt = None,
    tokenizer: TokenizerOpt = None,
    max_length: Annotated[Optional[int], typer.Option("--max-length", help="Token limit for the truncation report, and CPT's packed sequence length (default: train.max_length; with --data, CPT packs to its task default).")] = None,
    truncation_mode: Annotated[Optional[str], typer.Option("--truncation-mode", help="DPO, and CPT without packing: keep_start (TRL's default) or keep_end, for the truncation report (default: train.truncation_mode).")] = None,
    samples: Annotated[int, typer.Option("--samples", "-n", help="Rendered sample rows to show.")] = 2,
    stats_rows: Annotated[int, typer.Option("--stats-rows", help="Measure token lengths on a seeded sample of this many rows per split (0 = all).")] = 20000,
    skip_invalid: SkipOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Rows per source and split, token lengths and what the trainer cuts, drops or packs, rendered samples."""
    from alignkit.data.preview import preview_mixture

    from alignkit.data.inputs import infer_task

    inp = _inputs(ctx, infer_task(task, recipe), recipe, profile, config, data, tokenizer, skip_invalid,
                  max_length=max_length, truncation_mode=truncation_mode)
    res, out = preview_mixture(inp, samples=samples, stats_rows=stats_rows, console=_stderr())
    if as_json:
        _print_json(out)
        return
    con = _stdout()
    _plan_tables(res.plan, con)
    if out["tokens"]:
        _stats_table(out["tokens"], con)
    else:
        con.print("token lengths: no tokenizer (give --tokenizer DIR, or a recipe with a model)", markup=False)
    _samples(out["samples"], con)


@app.command(context_settings=CONTEXT, epilog=EPILOG)
def build(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write (parquet + manifest.json).")],
    task: TaskOpt,
    recipe: RecipeOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    data: DataOpt = None,
    tokenizer: TokenizerOpt = None,
    render: Annotated[bool, typer.Option("--render/--no-render", help="Store the chat-template rendering of every row (needs a tokenizer).")] = True,
    decontaminate: Annotated[Optional[List[Path]], typer.Option("--decontaminate", help="Drop rows sharing n-grams with the prompts of this JSONL (repeatable).")] = None,
    ngram: Annotated[int, typer.Option("--ngram", help="n-gram length (words) for --decontaminate.")] = 13,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --output that is not a build of the same inputs.")] = False,
    skip_invalid: SkipOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Materialize the mixture with a manifest; the same inputs give a byte-identical directory."""
    import time

    t0 = time.perf_counter()
    inp = _inputs(ctx, task, recipe, profile, config, data, tokenizer, skip_invalid)
    _check_ngram(ngram)
    res = _build(inp, output, render=render, eval_files=decontaminate, ngram=ngram, overwrite=overwrite, console=_stderr())
    elapsed = time.perf_counter() - t0
    if as_json:
        d = res.as_json()
        d["seconds"] = round(elapsed, 3)
        _print_json(d)
        return
    _build_summary(res, elapsed, _stdout())


def _build_summary(res, elapsed: float, con) -> None:
    from rich.table import Table

    m = res.manifest
    verb = "unchanged (cached)" if res.cached else "built"
    con.print(f"{verb}: {res.output}  ({elapsed:.1f} s)", markup=False)
    t = Table(title="splits", title_justify="left")
    for col in ("split", "rows", "sha256"):
        t.add_column(col)
    for split, info in m["splits"].items():
        t.add_row(split, f"{info['rows']:,}", info["sha256"][:16])
    con.print(t)
    s = Table(title="sources", title_justify="left")
    for col in ("source", "split", "available", "invalid", "weight", *m["splits"].keys()):
        s.add_column(col, justify="left" if col in ("source", "split") else "right")
    for src in m["sources"]:
        w = "-" if src["weight"] is None else f"{src['weight']:g}"
        s.add_row(src["name"], src["split"], f"{src['rows_available']:,}", str(src["rows_invalid"]), w,
                  *[f"{src['rows'].get(k, 0):,}" for k in m["splits"]])
    con.print(s)
    d = m.get("decontamination")
    if d:
        con.print(f"decontamination: {d['rows_flagged']} rows ({d['copies_flagged']} copies) dropped "
                  f"({d['ngram']}-grams)", markup=False)
    if m.get("key") is None:
        con.print("note: some input cannot be pinned (Hub revision unresolved or tokenizer not local): "
                  "re-runs rebuild instead of reusing this build", markup=False)


@app.command(context_settings=CONTEXT, epilog=EPILOG)
def decontaminate(
    ctx: typer.Context,
    eval_file: Annotated[List[Path], typer.Option("--eval", "-e", help="JSONL of evaluation prompts (MT-Bench question.jsonl, AlpacaEval, or a 'prompt'/'text' field); repeatable.")],
    task: TaskOpt,
    recipe: RecipeOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    data: DataOpt = None,
    tokenizer: TokenizerOpt = None,
    ngram: Annotated[int, typer.Option("--ngram", help="n-gram length in words.")] = 13,
    drop: Annotated[bool, typer.Option("--drop", help="Write a build without the flagged rows (needs --output).")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Build directory for --drop.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="With --drop: replace a different build in --output.")] = False,
    skip_invalid: SkipOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Find training rows that share long n-grams with evaluation prompts; report per source."""
    _check_ngram(ngram)
    if drop and output is None:
        raise UsageError(Problem(where="--drop", message="needs --output DIR to write the decontaminated build", fix="add --output DIR"))
    if output is not None and not drop:
        raise UsageError(Problem(where="--output", message="is only used with --drop", fix="add --drop, or leave out --output"))
    inp = _inputs(ctx, task, recipe, profile, config, data, tokenizer, skip_invalid)
    err = _stderr()
    if drop:
        res = _build(inp, output, render=bool(inp.tokenizer), eval_files=eval_file, ngram=ngram, overwrite=overwrite, console=err)
        report = dict(res.manifest["decontamination"] or {})
        report["output"] = str(res.output)
        report["cached"] = res.cached
    else:
        from alignkit.data.decontaminate import contamination_report

        report = contamination_report(inp.data, inp.task, [str(p) for p in eval_file], ngram=ngram, console=err)
    if as_json:
        _print_json(report)
        return
    _decontam_report(report, _stdout())


def _decontam_report(report: dict, con) -> None:
    from rich.table import Table

    files = ", ".join(f"{Path(f['path']).name} ({f['prompts']} prompts)" for f in report["eval_files"])
    con.print(f"{report['ngram']}-gram overlap with {files}", markup=False)
    t = Table(title="flagged training rows per source", title_justify="left")
    for col in ("source", "rows", "copies in mix"):
        t.add_column(col, justify="left" if col == "source" else "right")
    for name, d in report["per_source"].items():
        t.add_row(name, f"{d['rows_flagged']:,}", f"{d['copies']:,}")
    t.add_section()
    t.add_row("total", f"{report['rows_flagged']:,}", f"{report['copies_flagged']:,}")
    con.print(t)
    for m in report["matches"][:10]:
        con.print(f"  {m['source']} row {m['row']} ~ {m['eval']}: \"{m['ngram'][:100]}\"", markup=False)
    if report.get("matches_not_shown"):
        con.print(f"  … and {report['matches_not_shown']} more (--json lists 50)", markup=False)
    unchecked = sum(f.get("unchecked_short", 0) for f in report["eval_files"])
    if unchecked:
        from alignkit.data.decontaminate import MIN_SHORT_WORDS

        shortest = min(report["ngram"], MIN_SHORT_WORDS)
        con.print(f"note: {unchecked} evaluation prompts have fewer than {shortest} words and were not checked", markup=False)
    if report["dropped"]:
        con.print(f"dropped from the build in {report.get('output')}", markup=False)
    elif report["rows_flagged"]:
        con.print("to train without them: alignkit mix build ... --decontaminate FILE (or this command with --drop --output DIR)", markup=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="mix")
