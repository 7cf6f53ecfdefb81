"""The OpenAI-compatible chat client (``alignkit.client.ChatClient``).

* Plain HTTP (stdlib ``urllib``), ``POST {base_url}/chat/completions``; no ``openai`` package.
* The API key is read from an environment variable *named* by the user, at request time. The
  client never stores, prints, logs or writes the key: ``repr()`` shows the variable's name, error
  messages name the endpoint, and any text coming back from the server is scrubbed of the key
  before anyone sees it (a misbehaving proxy could echo headers).
* Requests run concurrently with a bound (``concurrency`` threads). 429, 408, 409, 5xx, timeouts
  and connection errors are retried with exponential backoff (``Retry-After`` is honoured, capped);
  other 4xx fail at once. When an endpoint keeps failing, a ``RuntimeFailure`` names the endpoint
  and what happened (refused, timed out, HTTP 500 N times, unparsable body).
* ``make_client``: a ``ChatClient`` with the one default for keys: OPENAI_API_KEY is used by default
  only for api.openai.com and never sent to another host.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable, Iterator

from alignkit.client.urls import chat_completions_url, display_url
from alignkit.errors import AlignkitError, Problem, RuntimeFailure, UsageError

RETRY_STATUS = frozenset({408, 409, 429})  # plus every 5xx
DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_RETRIES = 6
DEFAULT_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 60.0
DEFAULT_CONCURRENCY = 8
_SNIPPET = 300  # characters of a server's body quoted in an error


def _scrub(text: str, secret: str | None) -> str:
    if secret and text:
        return text.replace(secret, "***")
    return text


def _scrub_obj(obj: Any, secret: str | None) -> Any:
    """Remove ``secret`` from every string inside a parsed JSON value."""
    if not secret:
        return obj
    if isinstance(obj, str):
        return obj.replace(secret, "***")
    if isinstance(obj, list):
        return [_scrub_obj(x, secret) for x in obj]
    if isinstance(obj, dict):
        return {k: _scrub_obj(v, secret) for k, v in obj.items()}
    return obj


@dataclass(frozen=True)
class ChatResponse:
    """One answer from ``/chat/completions`` (already scrubbed of the API key)."""

    content: str
    finish_reason: str | None = None
    #: ``choices[0].logprobs.content`` when the endpoint returned log-probabilities
    logprobs: list[dict] | None = None
    usage: dict | None = None
    model: str | None = None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow redirects: a redirect would carry the Authorization header elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401
        return None


class _HttpStatus(Exception):
    def __init__(self, status: int, body: str, retry_after: float | None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.retry_after = retry_after


def _retry_after(headers) -> float | None:
    if headers is None:
        return None
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class ChatClient:
    """A bounded-concurrency, retrying client for one OpenAI-compatible chat endpoint.

    ``what`` names the role in messages and option names (``"judge"`` → ``--judge-base-url``).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        require_key: bool = False,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        what: str = "judge",
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.what = what
        self.url = chat_completions_url(base_url, option=f"--{what}-base-url")
        self.endpoint = display_url(self.url)
        if not model:
            raise UsageError(Problem(where=f"--{what}-model", message="no model name given"))
        self.model = model
        if api_key_env is not None and api_key_env != "":
            if not api_key_env.replace("_", "").isalnum() or api_key_env[0].isdigit():
                raise UsageError(
                    Problem(
                        where=f"--{what}-api-key-env",
                        message="expects the NAME of an environment variable, not a key",
                        fix=f"export MY_KEY=... and pass --{what}-api-key-env MY_KEY",
                    )
                )
            if require_key and not os.environ.get(api_key_env):
                raise UsageError(
                    Problem(
                        where=f"--{what}-api-key-env",
                        message=f"environment variable {api_key_env} is not set",
                        fix=f"export {api_key_env}=<your key> (it is read from the environment only, "
                        "never printed or saved)",
                    )
                )
        self.api_key_env = api_key_env or None
        if concurrency < 1:
            raise UsageError(Problem(where="--concurrency", message="must be at least 1"))
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._sleep = sleep
        handlers: list[Any] = [_NoRedirect()]
        host = urllib.parse.urlsplit(self.url).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1"):
            handlers.append(urllib.request.ProxyHandler({}))  # loopback never goes through a proxy
        self._opener = urllib.request.build_opener(*handlers)
        self.calls = 0  # HTTP requests sent (including retries)
        self._lock = threading.Lock()

    # -- secrets ----------------------------------------------------------------------------

    def _key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def __repr__(self) -> str:
        return f"ChatClient(endpoint={self.endpoint!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    __str__ = __repr__

    def __reduce__(self):  # never pickle a client (threads, openers); keeps it out of checkpoints
        raise TypeError("ChatClient cannot be pickled")

    # -- one request -------------------------------------------------------------------------

    def _send(self, payload: bytes) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=payload, headers=headers, method="POST")
        with self._lock:
            self.calls += 1
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                body = resp.read().decode("utf-8", errors="replace")
                status = resp.status
                resp_headers = resp.headers
        except urllib.error.HTTPError as e:
            try:
                body = e.read().decode("utf-8", errors="replace")
            except Exception:  # noqa: BLE001 - a broken body is still an HTTP error
                body = ""
            raise _HttpStatus(e.code, _scrub(body, key), _retry_after(e.headers)) from None
        if status != 200:
            raise _HttpStatus(status, _scrub(body, key), _retry_after(resp_headers))
        try:
            data = json.loads(body)
        except ValueError:
            raise self._garbage(f"the response is not JSON: {_scrub(body, key)[:_SNIPPET]!r}") from None
        return _scrub_obj(data, key)

    def _garbage(self, detail: str) -> RuntimeFailure:
        return RuntimeFailure(
            Problem(
                where=self.endpoint,
                message=f"the {self.what} endpoint returned an answer alignkit cannot read: {detail}",
                fix="check that the base URL points at an OpenAI-compatible /v1 API and that the model "
                f"name ({self.model!r}) is served there",
            )
        )

    def _parse(self, data: Any) -> ChatResponse:
        if not isinstance(data, dict):
            raise self._garbage(f"expected a JSON object, got {type(data).__name__}")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self._garbage(f"no 'choices' in {json.dumps(data)[:_SNIPPET]!r}")
        choice = choices[0]
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise self._garbage(f"choices[0].message.content is missing in {json.dumps(data)[:_SNIPPET]!r}")
        logprobs = None
        lp = choice.get("logprobs")
        if isinstance(lp, dict) and isinstance(lp.get("content"), list):
            logprobs = lp["content"]
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
        return ChatResponse(
            content=content,
            finish_reason=choice.get("finish_reason"),
            logprobs=logprobs,
            usage=usage,
            model=data.get("model") if isinstance(data.get("model"), str) else None,
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        base = min(self.max_backoff, self.backoff * (2**attempt))
        return base * (0.5 + random.random() / 2)

    def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
        **params: Any,
    ) -> ChatResponse:
        """Send one chat request (retrying as documented) and return the first choice."""
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = int(max_tokens)
        body.update({k: v for k, v in params.items() if v is not None})
        payload = json.dumps(body).encode("utf-8")
        failures: list[str] = []
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            retry_after = None
            try:
                return self._parse(self._send(payload))
            except _HttpStatus as e:
                snippet = " ".join(e.body.split())[:_SNIPPET]
                if e.status in RETRY_STATUS or e.status >= 500:
                    failures.append(f"HTTP {e.status}")
                    retry_after = e.retry_after
                else:
                    raise self._refused(e.status, snippet) from None
            except (TimeoutError, socket.timeout):
                failures.append(f"timed out after {self.timeout:g} s")
            except urllib.error.URLError as e:
                reason = e.reason
                if isinstance(reason, (TimeoutError, socket.timeout)):
                    failures.append(f"timed out after {self.timeout:g} s")
                else:
                    failures.append(f"connection failed ({_scrub(str(reason), self._key())})")
            except (ConnectionError, OSError) as e:  # reset mid-response, broken pipe, ...
                failures.append(f"connection failed ({type(e).__name__})")
            except http_client_errors() as e:
                failures.append(f"broken HTTP response ({type(e).__name__})")
            if attempt + 1 < attempts:
                self._sleep(self._delay(attempt, retry_after))
        raise self._gave_up(failures)

    def _refused(self, status: int, snippet: str) -> RuntimeFailure:
        if status in (401, 403):
            fix = (
                f"check the key in ${self.api_key_env}"
                if self.api_key_env
                else f"this endpoint needs a key: export it and pass --{self.what}-api-key-env VAR"
            )
        elif status == 404:
            fix = (
                f"check --{self.what}-base-url (it should end in /v1) and that model {self.model!r} exists there"
            )
        else:
            fix = f"check --{self.what}-model and the request parameters the endpoint accepts"
        return RuntimeFailure(
            Problem(
                where=self.endpoint,
                message=f"the {self.what} endpoint refused the request: HTTP {status}"
                + (f": {snippet}" if snippet else ""),
                fix=fix,
            )
        )

    def _gave_up(self, failures: list[str]) -> RuntimeFailure:
        counts: dict[str, int] = {}
        for f in failures:
            counts[f] = counts.get(f, 0) + 1
        summary = ", ".join(f"{k} ×{n}" if n > 1 else k for k, n in counts.items())
        return RuntimeFailure(
            Problem(
                where=self.endpoint,
                message=f"the {self.what} endpoint failed {len(failures)} times in a row: {summary}",
                fix="check that the server is up and reachable (or raise --max-retries/--timeout); "
                "results so far are saved, so re-running the same command resumes",
            )
        )

    # -- many requests -----------------------------------------------------------------------

    def run(
        self,
        jobs: Iterable[tuple[Hashable, dict[str, Any]]],
        on_result: Callable[[Hashable, ChatResponse], None],
        *,
        on_progress: Callable[[], None] | None = None,
    ) -> int:
        """Run ``chat(**kwargs)`` for every ``(key, kwargs)`` with at most ``concurrency`` in flight.

        ``on_result(key, response)`` is called in the calling thread as each answer arrives (so it
        may append to a file without locking). On the first failure no new request starts; the
        answers still in flight are delivered, then the failure is raised. Returns the number of
        answers delivered.
        """
        jobs = list(jobs)
        if not jobs:
            return 0
        delivered = 0
        error: BaseException | None = None
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs)), thread_name_prefix=f"alignkit-{self.what}")
        futures: dict[Future, Hashable] = {}
        stop = threading.Event()

        def call(kwargs: dict[str, Any]) -> ChatResponse:
            if stop.is_set():  # a request failed: start nothing new
                raise _Skipped
            try:
                return self.chat(**kwargs)
            except BaseException:
                stop.set()
                raise

        try:
            for key, kwargs in jobs:
                futures[pool.submit(call, kwargs)] = key
            for fut in as_completed(futures):
                try:
                    resp = fut.result()
                except (CancelledError, _Skipped):
                    continue
                except BaseException as e:  # noqa: BLE001 - re-raised below, after the others land
                    if error is None:
                        error = e
                        for other in futures:
                            other.cancel()
                    continue
                on_result(futures[fut], resp)
                delivered += 1
                if on_progress is not None:
                    on_progress()
        except BaseException:  # Ctrl-C while waiting: stop starting requests, do not wait for them
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        if error is not None:
            if isinstance(error, AlignkitError):
                raise error
            raise RuntimeFailure(
                Problem(where=self.endpoint, message=f"request failed: {type(error).__name__}: {_scrub(str(error), self._key())}")
            ) from None
        return delivered


