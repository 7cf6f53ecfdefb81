"""`alignkit mix preview|build|decontaminate`: see what a run trains on, freeze it, check it.

Inputs come either from the config layers (``--recipe R --task sft|dpo [--config F] [--key=value]``)
or stand alone (``--data FILE.yaml`` with a ``data:`` section, plus ``--tokenizer DIR``). datasets,
transformers and pyarrow are imported inside the commands only.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from alignkit.errors import ConfigError, Problem, UsageError

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

# options shared by the commands (typer's Annotated style: the default stays with each parameter)
TaskOpt = Annotated[str, typer.Option("--task", "-t", help="sft or dpo.")]
RecipeOpt = Annotated[Optional[str], typer.Option("--recipe", "-r", help="Shipped recipe (see `alignkit recipes list`).")]
ProfileOpt = Annotated[Optional[str], typer.Option("--profile", "-p", help="Launch profile (default: full).")]
ConfigOpt = Annotated[Optional[List[Path]], typer.Option("--config", "-c", help="Your YAML, layered over the recipe (repeatable).")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="A YAML file with only a 'data:' section (instead of a recipe).")]
TokenizerOpt = Annotated[Optional[str], typer.Option("--tokenizer", help="Tokenizer (local dir or Hub id); default: the model's.")]
SkipOpt = Annotated[bool, typer.Option("--skip-invalid", help="Drop invalid rows (counted per source) instead of failing.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
TRUNCATION_MODES = ("keep_start", "keep_end")


@dataclass
class MixInputs:
    task: str
    data: Any  # DataConfig
    tokenizer: str | None
    tokenizer_revision: str | None
    max_length: int | None
    trust_remote_code: bool = False
    truncation_mode: str = "keep_start"  # DPO: TRL's default


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


def _check_task(task: str) -> str:
    if task not in ("sft", "dpo"):
        raise UsageError(Problem(where="--task", message=f"unknown task {task!r}", fix="use --task sft or --task dpo"))
    return task


def _data_from_file(path: Path, extra: list[str]):
    """DataConfig from a YAML file holding a 'data:' section, plus data-only overrides."""
    import yaml
    from pydantic import ValidationError

    from alignkit.config.data import DataConfig

    if not path.is_file():
        raise UsageError(Problem(where=f"--data {path}", message="no such file", fix="check the path"))
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(Problem(where=str(path), message=f"YAML error: {exc}", fix="fix the YAML syntax")) from None
    if isinstance(doc, dict) and "data" in doc:
        extra_keys = sorted(set(doc) - {"data"})
        if extra_keys:
            raise ConfigError(
                Problem(
                    where=str(path),
                    message=f"has sections besides 'data' ({', '.join(extra_keys)})",
                    fix="give a full config with --config (and --recipe), or keep only 'data:' in --data",
                )
            )
        doc = doc["data"]
    if not isinstance(doc, dict):
        raise ConfigError(Problem(where=str(path), message="expected a mapping with a 'data:' section"))
    from alignkit.config.layers import parse_overrides

    overrides, positional, problems = parse_overrides(list(extra))
    problems = list(problems)
    for p in positional:
        problems.append(Problem(where=p, message="unexpected argument", fix="overrides are written --data.key=value"))
    fields = set(DataConfig.model_fields)
    for key, value in overrides.items():
        name = key[len("data."):] if key.startswith("data.") else key
        if name not in fields or "." in name:
            problems.append(
                Problem(
                    where=f"--{key}",
                    message="without --recipe/--config only data.* keys can be overridden",
                    fix=f"data keys: {', '.join(sorted(fields))}",
                )
            )
            continue
        doc[name] = value
    if problems:
        raise UsageError(problems)
    try:
        return DataConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(
            [
                Problem(where=f"{path}: data." + ".".join(str(x) for x in err["loc"]), message=err["msg"])
                for err in exc.errors()
            ]
        ) from None


def resolve_inputs(
    task: str,
    *,
    recipe: str | None,
    profile: str | None,
    config: list[Path] | None,
    data_file: Path | None,
    tokenizer: str | None,
    max_length: int | None,
    extra: list[str],
    skip_invalid: bool = False,
    truncation_mode: str | None = None,
) -> MixInputs:
    _check_task(task)
    if data_file is not None and (recipe or config):
        raise UsageError(
            Problem(where="--data", message="goes without --recipe/--config", fix="put the data section in your --config file instead")
        )
    if data_file is not None:
        data = _data_from_file(Path(data_file), extra)
        inputs = MixInputs(task, data, tokenizer, None, max_length, truncation_mode=truncation_mode or "keep_start")
    elif recipe or config:
        from alignkit.config.resolve import resolve_config

        cfg = resolve_config(task, recipe=recipe, profile=profile, config_files=[str(c) for c in config or []], overrides=extra).config
        model = cfg.model
        tok = tokenizer or model.tokenizer_name_or_path or model.model_name_or_path
        rev = None if tokenizer else getattr(model, "model_revision", None)
        ml = max_length if max_length is not None else getattr(cfg.train, "max_length", None)
        mode = truncation_mode or getattr(cfg.train, "truncation_mode", None) or "keep_start"
        inputs = MixInputs(task, cfg.data, tok, rev, ml, bool(getattr(model, "trust_remote_code", False)), mode)
    else:
        raise UsageError(
            Problem(
                where="alignkit mix",
                message="no data given",
                fix="use --recipe NAME (and/or --config FILE.yaml), or --data FILE.yaml with a 'data:' section",
            )
        )
    if task == "dpo" and inputs.truncation_mode not in TRUNCATION_MODES:
        raise ConfigError(
            Problem(
                where="--truncation-mode" if truncation_mode else "train.truncation_mode",
                message=f"{inputs.truncation_mode!r} is not one of {', '.join(TRUNCATION_MODES)} (TRL's collator rejects it)",
                fix="keep_start (TRL's default: cut the end) or keep_end (cut the start of the prompt)",
            )
        )
    if skip_invalid:
        inputs.data = inputs.data.model_copy(update={"skip_invalid": True})
    # a typo in the template name must not wait for the data and the tokenizer to load
    from alignkit.data.chat import check_template_value

    check_template_value(inputs.data.chat_template)
    return inputs


# ----------------------------------------------------------------------------------------------
# token statistics


def nearest_rank(sorted_values: list[int], p: float) -> int:
    """The p-th percentile by nearest rank (the smallest value with at least p % at or below it)."""
    if not sorted_values:
        return 0
    k = max(1, math.ceil(p / 100 * len(sorted_values)))
    return int(sorted_values[k - 1])


def _ids(tokenizer, texts: list[str], batch: int = 512) -> list[list[int]]:
    out: list[list[int]] = []
    for i in range(0, len(texts), batch):
        out.extend(tokenizer(texts[i : i + batch], add_special_tokens=False)["input_ids"])
    return out


def _lengths(tokenizer, texts: list[str], batch: int = 512) -> list[int]:
    out: list[int] = []
    for i in range(0, len(texts), batch):
        enc = tokenizer(texts[i : i + batch], add_special_tokens=False)["input_ids"]
        out.extend(len(x) for x in enc)
    return out


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def dpo_truncation(prompt_ids: list[list[int]], chosen_ids: list[list[int]], rejected_ids: list[list[int]], *,
                   max_length: int | None, truncation_mode: str = "keep_start") -> dict:
    """What TRL 1.16's DPOTrainer does to each preference row at ``max_length``.

    Arguments are token ids of the rendered prompt (with the generation prompt) and of the full
    prompt+chosen and prompt+rejected conversations, as TRL tokenizes them. TRL takes the prompt as
    their common prefix (``common_prefix_length``); then, with ``keep_start``, ``_prepare_dataset``
    drops every row whose prompt alone has ``max_length`` tokens or more, and the collator cuts
    prompt+chosen and prompt+rejected each to their first ``max_length`` tokens (the completion's end
    goes). With ``keep_end`` nothing is dropped and each sequence keeps its last ``max_length`` tokens
    (the prompt's start goes; a completion of ``max_length`` tokens or more keeps no prompt at all).
    There is no separate prompt limit (``max_prompt_length`` is gone in TRL 1.x).
    """
    rows = len(prompt_ids)
    out: dict[str, Any] = {"truncation_mode": truncation_mode, "dropped": 0, "truncated": 0}
    if truncation_mode == "keep_end":
        out["no_prompt_left"] = 0
    if not max_length:
        return out
    for p, c, r in zip(prompt_ids, chosen_ids, rejected_ids):
        n = min(_common_prefix(p, c), _common_prefix(p, r))
        if truncation_mode == "keep_start" and n >= max_length:
            out["dropped"] += 1
            continue
        if len(c) > max_length or len(r) > max_length:
            out["truncated"] += 1
            if truncation_mode == "keep_end" and max(len(c), len(r)) - n >= max_length:
                out["no_prompt_left"] += 1
    for key in ("dropped", "truncated"):
        out[f"{key}_pct"] = round(100.0 * out[key] / rows, 2) if rows else 0.0
    return out


def _summary(values: list[int]) -> dict:
    s = sorted(values)
    return {
        "p50": nearest_rank(s, 50),
        "p95": nearest_rank(s, 95),
        "max": int(s[-1]) if s else 0,
        "mean": round(sum(s) / len(s), 1) if s else 0.0,
    }


def token_stats(table, task: str, tokenizer, renderer, *, max_length: int | None, sample: int, seed: int, workers, progress,
                truncation_mode: str = "keep_start") -> dict:
    """Token lengths of a split as TRL would tokenize it (rendered with the template, no extra
    special tokens); a seeded sample of ``sample`` rows when the split is larger (0 = all rows).
    DPO splits also get ``trl``: the rows TRL drops or truncates at ``max_length`` (``dpo_truncation``)."""
    import numpy as np
    import pyarrow as pa

    from alignkit.data.chat import render_table

    n = table.num_rows
    sampled = bool(sample) and n > sample
    if sampled:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))
        table = table.take(pa.array(idx))
    cols = {k: v.to_pylist() for k, v in render_table(table, task, renderer, workers=workers, progress=progress).items()}
    bar = progress.task("tokenizing", table.num_rows) if progress is not None else None
    out: dict[str, Any] = {"rows": n, "rows_measured": table.num_rows, "sampled": sampled}
    if task == "sft":
        lengths = _lengths(tokenizer, cols["text"])
    else:
        p, c, r = cols["text_prompt"], cols["text_chosen"], cols["text_rejected"]
        ip = _ids(tokenizer, p)
        ic = _ids(tokenizer, [a + b for a, b in zip(p, c)])
        ir = _ids(tokenizer, [a + b for a, b in zip(p, r)])
        lengths = [max(len(a), len(b)) for a, b in zip(ic, ir)]
        out["prompt"] = _summary([len(x) for x in ip])
        out["trl"] = dpo_truncation(ip, ic, ir, max_length=max_length, truncation_mode=truncation_mode)
    if bar:
        bar.advance(table.num_rows)
    out.update(_summary(lengths))
    out["max_length"] = max_length
    if max_length:
        over = sum(1 for x in lengths if x > max_length)
        out["over_max_length"] = over
        out["over_max_length_pct"] = round(100.0 * over / len(lengths), 2) if lengths else 0.0
    return out


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

    t = Table(title=f"token lengths ({tokens.get('tokenizer')}, template: {tokens.get('chat_template')})", title_justify="left")
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
        note = _dpo_truncation_note(s)
        if note:
            console.print(f"{split}: {note}", markup=False)


def _dpo_truncation_note(s: dict) -> str | None:
    """One sentence on what TRL's DPOTrainer does to this split's rows at max_length."""
    trl, ml = s.get("trl"), s.get("max_length")
    if not trl or not ml:
        return None
    of = f" of {s['rows_measured']:,}" + (" measured" if s.get("sampled") else "")
    if not trl["dropped"] and not trl["truncated"]:
        return f"TRL's DPOTrainer keeps all{of} rows whole at max_length {ml} (truncation_mode {trl['truncation_mode']})"
    if trl["truncation_mode"] == "keep_start":
        return (f"TRL's DPOTrainer drops {trl['dropped']:,}{of} rows whose prompt alone has {ml} tokens or more, "
                f"and cuts the end of the completions of {trl['truncated']:,} more (truncation_mode keep_start)")
    return (f"TRL's DPOTrainer drops no rows (truncation_mode keep_end); it cuts the start of the prompt of "
            f"{trl['truncated']:,}{of} rows, {trl['no_prompt_left']:,} of which keep no prompt token at all")


def _samples(samples: list[dict], console) -> None:
    from rich.panel import Panel
    from rich.text import Text

    for s in samples:
        title = f"sample {s['index']} — {s['source']} row {s['row']}"
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
    task: TaskOpt,
    recipe: RecipeOpt = None,
    profile: ProfileOpt = None,
    config: ConfigOpt = None,
    data: DataOpt = None,
    tokenizer: TokenizerOpt = None,
    max_length: Annotated[Optional[int], typer.Option("--max-length", help="Token limit for the truncation report (default: train.max_length).")] = None,
    truncation_mode: Annotated[Optional[str], typer.Option("--truncation-mode", help="DPO: keep_start (TRL's default) or keep_end, for the truncation report (default: train.truncation_mode).")] = None,
    samples: Annotated[int, typer.Option("--samples", "-n", help="Rendered sample rows to show.")] = 2,
    stats_rows: Annotated[int, typer.Option("--stats-rows", help="Measure token lengths on a seeded sample of this many rows per split (0 = all).")] = 20000,
    skip_invalid: SkipOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Rows per source and split, token lengths and truncation, rendered samples."""
    from alignkit.data.mixer import mix, progress_for, source_label

    inp = _inputs(ctx, task, recipe, profile, config, data, tokenizer, skip_invalid, max_length=max_length,
                  truncation_mode=truncation_mode)
    err = _stderr()
    res = mix(inp.data, inp.task, console=err)
    out: dict[str, Any] = res.plan.as_json()
    tok = renderer = None
    if inp.tokenizer:
        from alignkit.data.build import load_tokenizer
        from alignkit.data.chat import Renderer, resolve_chat_template_with_origin

        tok = load_tokenizer(inp.tokenizer, inp.tokenizer_revision, trust_remote_code=inp.trust_remote_code)
        template, origin = resolve_chat_template_with_origin(tok, inp.data)
        renderer = Renderer(tok, template, insert_system=inp.data.auto_insert_empty_system_msg)
        tokens: dict[str, Any] = {"tokenizer": inp.tokenizer, "chat_template": origin, "max_length": inp.max_length, "splits": {}}
        if inp.task == "dpo":
            tokens["truncation_mode"] = inp.truncation_mode
        with progress_for(err) as prog:
            for split, table in res.tables.items():
                if table.num_rows:
                    tokens["splits"][split] = token_stats(
                        table, inp.task, tok, renderer, max_length=inp.max_length, sample=stats_rows,
                        seed=inp.data.mix_seed, workers=inp.data.preprocessing_num_workers, progress=prog,
                        truncation_mode=inp.truncation_mode,
                    )
        out["tokens"] = tokens
    else:
        out["tokens"] = None
    # samples: the first rows of the shuffled train split
    train = res.tables.get("train")
    sample_rows = []
    if train is not None and samples > 0 and train.num_rows:
        head = train.slice(0, min(samples, train.num_rows))
        si = res.indices["train"]
        rendered = None
        if renderer is not None:
            from alignkit.data.chat import render_table

            rendered = {k: v.to_pylist() for k, v in render_table(head, inp.task, renderer).items()}
        raw = head.to_pylist()
        for j in range(head.num_rows):
            s: dict[str, Any] = {
                "index": j,
                "source": source_label(inp.data.mixture[int(si.src[j])]),
                "row": int(si.row[j]),
            }
            if rendered is None:
                cols = ("messages",) if inp.task == "sft" else ("prompt", "chosen", "rejected")
                s["raw"] = {c: raw[j][c] for c in cols}
            elif inp.task == "sft":
                s["text"] = rendered["text"][j]
            else:
                s.update(prompt=rendered["text_prompt"][j], chosen=rendered["text_chosen"][j], rejected=rendered["text_rejected"][j])
            sample_rows.append(s)
    out["samples"] = sample_rows
    if as_json:
        _print_json(out)
        return
    con = _stdout()
    _plan_tables(res.plan, con)
    if out["tokens"]:
        _stats_table(out["tokens"], con)
    else:
        con.print("token lengths: no tokenizer (give --tokenizer DIR, or a recipe with a model)", markup=False)
    _samples(sample_rows, con)


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
        from alignkit.data.decontaminate import find_contamination
        from alignkit.data.mixer import mix, progress_for

        res_mix = mix(inp.data, inp.task, console=err)
        with progress_for(err) as prog:
            cont = find_contamination(
                res_mix.tables["train"], inp.task, res_mix.indices["train"], list(inp.data.mixture),
                [str(p) for p in eval_file], ngram=ngram, workers=inp.data.preprocessing_num_workers, progress=prog,
            )
        report = cont.as_json(dropped=False)
        report["train_rows"] = res_mix.tables["train"].num_rows
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
