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
from typing import TYPE_CHECKING, Any

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
    from alignkit.data.messages import normalize_preference

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
    from alignkit.config.tasks import data_format

    task = data_format(task)
    if task == "cpt":  # language modelling: the text column only, no template
        return type(dataset_dict)({name: ds.select_columns(["text"]) for name, ds in dataset_dict.items()})
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