class _Skipped(Exception):
    """A job not started because an earlier one failed."""


def http_client_errors() -> tuple[type[BaseException], ...]:
    import http.client

    return (http.client.HTTPException,)


def make_client(
    base_url: str,
    model: str,
    *,
    api_key_env: str | None,
    concurrency: int,
    timeout: float,
    max_retries: int,
    what: str,
    sleep: Callable[[float], None] | None = None,
) -> ChatClient:
    """A ``ChatClient`` for ``--{what}-*`` options. OPENAI_API_KEY is used by default only for
    api.openai.com and never sent to another host; a variable that is named must be set."""
    openai = (urllib.parse.urlsplit(base_url.strip()).hostname or "") == "api.openai.com"
    require = bool(api_key_env) or openai
    if not api_key_env and openai:
        api_key_env = "OPENAI_API_KEY"
    kw: dict[str, Any] = {}
    if sleep is not None:
        kw["sleep"] = sleep
    return ChatClient(
        base_url,
        model,
        api_key_env=api_key_env,
        require_key=require,
        concurrency=concurrency,
        timeout=timeout,
        max_retries=max_retries,
        what=what,
        **kw,
    )


def chunks(items: list, n: int) -> Iterator[list]:
    """``items`` in batches of ``n`` (requests, prompts), in order."""
    for i in range(0, len(items), max(1, n)):
        yield items[i : i + n]
