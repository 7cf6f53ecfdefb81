"""Keep secrets out of everything alignkit prints or writes.

Secrets are read from the environment by name and passed on through the environment only. As a second
line of defence, ``redact`` replaces the value of every secret-looking environment variable in any text
on its way to the terminal or a file.
"""

from __future__ import annotations

import os
import re

SECRET_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_TOKEN", "OPENAI_API_KEY", "WANDB_API_KEY",
                "ANTHROPIC_API_KEY")
_SECRET_PATTERN = re.compile(r"(TOKEN|API_KEY|SECRET|PASSWORD|PASSWD|_KEY)$", re.IGNORECASE)
MASK = "***"


def secret_env_names(environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    return [k for k in env if k in SECRET_NAMES or _SECRET_PATTERN.search(k)]


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    # very short values would mangle ordinary text; real tokens are long
    return sorted({env[k] for k in secret_env_names(env) if len(env.get(k, "")) >= 8}, key=len, reverse=True)


def redact(text: str, environ: dict[str, str] | None = None) -> str:
    for value in secret_values(environ):
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_data(data, environ: dict[str, str] | None = None):
    """``redact`` applied to every string inside dicts/lists, so that what is dumped afterwards stays valid
    YAML/JSON (masking the dumped text could leave an unquoted ``***``, which YAML reads as an alias)."""
    if isinstance(data, str):
        return redact(data, environ)
    if isinstance(data, dict):
        return {redact_data(k, environ): redact_data(v, environ) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact_data(v, environ) for v in data]
    return data
