"""What a mixture looks like to TRL (``alignkit mix preview``): token lengths of every split as TRL
would tokenize them, what TRL's DPOTrainer drops or truncates at ``max_length``, rendered sample rows.
numpy, pyarrow and the tokenizer are imported inside the functions.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from alignkit.data.inputs import MixInputs
    from alignkit.data.mixer import MixResult


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

    from alignkit.data.render import render_table

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


def preview_mixture(inp: "MixInputs", *, samples: int, stats_rows: int, console=None) -> tuple["MixResult", dict]:
    """Mix ``inp`` and report it: the plan's JSON plus ``tokens`` (None without a tokenizer) and
    ``samples`` (the first ``samples`` rows of the shuffled train split, rendered when there is a tokenizer)."""
    from alignkit.data.mixer import mix
    from alignkit.data.progress import progress_for
    from alignkit.data.sources import source_label

    res = mix(inp.data, inp.task, console=console)
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
        with progress_for(console) as prog:
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
            from alignkit.data.render import render_table

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
    return res, out
