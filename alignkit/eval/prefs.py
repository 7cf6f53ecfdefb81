"""Preference accuracy, DPO implicit reward and assistant-token loss of a local model.

Both metrics tokenize the way TRL 1.16 trains:

* the prompt is rendered once with the model's chat template and ``add_generation_prompt=True``;
  each full conversation (prompt + chosen, prompt + rejected) is rendered too and must start with
  the rendered prompt, character for character (otherwise the row is a DataError);
* texts are tokenized with ``add_special_tokens=False`` (the template decides about BOS);
* the completion's tokens start where the tokenized prompt and the tokenized full conversation
  diverge (the smaller point of chosen and rejected), as TRL's DPO does.

``model_dir`` may be a full model or a PEFT adapter directory (one with ``adapter_config.json``):
the base named by its ``base_model_name_or_path`` is loaded and the adapter put on top.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from alignkit.errors import ConfigError, DataError, Problem, RuntimeFailure
from alignkit.modeling import adapter_base, has_tokenizer, is_adapter_dir, quiet_progress# noqa: F401 (re-exported)

Messages = list[dict[str, Any]]


# ---------------------------------------------------------------------------------------------
# loading


def _torch_dtype(dtype: str | None, device: str):
    import torch

    if dtype is None:
        if str(device).startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}  # fmt: skip
    if dtype not in table:
        raise ConfigError(Problem(where="dtype", message=f"unknown dtype {dtype!r}", fix="use " + ", ".join(table)))
    return table[dtype]


def _load_failure(path: str, e: Exception) -> RuntimeFailure | ConfigError:
    looks_local = Path(path).is_absolute() or path.startswith((".", "~")) or path.count("/") != 1
    if not Path(path).exists() and looks_local:
        return ConfigError(
            Problem(where=path, message="no such model directory", fix="pass the output_dir of a finished run")
        )
    # a local dir that does not load (no weights, no tokenizer, damaged files) is an input to fix: exit 2
    cls = ConfigError if Path(path).is_dir() else RuntimeFailure
    return cls(
        Problem(
            where=path,
            message=f"cannot load the model: {type(e).__name__}: {e}",
            fix="check that the directory holds a saved model (config.json and weights) or an adapter",
        )
    )


def load_model(
    model_dir: str | Path, *, device: str = "cpu", dtype: str | None = None, trust_remote_code: bool = False
):
    """A causal LM in eval mode from a model or adapter directory."""
    path = str(model_dir)
    torch_dtype = _torch_dtype(dtype, device)
    try:
        with quiet_progress():
            model = _from_pretrained(path, torch_dtype, trust_remote_code)
    except (ConfigError, DataError):
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise _load_failure(path, e) from e
    model.to(device)
    model.eval()
    return model


def _from_pretrained(path: str, torch_dtype, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM

    if is_adapter_dir(path):
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(
            adapter_base(path), dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
        return PeftModel.from_pretrained(base, path)
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, trust_remote_code=trust_remote_code)


def load_tokenizer(model_dir: str | Path, *, chat_template: str | None = None, trust_remote_code: bool = False):
    """The tokenizer saved with a model (for an adapter without one: its base's)."""
    from transformers import AutoTokenizer

    path = str(model_dir)
    source = path
    if is_adapter_dir(path) and not has_tokenizer(path):
        source = adapter_base(path)
    try:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as e:
        raise _load_failure(source, e) from e
    if chat_template is not None:
        tok.chat_template = chat_template
    if not getattr(tok, "chat_template", None):
        raise ConfigError(
            Problem(
                where=source,
                message="the tokenizer has no chat template, so conversations cannot be rendered",
                fix="save the tokenizer with a chat template (alignkit does after SFT) or pass chat_template=",
            )
        )
    return tok


# ---------------------------------------------------------------------------------------------
# rendering and tokenizing


def _render(tok, messages: Messages, *, generation_prompt: bool, where: str) -> str:
    try:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except Exception as e:  # jinja errors (raise_exception in templates) and bad message shapes
        raise DataError(
            Problem(where=where, message=f"the chat template cannot render this row: {e}", fix="fix the row's messages")
        ) from e
    if not isinstance(text, str):
        raise RuntimeFailure(Problem(where=where, message="apply_chat_template(tokenize=False) did not return text"))
    return text


def _ids(tok, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _is_messages(x: Any) -> bool:
    return (
        isinstance(x, list)
        and len(x) > 0
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m for m in x)
    )


def _require_messages(x: Any, where: str, *, fix: str, or_string: bool = False) -> None:
    """DataError naming ``where`` unless ``x`` is a non-empty list of {role, content} messages (``or_string``:
    the caller takes a plain string too, and the message says so)."""
    if not _is_messages(x):
        also = "a string or " if or_string else ""
        raise DataError(Problem(where=where, message=f"must be {also}a non-empty list of {{role, content}} messages",
                                fix=fix))


def _split_conversation(x: Any, key: str, where: str) -> tuple[Messages | None, Messages]:
    """(the turns before the final assistant turns or None, the final assistant turns)."""
    if isinstance(x, str):
        return None, [{"role": "assistant", "content": x}]
    _require_messages(x, f"{where}: {key}", or_string=True,
                      fix="use the ultrafeedback_binarized shape or prompt/chosen/rejected strings")
    if x[-1]["role"] != "assistant":
        raise DataError(
            Problem(
                where=f"{where}: {key}",
                message=f"the last message is from {x[-1]['role']!r}, not the assistant",
                fix="end each chosen/rejected conversation with the assistant's answer",
            )
        )
    k = len(x)
    while k > 0 and x[k - 1]["role"] == "assistant":
        k -= 1
    return (list(x[:k]) or None), list(x[k:])


def _pair(row: Any, where: str) -> tuple[Messages, Messages, Messages]:
    """(prompt messages, full chosen conversation, full rejected conversation) of one row."""
    if not isinstance(row, dict):
        raise DataError(Problem(where=where, message="a preference row must be an object"))
    for key in ("chosen", "rejected"):
        if key not in row:
            raise DataError(
                Problem(where=where, message=f"missing {key!r}", fix="give prompt, chosen and rejected columns")
            )
    p_c, comp_c = _split_conversation(row["chosen"], "chosen", where)
    p_r, comp_r = _split_conversation(row["rejected"], "rejected", where)
    explicit = row.get("prompt")
    if isinstance(explicit, str):
        explicit_msgs: Messages | None = [{"role": "user", "content": explicit}]
    elif _is_messages(explicit):
        explicit_msgs = list(explicit)
    elif explicit is None:
        explicit_msgs = None
    else:
        raise DataError(Problem(where=f"{where}: prompt", message="must be a string or a list of messages"))
    prompt = p_c or p_r or explicit_msgs
    if prompt is None:
        raise DataError(
            Problem(
                where=where,
                message="no prompt: neither a 'prompt' column nor a user turn in chosen/rejected",
                fix="add a 'prompt' column or include the user turn in chosen and rejected",
            )
        )
    return prompt, (p_c or prompt) + comp_c, (p_r or prompt) + comp_r


def _row_label(row: Any, i: int) -> str:
    rid = row.get("prompt_id") if isinstance(row, dict) else None
    return f"row {i}" + (f" (prompt_id {rid})" if rid else "")


# ---------------------------------------------------------------------------------------------
# scoring


def _sequence_logps(model, seqs: list[tuple[list[int], list[int]]], *, batch_size: int, pad_id: int, device: str):
    """For each (ids, positions): the sum of log p(ids[t] | ids[:t]) over t in positions, and the count.

    Sequences are right-padded in batches; only the scored positions' log-softmax is computed.
    """
    import torch

    out: list[tuple[float, int]] = []
    with torch.no_grad():
        for b in range(0, len(seqs), batch_size):
            chunk = seqs[b : b + batch_size]
            width = max(len(ids) for ids, _ in chunk)
            input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            attn = torch.zeros((len(chunk), width), dtype=torch.long)
            for j, (ids, _) in enumerate(chunk):
                input_ids[j, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                attn[j, : len(ids)] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=attn.to(device)).logits
            for j, (ids, positions) in enumerate(chunk):
                pos = [t for t in positions if 1 <= t < len(ids)]
                if not pos:
                    out.append((0.0, 0))
                    continue
                idx = torch.tensor(pos, device=logits.device)
                lp = torch.log_softmax(logits[j, idx - 1].float(), dim=-1)
                targets = torch.tensor([ids[t] for t in pos], device=logits.device)
                out.append((float(lp.gather(-1, targets[:, None]).sum().item()), len(pos)))
    return out


def _tokenize_pairs(tok, rows: Sequence[Any]):
    """Per row: (full chosen ids, completion start, full rejected ids, completion start)."""
    pairs = []
    for i, row in enumerate(rows):
        where = _row_label(row, i)
        prompt, full_c, full_r = _pair(row, where)
        prompt_text = _render(tok, prompt, generation_prompt=True, where=where)
        texts = {}
        for key, conv in (("chosen", full_c), ("rejected", full_r)):
            text = _render(tok, conv, generation_prompt=False, where=where)
            if not text.startswith(prompt_text):
                raise DataError(
                    Problem(
                        where=f"{where}: {key}",
                        message="the rendered conversation does not start with the rendered prompt "
                        f"(prompt ends {prompt_text[-40:]!r}, conversation has {text[:len(prompt_text)][-40:]!r})",
                        fix="give chosen and rejected the same prompt turns, or use a chat template that "
                        "renders a prompt the same way with and without its answer",
                    )
                )
            if len(text) == len(prompt_text):
                raise DataError(Problem(where=f"{where}: {key}", message="the completion renders to nothing"))
            texts[key] = text
        p_ids = _ids(tok, prompt_text)
        c_ids, r_ids = _ids(tok, texts["chosen"]), _ids(tok, texts["rejected"])
        start = min(_common_prefix(p_ids, c_ids), _common_prefix(p_ids, r_ids))
        if start >= len(c_ids) or start >= len(r_ids):
            raise DataError(Problem(where=where, message="a completion tokenizes to no tokens"))
        pairs.append((c_ids, max(start, 1), r_ids, max(start, 1)))
    return pairs


def _pad_id(tok) -> int:
    for attr in ("pad_token_id", "eos_token_id"):
        v = getattr(tok, attr, None)
        if v is not None:
            return int(v)
    return 0


def _as_rows(rows: Iterable[Any], what: str) -> list[Any]:
    rows = list(rows)
    if not rows:
        raise DataError(Problem(where=what, message="no rows to evaluate", fix="pass at least one row"))
    return rows


def _frac_greater(a: Sequence[float], b: Sequence[float]) -> float:
    score = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(a, b))
    return score / len(a)


