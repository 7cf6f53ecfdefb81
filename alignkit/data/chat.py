"""Chat templates: which one a run uses, and rendering SFT and DPO rows with it.

Resolution, for SFT and DPO alike (the handbook only falls back for SFT):

1. ``data.chat_template``: a built-in name (zephyr, chatml, llama3), a path to a template file, or a
   Jinja string;
2. the tokenizer's own template;
3. ``data.chat_template_fallback`` (zephyr by default; ``none`` makes a missing template an error).

The built-in templates use plain-text markers and add no tokens, so a base model's embeddings are
never resized (the handbook's ChatML fallback added tokens).

DPO rows are rendered the way TRL 1.16 tokenizes conversational preference data: the prompt once,
with the generation prompt, and chosen/rejected as what the full conversation adds after it. They are
never rendered separately, which would repeat headers (and BOS) with Llama-3-style templates.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from alignkit.errors import ConfigError, DataError, Problem, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from alignkit.config.data import DataConfig

BUILTIN_TEMPLATES = ("zephyr", "chatml", "llama3")
TEMPLATE_DIR = Path(__file__).parent / "templates"


@lru_cache(maxsize=None)
def builtin_template(name: str) -> str:
    if name not in BUILTIN_TEMPLATES:
        raise ConfigError(
            Problem(
                where="data.chat_template",
                message=f"unknown built-in template {name!r}",
                fix=f"use one of {', '.join(BUILTIN_TEMPLATES)}, a .jinja file or a Jinja string",
            )
        )
    return (TEMPLATE_DIR / f"{name}.jinja").read_text(encoding="utf-8")


def template_from_config(value: str) -> tuple[str, str]:
    """(template text, origin) for a ``chat_template`` config value."""
    if value in BUILTIN_TEMPLATES:
        return builtin_template(value), f"builtin:{value}"
    if "{{" in value or "{%" in value:
        return value, "config:string"
    path = Path(os.path.expanduser(value))
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8"), f"file:{value}"
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(Problem(where="data.chat_template", message=f"cannot read {value}: {exc}")) from None
    raise unknown_template_error(value)


def unknown_template_error(value: str) -> ConfigError:
    """The error for a ``chat_template`` value that is neither a built-in name, a file nor Jinja."""
    hint = did_you_mean(value.lower(), BUILTIN_TEMPLATES)
    pathlike = os.sep in value or "/" in value or Path(value).suffix in (".jinja", ".j2", ".txt")
    if pathlike and not hint:
        message = f"{value!r}: no such template file (relative paths are read from the current directory)"
    else:
        message = f"{value!r} is not a built-in template, an existing file or a Jinja template"
    fix = f"use one of {', '.join(BUILTIN_TEMPLATES)}, a path to a .jinja file, or the template text itself"
    return ConfigError(Problem(where="data.chat_template", message=message, fix=f"{hint} ({fix})" if hint else fix))


def check_template_value(value: str | None) -> None:
    """Fail fast (ConfigError, exit 2) on a ``data.chat_template`` value that cannot resolve.

    Needs no tokenizer: a built-in name, a Jinja string or a readable file passes; anything else is
    the error ``template_from_config`` would raise after the tokenizer had been loaded.
    """
    if value:
        template_from_config(value)


def tokenizer_template(tokenizer) -> str | None:
    tpl = getattr(tokenizer, "chat_template", None)
    if isinstance(tpl, dict):
        tpl = tpl.get("default")
    return tpl or None


def resolve_chat_template_with_origin(tokenizer, data: "DataConfig") -> tuple[str, str]:
    """(template, origin): origin is "builtin:NAME", "file:PATH", "config:string", "tokenizer" or
    "fallback:NAME"."""
    if data.chat_template:
        return template_from_config(data.chat_template)
    own = tokenizer_template(tokenizer) if tokenizer is not None else None
    if own:
        return own, "tokenizer"
    if data.chat_template_fallback == "none":
        raise ConfigError(
            Problem(
                where="data.chat_template",
                message="the tokenizer has no chat template and data.chat_template_fallback is 'none'",
                fix="set data.chat_template (zephyr, chatml, llama3, a file or a Jinja string) or a fallback",
            )
        )
    name = data.chat_template_fallback
    return builtin_template(name), f"fallback:{name}"


def resolve_chat_template(tokenizer, data: "DataConfig") -> str:
    """The chat template a run uses: config > tokenizer's own > fallback (or a ConfigError)."""
    return resolve_chat_template_with_origin(tokenizer, data)[0]


