"""What TRL 1.16's trainers make of mixed rows (``alignkit mix preview``): token lengths as each trainer tokenizes
them, and what it does at ``max_length``: DPOTrainer's drops and cuts, ORPOTrainer's cuts, SFTTrainer's packing of
CPT text (with TRL's own ``pack_dataset``) or truncation. Which trainer a task has is alignkit.config.tasks's.
numpy, pyarrow, datasets and trl are imported inside the functions.
"""

from __future__ import annotations

import math
from typing import Any


def nearest_rank(sorted_values: list[int], p: float) -> int:
    """The p-th percentile by nearest rank (the smallest value with at least p % at or below it)."""
    if not sorted_values:
        return 0
    k = max(1, math.ceil(p / 100 * len(sorted_values)))
    return int(sorted_values[k - 1])


def summary(values: list[int]) -> dict:
    s = sorted(values)
    return {
        "p50": nearest_rank(s, 50),
        "p95": nearest_rank(s, 95),
        "max": int(s[-1]) if s else 0,
        "mean": round(sum(s) / len(s), 1) if s else 0.0,
    }


def _ids(tokenizer, texts: list[str], batch: int = 512, *, special: bool = False) -> list[list[int]]:
    out: list[list[int]] = []
    for i in range(0, len(texts), batch):
        out.extend(tokenizer(texts[i : i + batch], add_special_tokens=special)["input_ids"])
    return out


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _pct(count: int, rows: int) -> float:
    return round(100.0 * count / rows, 2) if rows else 0.0


# ----------------------------------------------------------------------------------------------
# preference pairs: DPO and ORPO


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
    out: dict[str, Any] = {"trainer": "DPOTrainer", "truncation_mode": truncation_mode, "dropped": 0, "truncated": 0}
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
        out[f"{key}_pct"] = _pct(out[key], rows)
    return out