def preference_metrics(
    model_dir: str | Path,
    rows: Iterable[Any],
    *,
    ref_model_dir: str | Path | None = None,
    beta: float = 0.1,
    batch_size: int = 16,
    device: str = "cpu",
    dtype: str | None = None,
    chat_template: str | None = None,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """How often a model prefers the chosen completion, and (with a reference) DPO's implicit reward.

    Rows: ultrafeedback_binarized shape (``prompt`` str, ``chosen``/``rejected`` message lists that
    include the prompt turns), TRL's shape (``prompt`` messages, ``chosen``/``rejected`` assistant
    turns), or ``prompt``/``chosen``/``rejected`` strings.

    Returns ``n``, ``accuracy_logp`` (fraction of rows where sum log p(chosen completion | prompt) >
    that of rejected; ties count half), ``mean_logp_margin``, ``mean_chosen_logp``,
    ``mean_rejected_logp``; with ``ref_model_dir`` also ``accuracy_reward`` and
    ``mean_reward_margin``, where reward margin = beta * [(logπ(c) - logref(c)) - (logπ(r) - logref(r))].
    """
    rows = _as_rows(rows, "preference rows")
    tok = load_tokenizer(model_dir, chat_template=chat_template, trust_remote_code=trust_remote_code)
    pairs = _tokenize_pairs(tok, rows)
    seqs = []
    for c_ids, c_start, r_ids, r_start in pairs:
        seqs.append((c_ids, list(range(c_start, len(c_ids)))))
        seqs.append((r_ids, list(range(r_start, len(r_ids)))))
    pad = _pad_id(tok)

    def score(path: str | Path) -> tuple[list[float], list[float]]:
        model = load_model(path, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        res = _sequence_logps(model, seqs, batch_size=batch_size * 2, pad_id=pad, device=device)
        del model
        return [res[k][0] for k in range(0, len(res), 2)], [res[k][0] for k in range(1, len(res), 2)]

    pc, pr = score(model_dir)
    n = len(rows)
    out: dict[str, Any] = {
        "n": n,
        "accuracy_logp": _frac_greater(pc, pr),
        "mean_logp_margin": sum(c - r for c, r in zip(pc, pr)) / n,
        "mean_chosen_logp": sum(pc) / n,
        "mean_rejected_logp": sum(pr) / n,
    }
    if ref_model_dir is not None:
        rc, rr = score(ref_model_dir)
        margins = [beta * ((a - b) - (c - d)) for a, b, c, d in zip(pc, rc, pr, rr)]
        out["beta"] = beta
        out["accuracy_reward"] = _frac_greater(margins, [0.0] * n)
        out["mean_reward_margin"] = sum(margins) / n
    return out


def eval_loss(
    model_dir: str | Path,
    rows: Iterable[Any],
    *,
    batch_size: int = 8,
    max_length: int | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    chat_template: str | None = None,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Mean negative log-likelihood per token of the ASSISTANT tokens of SFT ``messages`` rows.

    Only assistant turns are scored (everything the template renders for an assistant turn,
    including its end-of-turn token); user and system turns and the role headers are context.
    ``max_length`` truncates each conversation's tokens (keeping the start), as training does.
    Returns ``loss`` (token-weighted mean over all rows), ``perplexity`` = exp(loss), ``tokens``
    (how many were scored) and ``n`` (rows).
    """
    rows = _as_rows(rows, "SFT rows")
    tok = load_tokenizer(model_dir, chat_template=chat_template, trust_remote_code=trust_remote_code)
    seqs = []
    for i, row in enumerate(rows):
        where = _row_label(row, i)
        msgs = row.get("messages") if isinstance(row, dict) else None
        _require_messages(msgs, f"{where}: messages", fix="use the ultrachat_200k shape: messages = [{role, content}, ...]")
        if not any(m["role"] == "assistant" for m in msgs):
            raise DataError(Problem(where=f"{where}: messages", message="has no assistant turn to score"))
        full = _render(tok, msgs, generation_prompt=False, where=where)
        ids = _ids(tok, full)
        positions: list[int] = []
        for k, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            before = _render(tok, msgs[:k], generation_prompt=True, where=where) if k else ""
            upto = _render(tok, msgs[: k + 1], generation_prompt=False, where=where)
            if not (full.startswith(upto) and upto.startswith(before)):
                raise DataError(
                    Problem(
                        where=f"{where}: messages[{k}]",
                        message="the chat template renders this turn's prefix differently from the whole "
                        "conversation, so the assistant tokens cannot be located",
                        fix="use a chat template whose rendering of a conversation's start does not change "
                        "when turns are added",
                    )
                )
            a = _common_prefix(_ids(tok, before), ids) if before else 0
            b = len(ids) if upto == full else _common_prefix(_ids(tok, upto), ids)
            positions.extend(range(max(a, 1), b))
        if max_length is not None:
            ids = ids[:max_length]
            positions = [t for t in positions if t < max_length]
        seqs.append((ids, positions))
    model = load_model(model_dir, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    res = _sequence_logps(model, seqs, batch_size=batch_size, pad_id=_pad_id(tok), device=device)
    total = sum(s for s, _ in res)
    count = sum(c for _, c in res)
    if count == 0:
        raise DataError(
            Problem(where="SFT rows", message="no assistant tokens left to score", fix="raise max_length")
        )
    loss = -total / count
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": count, "n": len(rows)}
