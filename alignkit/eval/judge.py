"""Judging, as MT-Bench and AlpacaEval share it: the judge's client, asking the judge only what its
log lacks, and the error for a run in which no judgment could be scored.

The HTTP client and the resume log themselves live in ``alignkit.client`` (shared with ``alignkit aif``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Optional

from alignkit.client import ChatClient, ChatResponse, JsonlLog, make_client
from alignkit.errors import Problem, RuntimeFailure


def judge_client(model: str, base_url: str, key_env: Optional[str], *, concurrency: int, max_retries: int,
                 timeout: float) -> ChatClient:
    """The judge's client (``--judge-*`` options); OPENAI_API_KEY by default only for api.openai.com."""
    return make_client(base_url, model, api_key_env=key_env, concurrency=concurrency, timeout=timeout,
                       max_retries=max_retries, what="judge")


def ask_missing(
    client: ChatClient,
    log: JsonlLog,
    items: Iterable[Any],
    *,
    key: Callable[[Any], Hashable],
    request: Callable[[Any], dict[str, Any]],
    record: Callable[[Any, ChatResponse], dict],
    on_progress: Callable[[], None] | None = None,
) -> int:
    """Send ``request(item)`` to ``client`` for every item whose ``key(item)`` is not in ``log``;
    ``record(item, response)`` is appended to ``log`` as each answer arrives. Returns the number of answers."""
    jobs = [(item, request(item)) for item in items if key(item) not in log]
    return client.run(jobs, lambda item, resp: log.append(record(item, resp)), on_progress=on_progress)


def unscorable(bench: str, judge: ChatClient, path: Path, *, unreadable: str, seen: str, fix: str, options: str) -> RuntimeFailure:
    """The error for a run in which no judgment gave anything the benchmark's parser can read.

    ``unreadable`` says what was missing from every judgment, ``seen`` (may be empty) what came
    instead, ``fix`` what would help, ``options`` which options make a re-run reuse the judgments
    kept in ``path`` (it would not ask again).
    """
    return RuntimeFailure(
        Problem(
            where=f"judge {judge.model!r} at {judge.endpoint}",
            message=f"{unreadable}; the raw judgments are in {path}" + (f" ({seen})" if seen else ""),
            fix=f"{fix}; the judgments stay in {path} and a re-run with the same {options} reuses them: "
            "delete that file to judge again",
        ),
        title=f"{bench} could not be scored",
    )
