"""One row's messages: the checks SFT and DPO rows share, and DPO's normalization to prompt/chosen/rejected
message lists (the accepted forms are listed in alignkit/data/validate.py). Pure Python: no pyarrow."""

from __future__ import annotations

from typing import Any

ROLES = ("system", "user", "assistant")


def check_message_list(msgs: Any, name: str) -> str | None:
    """Structural check of a message list; returns the first problem or None."""
    if msgs is None:
        return f"{name} is missing (null)"
    if not isinstance(msgs, list):
        return f"{name} is a {type(msgs).__name__}, not a list of {{role, content}} messages"
    if not msgs:
        return f"{name} is empty"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            return f"{name}[{i}] is not a {{role, content}} object"
        role = m.get("role")
        if role is None:
            return f"{name}[{i}] has no role"
        if role not in ROLES:
            return f"{name}[{i}].role is {role!r}; expected system, user or assistant"
        content = m.get("content")
        if content is None:
            return f"{name}[{i}] ({role}) has no content"
        if not isinstance(content, str):
            return f"{name}[{i}].content is a {type(content).__name__}, not a string"
        if role == "system" and i > 0:
            return f"{name}[{i}] is a system turn after the start; only the first turn may be system"
    return None


def check_sft_messages(msgs: Any) -> str | None:
    """The first problem with an SFT ``messages`` value, or None when it is valid."""
    problem = check_message_list(msgs, "messages")
    if problem:
        return problem
    if not any(m["role"] == "user" for m in msgs):
        return "messages has no user turn"
    last = msgs[-1]["role"]
    if last != "assistant":
        return f"messages ends with a {last} turn; SFT rows must end with an assistant turn"
    return None


def _as_prompt_messages(prompt: Any) -> tuple[list | None, str | None]:
    if isinstance(prompt, str):
        if not prompt.strip():
            return None, "prompt is empty"
        return [{"role": "user", "content": prompt}], None
    problem = check_message_list(prompt, "prompt")
    if problem:
        return None, problem
    return [{"role": m["role"], "content": m["content"]} for m in prompt], None


def _strip(msgs: list) -> list:
    return [{"role": m["role"], "content": m["content"]} for m in msgs]


def normalize_preference(row: dict) -> tuple[tuple[list, list, list] | None, str | None]:
    """Turn one DPO row into (prompt, chosen, rejected) message lists, or return the problem.

    The prompt ends with a user turn; chosen and rejected are assistant continuations of it.
    """
    if "chosen" not in row or "rejected" not in row:
        return None, "needs 'chosen' and 'rejected'"
    chosen, rejected = row["chosen"], row["rejected"]
    has_prompt = row.get("prompt") is not None
    if isinstance(chosen, str) and isinstance(rejected, str):
        if not has_prompt:
            return None, "chosen and rejected are strings but there is no prompt"
        prompt, problem = _as_prompt_messages(row["prompt"])
        if problem:
            return None, problem
        c = [{"role": "assistant", "content": chosen}]
        r = [{"role": "assistant", "content": rejected}]
    elif isinstance(chosen, list) and isinstance(rejected, list):
        for name, value in (("chosen", chosen), ("rejected", rejected)):
            problem = check_message_list(value, name)
            if problem:
                return None, problem
        chosen, rejected = _strip(chosen), _strip(rejected)
        if has_prompt:
            prompt, problem = _as_prompt_messages(row["prompt"])
            if problem:
                return None, problem
            k = len(prompt)
            if chosen[:k] == prompt and rejected[:k] == prompt:
                c, r = chosen[k:], rejected[k:]  # full conversations that start with the prompt
            else:
                c, r = chosen, rejected  # completion-only lists (TRL's conversational form)
        else:
            k = 0
            while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
                k += 1
            # the prompt ends at the last user turn of the shared part
            while k > 0 and chosen[k - 1]["role"] != "user":
                k -= 1
            if k == 0:
                return None, "chosen and rejected share no prompt (no common turns ending with a user turn) and there is no prompt column"
            prompt, c, r = chosen[:k], chosen[k:], rejected[k:]
    else:
        return None, (
            f"chosen is a {type(chosen).__name__} and rejected a {type(rejected).__name__}; "
            "both must be message lists or both strings"
        )
    if not prompt:
        return None, "prompt is empty"
    if any(m["role"] == "system" for m in prompt[1:]):
        return None, "prompt has a system turn after the start; only the first turn may be system"
    if prompt[-1]["role"] != "user":
        return None, f"the prompt's last turn is {prompt[-1]['role']}; it must end with a user turn"
    for name, comp in (("chosen", c), ("rejected", r)):
        if not comp:
            return None, f"{name} has no reply after the prompt"
        if comp[0]["role"] != "assistant" or comp[-1]["role"] != "assistant":
            return None, f"{name} must be assistant turns after the prompt (got {[m['role'] for m in comp]})"
        if any(m["role"] == "system" for m in comp):
            return None, f"{name} contains a system turn"
    if c == r:
        return None, "chosen and rejected are identical"
    return (prompt, c, r), None


# ----------------------------------------------------------------------------------------------
# table-level validation