def apply_template(tokenizer, data: "DataConfig") -> str:
    """Resolve the template and set it on the tokenizer (so TRL and saved checkpoints use it)."""
    template = resolve_chat_template(tokenizer, data)
    tokenizer.chat_template = template
    return template


def wants_system_turn(template: str) -> bool:
    """Whether a template has a notion of a system turn (the handbook's rule)."""
    return "system" in template or "<|im_start|>" in template


def maybe_insert_system(messages: list, template: str, enabled: bool) -> list:
    """Prepend an empty system turn when enabled, the template expects one and there is none."""
    if not enabled or not messages or messages[0].get("role") == "system" or not wants_system_turn(template):
        return messages
    return [{"role": "system", "content": ""}, *messages]


# Plain-Python renderings of the built-in templates: the same strings as their Jinja (tests check
# them against it on random conversations), ~20x faster. Used only when the template text is exactly
# a built-in one, the special tokens it reads are defined, and every role/content is a string;
# anything else goes through Jinja, which also raises the template's own errors.


def _fast_zephyr(msgs: list, gen: bool, special: dict) -> str:
    eos = special["eos_token"]
    out = []
    last = len(msgs) - 1
    for i, m in enumerate(msgs):
        role = m["role"]
        if role in ("user", "system", "assistant"):
            out.append(f"<|{role}|>\n{m['content']}{eos}\n")
        if i == last and gen:
            out.append("<|assistant|>\n")
    return "".join(out)


def _fast_chatml(msgs: list, gen: bool, special: dict) -> str:
    out = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs]
    if gen:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


