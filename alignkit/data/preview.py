"""What a mixture looks like to TRL (``alignkit mix preview``): the plan, token lengths of every split as the
task's trainer tokenizes them and what it does at ``max_length`` (alignkit.data.lengths), sample rows as the
trainer sees them (conversations and pairs rendered with the chat template, CPT text as it is, with its tokens).
The tokenizer is loaded inside the function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from alignkit.data.inputs import MixInputs
    from alignkit.data.mixer import MixResult


def preview_mixture(inp: "MixInputs", *, samples: int, stats_rows: int, console=None) -> tuple["MixResult", dict]:
    """Mix ``inp`` and report it: the plan's JSON plus ``tokens`` (None without a tokenizer) and
    ``samples`` (the first ``samples`` rows of the shuffled train split, rendered when there is a tokenizer;
    CPT text as it is, with its token count)."""
    from alignkit.config.tasks import data_format, trainer
    from alignkit.data.lengths import token_stats
    from alignkit.data.mixer import mix
    from alignkit.data.progress import progress_for

    fmt = data_format(inp.task)
    res = mix(inp.data, inp.task, console=console)
    out: dict[str, Any] = res.plan.as_json()
    tok = renderer = None
    if inp.tokenizer:
        from alignkit.data.build import load_tokenizer

        tok = load_tokenizer(inp.tokenizer, inp.tokenizer_revision, trust_remote_code=inp.trust_remote_code)
        origin = None  # CPT: plain text, no template
        if fmt != "cpt":
            from alignkit.data.chat import Renderer, resolve_chat_template_with_origin

            template, origin = resolve_chat_template_with_origin(tok, inp.data)
            renderer = Renderer(tok, template, insert_system=inp.data.auto_insert_empty_system_msg)
        tokens: dict[str, Any] = {"tokenizer": inp.tokenizer, "chat_template": origin, "max_length": inp.max_length,
                                  "trainer": trainer(inp.task), "splits": {}}
        if trainer(inp.task) == "DPOTrainer" or (fmt == "cpt" and not inp.packing):
            tokens["truncation_mode"] = inp.truncation_mode
        if fmt == "cpt":
            tokens["packing"] = inp.packing
            if inp.packing:
                tokens["packing_strategy"] = inp.packing_strategy
        with progress_for(console) as prog:
            for split, table in res.tables.items():
                if table.num_rows:
                    tokens["splits"][split] = token_stats(
                        table, inp.task, tok, renderer, max_length=inp.max_length, sample=stats_rows,
                        seed=inp.data.mix_seed, workers=inp.data.preprocessing_num_workers, progress=prog,
                        truncation_mode=inp.truncation_mode, packed=inp.packing, packing_strategy=inp.packing_strategy,
                    )
        out["tokens"] = tokens
    else:
        out["tokens"] = None
    out["samples"] = _samples(res, inp, fmt, samples, renderer, tok)
    return res, out


def _samples(res, inp: "MixInputs", fmt: str, samples: int, renderer, tok) -> list[dict]:
    """The first ``samples`` rows of the shuffled train split, as the trainer sees them."""
    from alignkit.data.lengths import text_lengths
    from alignkit.data.sources import source_label

    train = res.tables.get("train")
    if train is None or samples <= 0 or not train.num_rows:
        return []
    head = train.slice(0, min(samples, train.num_rows))
    si = res.indices["train"]
    rendered = None
    if renderer is not None:
        from alignkit.data.render import render_table

        rendered = {k: v.to_pylist() for k, v in render_table(head, fmt, renderer).items()}
    raw = head.to_pylist()
    counts = text_lengths(tok, [r["text"] for r in raw]) if fmt == "cpt" and tok is not None else None
    rows = []
    for j in range(head.num_rows):
        s: dict[str, Any] = {"index": j, "source": source_label(inp.data.mixture[int(si.src[j])]), "row": int(si.row[j])}
        if fmt == "cpt":  # no template: the text is what trains
            s["text"] = raw[j]["text"]
            if counts is not None:
                s["tokens"] = counts[j]
        elif rendered is None:
            cols = ("messages",) if fmt == "sft" else ("prompt", "chosen", "rejected")
            s["raw"] = {c: raw[j][c] for c in cols}
        elif fmt == "sft":
            s["text"] = rendered["text"][j]
        else:
            s.update(prompt=rendered["text_prompt"][j], chosen=rendered["text_chosen"][j], rejected=rendered["text_rejected"][j])
        rows.append(s)
    return rows
