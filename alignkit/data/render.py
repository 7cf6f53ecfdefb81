"""Rendering a whole mixed table with its chat template (``mix build`` and ``mix preview``): SFT through the
vectorized fast path where it applies, otherwise batches in ``workers`` forked processes; a row the template
fails on is named. One row at a time is alignkit.data.chat.Renderer.
"""

from __future__ import annotations

from typing import Callable

from alignkit.data.chat import Renderer
from alignkit.errors import ConfigError, DataError, Problem

_WORK: dict = {}


def _render_range(args) -> tuple[int, list, str | None]:
    start, stop = args
    return _render_rows(_WORK["table"], _WORK["task"], _WORK["renderer"], start, stop)


def _strings(values: list[str]):
    import pyarrow as pa

    return pa.array(values, type=pa.string())


def _render_rows(table, task: str, renderer: Renderer, start: int, stop: int):
    """Render rows [start, stop); returns (start, arrow string arrays, error for the first bad row)."""
    part = table.slice(start, stop - start)
    if task == "sft":
        msgs = part.column("messages").to_pylist()
        try:
            return start, [_strings(renderer.render_many(msgs))], None
        except Exception:  # noqa: BLE001 - find the row that fails
            for j, m in enumerate(msgs):
                try:
                    renderer.render(m)
                except Exception as exc:  # noqa: BLE001
                    return start, [], f"{start + j}\t{type(exc).__name__}: {exc}"
            raise
    prompts = part.column("prompt").to_pylist()
    chosen = part.column("chosen").to_pylist()
    rejected = part.column("rejected").to_pylist()
    out_p, out_c, out_r = [], [], []
    for j, (p, c, r) in enumerate(zip(prompts, chosen, rejected)):
        try:
            d = renderer.render_preference(p, c, r)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001
            return start, [], f"{start + j}\t{type(exc).__name__}: {exc}"
        out_p.append(d["prompt"])
        out_c.append(d["chosen"])
        out_r.append(d["rejected"])
    return start, [_strings(out_p), _strings(out_c), _strings(out_r)], None


def _vector_sft(table, renderer: Renderer):
    """SFT rendering with Arrow compute kernels for the zephyr and chatml built-ins (no Python per
    row); None when it does not apply (other templates, null fields), then the row path is used."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    name = renderer.fast_name
    if name not in ("zephyr", "chatml") or "messages" not in table.column_names:
        return None
    col = table.column("messages")
    t = col.type
    if not (pa.types.is_list(t) and pa.types.is_struct(t.value_type)):
        return None
    fields = {t.value_type.field(i).name: t.value_type.field(i).type for i in range(t.value_type.num_fields)}
    if fields.get("role") != pa.string() or fields.get("content") != pa.string():
        return None
    eos = renderer.special.get("eos_token", "")
    out = []
    for chunk in col.chunks:
        if chunk.null_count:
            return None
        flat = pc.list_flatten(chunk)
        if flat.null_count:
            return None
        role, content = pc.struct_field(flat, "role"), pc.struct_field(flat, "content")
        if role.null_count or content.null_count:
            return None
        if name == "zephyr":
            piece = pc.binary_join_element_wise("<|", role, "|>\n", content, eos, "\n", "")
            known = pc.is_in(role, value_set=pa.array(["user", "system", "assistant"]))
            piece = pc.if_else(known, piece, "")
            system_turn = f"<|system|>\n{eos}\n"
        else:
            piece = pc.binary_join_element_wise("<|im_start|>", role, "\n", content, "<|im_end|>\n", "")
            system_turn = "<|im_start|>system\n<|im_end|>\n"
        offsets = chunk.offsets
        offsets = pc.subtract(offsets, offsets[0])
        text = pc.binary_join(pa.ListArray.from_arrays(offsets, piece), "")
        if renderer.insert_system:
            off = offsets.to_numpy()
            starts, lengths = off[:-1], np.diff(off)
            first_sys = np.zeros(len(chunk), dtype=bool)
            nonempty = lengths > 0
            is_sys = pc.equal(role, "system").to_numpy(zero_copy_only=False)
            first_sys[nonempty] = is_sys[starts[nonempty]]
            add = pa.array(nonempty & ~first_sys)
            text = pc.if_else(add, pc.binary_join_element_wise(system_turn, text, ""), text)
        out.append(text)
    return pa.chunked_array(out, type=pa.string())


def rendered_column_names(task: str) -> list[str]:
    if task == "cpt":
        return []  # plain text: nothing to render
    return ["text"] if task == "sft" else ["text_prompt", "text_chosen", "text_rejected"]


def render_table(
    table,
    task: str,
    renderer: Renderer,
    *,
    workers: int | None = None,
    progress=None,
    describe_row: Callable[[int], str] | None = None,
    batch: int = 1000,
) -> dict:
    """Render every row of a mixed table: {column name: pyarrow ChunkedArray of strings}, in
    ``workers`` processes; errors name the row (``describe_row(position)``)."""
    import pyarrow as pa

    n = table.num_rows
    names = rendered_column_names(task)
    bar = progress.task("templating", n) if progress is not None else None
    if task == "sft":
        vec = _vector_sft(table, renderer)
        if vec is not None:
            if bar:
                bar.advance(n)
            return {"text": vec}
    ranges = [(s, min(s + batch, n)) for s in range(0, n, batch)]
    results: list = []
    workers = workers or 1
    if workers > 1 and len(ranges) > 1 and _can_fork():
        import multiprocessing as mp

        _WORK.update(table=table, task=task, renderer=renderer)
        try:
            with mp.get_context("fork").Pool(workers) as pool:
                for res in pool.imap(_render_range, ranges, chunksize=1):
                    results.append(res)
                    if bar:
                        bar.advance(min(batch, n - res[0]))
                    if res[2]:
                        break
        finally:
            _WORK.clear()
    else:
        for s, e in ranges:
            res = _render_rows(table, task, renderer, s, e)
            results.append(res)
            if bar:
                bar.advance(e - s)
            if res[2]:
                break
    for _start, _cols, err in results:
        if err:
            row, msg = err.split("\t", 1)
            where = describe_row(int(row)) if describe_row else f"row {row}"
            raise DataError(
                Problem(
                    where=where,
                    message=f"the chat template fails on this row: {msg}",
                    fix="fix the row (e.g. roles out of the order the template demands) or use another template",
                )
            )
    results.sort(key=lambda r: r[0])
    return {
        name: pa.chunked_array([cols[k] for _s, cols, _e in results], type=pa.string())
        for k, name in enumerate(names)
    }


def _can_fork() -> bool:
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods()