def orpo_sequences(tokenizer, prompts: list[str], chosen: list[str], rejected: list[str]) -> list[tuple]:
    """Per row, ((prompt, answer) token counts of prompt+chosen, the same of prompt+rejected) as TRL 1.16's
    ORPOTrainer.tokenize_row makes them from the rendered strings, before it truncates: prompt and
    prompt+answer tokenized without special tokens, the answer starting where the prompt's tokens end (one
    token earlier when the last prompt token merges into the answer), a BOS put in front of the prompt and
    an EOS after the answer unless they are there already."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    ip = _ids(tokenizer, prompts)
    ic = _ids(tokenizer, [p + c for p, c in zip(prompts, chosen)])
    ir = _ids(tokenizer, [p + r for p, r in zip(prompts, rejected)])
    out = []
    for p, c, r in zip(ip, ic, ir):
        pair = []
        for full in (c, r):
            start = len(p) if full[: len(p)] == p else len(p) - 1
            head, answer = full[:start], full[start:]
            n_head = len(head) + (1 if bos is not None and (not head or head[0] != bos) else 0)
            n_answer = len(answer) + (1 if eos is not None and (not answer or answer[-1] != eos) else 0)
            pair.append((n_head, n_answer))
        out.append(tuple(pair))
    return out


def orpo_truncation(sequences: list[tuple], *, max_length: int | None) -> dict:
    """What TRL 1.16's ORPOTrainer does at ``max_length`` to rows of ``orpo_sequences``: it drops nothing and
    never cuts the prompt; where prompt + answer is longer than ``max_length`` the answer keeps only its first
    ``max_length - prompt`` tokens, none at all when the prompt alone fills ``max_length`` (that row then
    trains on no token of that answer, and its sequence stays longer than ``max_length``)."""
    rows = len(sequences)
    out: dict[str, Any] = {"trainer": "ORPOTrainer", "dropped": 0, "truncated": 0, "no_completion_left": 0}
    if not max_length:
        return out
    for pair in sequences:
        if any(h + a > max_length for h, a in pair):
            out["truncated"] += 1
            if any(h >= max_length for h, _a in pair):
                out["no_completion_left"] += 1
    for key in ("dropped", "truncated", "no_completion_left"):
        out[f"{key}_pct"] = _pct(out[key], rows)
    return out


# ----------------------------------------------------------------------------------------------
# plain text: CPT


def text_lengths(tokenizer, texts: list[str], batch: int = 512) -> list[int]:
    """Tokens per text as TRL 1.16's SFTTrainer makes them in language-modelling form: the tokenizer's EOS
    appended unless the text ends with it, then tokenized with the tokenizer's special tokens (a BOS where the
    tokenizer adds one)."""
    eos = tokenizer.eos_token
    texts = [t if not eos or t.endswith(eos) else t + eos for t in texts]
    return [len(x) for x in _ids(tokenizer, texts, batch, special=True)]


def packing(lengths: list[int], *, max_length: int, strategy: str) -> dict:
    """What TRL's own ``pack_dataset`` makes of documents of these token counts (the ids do not matter to it):
    how many sequences of at most ``max_length`` tokens, and how many tokens are lost (strategy ``bfd``, TRL's
    default, cuts a document longer than ``max_length`` to its first ``max_length`` tokens; ``bfd_split`` and
    ``wrapped`` lose none)."""
    import datasets
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from datasets.table import InMemoryTable
    from trl import pack_dataset

    counts = np.asarray(lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    ids = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(np.zeros(int(offsets[-1]), dtype=np.int32)))
    ds = datasets.Dataset(InMemoryTable(pa.table({"input_ids": ids})))
    quiet = not datasets.utils.are_progress_bars_disabled()
    if quiet:
        datasets.disable_progress_bars()
    try:
        packed = pack_dataset(ds, max_length, strategy)
    finally:
        if quiet:
            datasets.enable_progress_bars()
    kept = int(pc.sum(pc.list_value_length(packed.data.column("input_ids"))).as_py() or 0)
    total = int(counts.sum())
    return {"packing_strategy": strategy, "sequences": packed.num_rows, "tokens": total, "tokens_kept": kept,
            "tokens_dropped": total - kept, "documents_longer": int((counts > max_length).sum())}


def cpt_report(lengths: list[int], *, rows: int, max_length: int | None, packed: bool, strategy: str,
               truncation_mode: str) -> dict:
    """SFTTrainer on CPT text at ``max_length``: with packing, ``packing`` of the measured rows (and, measured on
    a sample, the sequences that many rows would make in the whole split); without, the documents cut to
    ``max_length`` tokens (truncation_mode keep_start: their end goes)."""
    out: dict[str, Any] = {"trainer": "SFTTrainer", "packing": packed, "tokens": int(sum(lengths))}
    if not max_length:
        return out
    if packed:
        out.update(packing(lengths, max_length=max_length, strategy=strategy))
        if lengths and rows > len(lengths):
            out["sequences_estimate"] = round(out["sequences"] * rows / len(lengths))
        return out
    cut = [n for n in lengths if n > max_length]
    out.update(truncation_mode=truncation_mode, truncated=len(cut), truncated_pct=_pct(len(cut), len(lengths)),
               tokens_dropped=int(sum(cut) - max_length * len(cut)))
    return out


# ----------------------------------------------------------------------------------------------
# one split


def token_stats(table, task: str, tokenizer, renderer, *, max_length: int | None, sample: int, seed: int, workers,
                progress, truncation_mode: str = "keep_start", packed: bool = False, packing_strategy: str = "bfd") -> dict:
    """Token lengths of a split as the task's TRL trainer tokenizes it (conversations rendered with the template,
    no extra special tokens; CPT text as language modelling); a seeded sample of ``sample`` rows when the split
    is larger (0 = all rows). Preference and CPT splits also get ``trl``: what the trainer does at
    ``max_length`` (``dpo_truncation``, ``orpo_truncation``, ``cpt_report``)."""
    import numpy as np
    import pyarrow as pa

    from alignkit.config.tasks import data_format, trainer
    from alignkit.data.render import render_table

    n = table.num_rows
    sampled = bool(sample) and n > sample
    if sampled:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))
        table = table.take(pa.array(idx))
    out: dict[str, Any] = {"rows": n, "rows_measured": table.num_rows, "sampled": sampled}
    fmt = data_format(task)
    if fmt == "cpt":
        cols = {"text": table.column("text").to_pylist()}
    else:
        cols = {k: v.to_pylist() for k, v in render_table(table, fmt, renderer, workers=workers, progress=progress).items()}
    bar = progress.task("tokenizing", table.num_rows) if progress is not None else None
    if fmt == "sft":
        lengths = [len(x) for x in _ids(tokenizer, cols["text"])]
    elif fmt == "cpt":
        lengths = text_lengths(tokenizer, cols["text"])
        out["trl"] = cpt_report(lengths, rows=n, max_length=max_length, packed=packed, strategy=packing_strategy,
                                truncation_mode=truncation_mode)
    elif trainer(task) == "ORPOTrainer":
        seqs = orpo_sequences(tokenizer, cols["text_prompt"], cols["text_chosen"], cols["text_rejected"])
        lengths = [max(h + a for h, a in pair) for pair in seqs]
        out["prompt"] = summary([pair[0][0] for pair in seqs])
        out["trl"] = orpo_truncation(seqs, max_length=max_length)
    else:
        p, c, r = cols["text_prompt"], cols["text_chosen"], cols["text_rejected"]
        ip = _ids(tokenizer, p)
        ic = _ids(tokenizer, [a + b for a, b in zip(p, c)])
        ir = _ids(tokenizer, [a + b for a, b in zip(p, r)])
        lengths = [max(len(a), len(b)) for a, b in zip(ic, ir)]
        out["prompt"] = summary([len(x) for x in ip])
        out["trl"] = dpo_truncation(ip, ic, ir, max_length=max_length, truncation_mode=truncation_mode)
    if bar:
        bar.advance(table.num_rows)
    out.update(summary(lengths))
    out["max_length"] = max_length
    if max_length:
        over = sum(1 for x in lengths if x > max_length)
        out["over_max_length"] = over
        out["over_max_length_pct"] = _pct(over, len(lengths))
    return out