def _fast_llama3(msgs: list, gen: bool, special: dict) -> str:
    out = [f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>" for m in msgs]
    if out:
        out[0] = special["bos_token"] + out[0]
    if gen:
        out.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(out)


_FAST_RENDERERS = {"zephyr": (_fast_zephyr, ("eos_token",)), "chatml": (_fast_chatml, ()), "llama3": (_fast_llama3, ("bos_token",))}


def _fast_renderer(template: str, special: dict):
    for name, (fn, needs) in _FAST_RENDERERS.items():
        if template == builtin_template(name) and all(isinstance(special.get(k), str) for k in needs):
            return fn, name
    return None, None


def _plain_messages(msgs: Any) -> bool:
    return isinstance(msgs, list) and all(
        type(m) is dict and type(m.get("role")) is str and type(m.get("content")) is str for m in msgs
    )


class Renderer:
    """Renders conversations with one template exactly like ``tokenizer.apply_chat_template(...,
    tokenize=False)``, without re-resolving anything per row."""

    def __init__(self, tokenizer, template: str, *, insert_system: bool = False):
        self.template = template
        self.insert_system = insert_system
        self.special = dict(getattr(tokenizer, "special_tokens_map", {}) or {})
        self._fast, self.fast_name = _fast_renderer(template, self.special)

    def render(self, messages: list, add_generation_prompt: bool = False) -> str:
        return self.render_many([messages], add_generation_prompt)[0]

    def render_many(self, conversations: list[list], add_generation_prompt: bool = False) -> list[str]:
        convs = [maybe_insert_system(m, self.template, self.insert_system) for m in conversations]
        fast = self._fast
        if fast is not None and all(_plain_messages(c) for c in convs):
            return [fast(c, add_generation_prompt, self.special) for c in convs]
        return self._render_jinja(convs, add_generation_prompt)

    def _render_jinja(self, convs: list[list], add_generation_prompt: bool) -> list[str]:
        from transformers.utils.chat_template_utils import render_jinja_template

        rendered, _ = render_jinja_template(
            conversations=convs,
            chat_template=self.template,
            add_generation_prompt=add_generation_prompt,
            **self.special,
        )
        return rendered

    def render_sft(self, messages: list) -> str:
        return self.render(messages)

    def render_preference(self, prompt: list, chosen: list, rejected: list) -> dict[str, str]:
        """Prompt rendered once with the generation prompt; chosen/rejected as its continuations."""
        p = self.render(prompt, add_generation_prompt=True)
        out = {"prompt": p}
        for name, comp in (("chosen", chosen), ("rejected", rejected)):
            full = self.render(list(prompt) + list(comp))
            if not full.startswith(p):
                raise ConfigError(
                    Problem(
                        where="chat template",
                        message=(
                            "the template renders the prompt with the generation prompt differently from the start "
                            f"of the full conversation ({p[-40:]!r} vs {full[len(p) - 40:len(p)]!r}); the {name} reply "
                            "cannot be rendered as a continuation of the prompt"
                        ),
                        fix="use a template whose generation prompt is exactly the start of an assistant turn",
                    )
                )
            out[name] = full[len(p):]
        return out


def render_preference(row: dict, tokenizer, *, data: "DataConfig | None" = None, template: str | None = None) -> dict[str, str]:
    """One DPO row as ``{"prompt", "chosen", "rejected"}`` strings.

    ``row`` may be in any accepted preference form (see alignkit.data.validate); the template is
    ``template`` if given, else resolved from ``data`` and the tokenizer (default config: tokenizer's
    own, then zephyr).
    """
    from alignkit.data.validate import normalize_preference

    if template is None:
        from alignkit.config.data import DataConfig

        template = resolve_chat_template(tokenizer, data or DataConfig())
    insert = bool(data and data.auto_insert_empty_system_msg)
    norm, problem = normalize_preference(row)
    if problem:
        raise DataError(Problem(where="preference row", message=problem))
    prompt, chosen, rejected = norm
    return Renderer(tokenizer, template, insert_system=insert).render_preference(prompt, chosen, rejected)


def render_messages(messages: list, tokenizer, *, template: str, insert_system: bool = False, add_generation_prompt: bool = False) -> str:
    return Renderer(tokenizer, template, insert_system=insert_system).render(messages, add_generation_prompt)


# ----------------------------------------------------------------------------------------------
# batch rendering of mixed tables (used by mix build and preview)

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


# ----------------------------------------------------------------------------------------------
# handing data to TRL


def to_trl(dataset_dict, task: str, data: "DataConfig", template: str):
    """The mixture in the exact form TRL 1.16's trainers take, with nothing else.

    SFT: one ``messages`` column (other columns would mislead TRL: a ``prompt`` column, as in
    ultrachat_200k, switches SFTTrainer to prompt-completion mode). DPO: ``prompt``, ``chosen``,
    ``rejected`` message lists (TRL renders the prompt with the generation prompt and the completions
    as continuations, as ``Renderer.render_preference`` does). With ``auto_insert_empty_system_msg``
    the empty system turn is added here, so TRL renders exactly what preview and build showed.
    Set the template on the tokenizer with ``apply_template`` before training.
    """
    keep = ["messages"] if task == "sft" else ["prompt", "chosen", "rejected"]
    first = keep[0]
    out = {}
    for name, ds in dataset_dict.items():
        ds = ds.select_columns(keep)
        if data.auto_insert_empty_system_msg and wants_system_turn(template):
            ds = ds.map(
                lambda row: {first: maybe_insert_system(row[first], template, True)},
                num_proc=data.preprocessing_num_workers,
                desc=f"inserting empty system turns ({name})",
            )
        out[name] = ds
    return type(dataset_dict)(out)
