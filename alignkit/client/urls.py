"""Endpoint URLs: the ``/chat/completions`` URL for a base URL, and a form that is safe to print."""

from __future__ import annotations

import urllib.parse

from alignkit.errors import Problem, UsageError


def display_url(url: str) -> str:
    """``url`` without ``user:password@`` and without its query (either may carry a key): safe to print."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def chat_completions_url(base_url: str, *, option: str = "--judge-base-url") -> str:
    """``base_url`` + ``/chat/completions``. A bare host (``http://h:8000``) gets ``/v1`` added."""
    base = (base_url or "").strip()
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            Problem(
                where=option,
                message=f"{display_url(base)!r} is not an http(s) URL",
                fix="give the OpenAI-compatible base URL, e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1",
            )
        )
    path = parts.path.rstrip("/")
    if path.endswith("/chat/completions"):
        path = path[: -len("/chat/completions")]
    if path == "":
        path = "/v1"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path + "/chat/completions", parts.query, ""))
