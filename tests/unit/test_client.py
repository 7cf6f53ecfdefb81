"""The OpenAI-compatible client against a real HTTP server on 127.0.0.1 (the fake judge)."""

from __future__ import annotations

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from alignkit.errors import DataError, RuntimeFailure, UsageError  # noqa: E402
from alignkit.client import ChatClient, JsonlLog, chat_completions_url, make_client  # noqa: E402
from tests.eval_support import CANARY, FakeJudge  # noqa: E402


class Sleeps:
    def __init__(self):
        self.calls: list[float] = []

    def __call__(self, s: float) -> None:
        self.calls.append(s)


def client(judge: FakeJudge, **kw) -> ChatClient:
    kw.setdefault("sleep", Sleeps())
    kw.setdefault("max_retries", 3)
    kw.setdefault("timeout", 5.0)
    return ChatClient(judge.base_url, kw.pop("model", "judge-x"), **kw)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_request_shape_and_auth(monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", CANARY)
    with FakeJudge(lambda body: "Rating: [[8]]") as j:
        c = client(j, api_key_env="MY_JUDGE_KEY", require_key=True)
        r = c.chat([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], temperature=0, max_tokens=2048)
    assert r.content == "Rating: [[8]]"
    assert j.paths == ["/v1/chat/completions"]
    body = j.requests[0]
    assert body["model"] == "judge-x"
    assert body["temperature"] == 0 and body["max_tokens"] == 2048
    assert body["messages"][0] == {"role": "system", "content": "s"}
    assert j.headers[0]["Authorization"] == f"Bearer {CANARY}"


def test_base_url_forms():
    assert chat_completions_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("https://x.y/openai/v1/chat/completions") == "https://x.y/openai/v1/chat/completions"
    with pytest.raises(UsageError) as e:
        chat_completions_url("api.openai.com/v1")
    assert "--judge-base-url" in str(e.value)


def test_displayed_endpoint_drops_credentials_in_the_url():
    port = free_port()
    c = ChatClient(f"http://user:{CANARY}@127.0.0.1:{port}/v1?key={CANARY}", "m", max_retries=0)
    assert c.endpoint == f"http://127.0.0.1:{port}/v1/chat/completions"
    with pytest.raises(RuntimeFailure) as e:
        c.chat([{"role": "user", "content": "u"}])
    assert CANARY not in str(e.value) and CANARY not in repr(c)


def test_retries_429_and_500_with_backoff_then_succeeds():
    with FakeJudge() as j:
        j.plan = ["500", "500", "500"]
        sleeps = Sleeps()
        c = client(j, sleep=sleeps, backoff=1.0, max_backoff=60.0, max_retries=3)
        assert c.chat([{"role": "user", "content": "u"}]).content == "Rating: [[7]]"
        assert j.calls == 4
        assert len(sleeps.calls) == 3
        # exponential: attempt k waits within [0.5, 1] x 2^k seconds
        for k, s in enumerate(sleeps.calls):
            assert 0.5 * 2**k <= s <= 2**k
        j.plan = ["429"]  # Retry-After: 0 is honoured
        sleeps.calls.clear()
        c.chat([{"role": "user", "content": "u"}])
        assert sleeps.calls == [0.0]


def test_repeated_500_fails_naming_endpoint_not_key(monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", CANARY)
    with FakeJudge() as j:
        j.always = "500"
        c = client(j, api_key_env="MY_JUDGE_KEY", max_retries=2)
        with pytest.raises(RuntimeFailure) as e:
            c.chat([{"role": "user", "content": "u"}])
    assert j.calls == 3
    msg = str(e.value)
    assert j.base_url + "/chat/completions" in msg
    assert "HTTP 500" in msg and "3 times" in msg
    assert CANARY not in msg and CANARY not in repr(c) and "MY_JUDGE_KEY" in repr(c)


def test_garbage_and_missing_choices_fail_at_once():
    with FakeJudge() as j:
        j.plan = ["garbage"]
        c = client(j)
        with pytest.raises(RuntimeFailure) as e:
            c.chat([{"role": "user", "content": "u"}])
        assert "not JSON" in str(e.value) and j.base_url in str(e.value)
        assert j.calls == 1
        j.plan = ["nochoices"]
        with pytest.raises(RuntimeFailure) as e:
            c.chat([{"role": "user", "content": "u"}])
        assert "choices" in str(e.value)


def test_refused_connection_fails_after_retries():
    port = free_port()
    sleeps = Sleeps()
    c = ChatClient(f"http://127.0.0.1:{port}/v1", "m", max_retries=2, sleep=sleeps, timeout=2)
    with pytest.raises(RuntimeFailure) as e:
        c.chat([{"role": "user", "content": "u"}])
    assert f"127.0.0.1:{port}" in str(e.value) and "connection failed" in str(e.value)
    assert c.calls == 3 and len(sleeps.calls) == 2


def test_timeout_is_retried_then_reported():
    with FakeJudge() as j:
        j.always = "sleep:1.0"
        c = client(j, timeout=0.3, max_retries=1)
        with pytest.raises(RuntimeFailure) as e:
            c.chat([{"role": "user", "content": "u"}])
    assert "timed out" in str(e.value)
    assert j.calls == 2


def test_401_not_retried_and_fix_names_the_variable(monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", CANARY)
    with FakeJudge() as j:
        j.plan = ["401"]
        c = client(j, api_key_env="MY_JUDGE_KEY")
        with pytest.raises(RuntimeFailure) as e:
            c.chat([{"role": "user", "content": "u"}])
    assert j.calls == 1
    assert "HTTP 401" in str(e.value) and "$MY_JUDGE_KEY" in str(e.value)


def test_key_reflected_by_server_is_scrubbed(monkeypatch, capfd):
    monkeypatch.setenv("MY_JUDGE_KEY", CANARY)
    with FakeJudge(lambda body: f"your key is {CANARY}") as j:
        j.plan = ["echo-auth"]
        c = client(j, api_key_env="MY_JUDGE_KEY")
        with pytest.raises(RuntimeFailure) as e:
            c.chat([{"role": "user", "content": "u"}])
        assert "denied for Bearer ***" in str(e.value)
        r = c.chat([{"role": "user", "content": "u"}])  # a reflected key in an answer is scrubbed too
        assert r.content == "your key is ***"
    out, err = capfd.readouterr()
    assert CANARY not in str(e.value) + out + err


def test_api_key_env_validation(monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(UsageError) as e:
        ChatClient("http://127.0.0.1:9/v1", "m", api_key_env="NOT_SET_ANYWHERE", require_key=True)
    assert "NOT_SET_ANYWHERE is not set" in str(e.value)
    with pytest.raises(UsageError) as e:  # someone pasted the key itself
        ChatClient("http://127.0.0.1:9/v1", "m", api_key_env="sk-abc.def-123")
    assert "NAME of an environment variable" in str(e.value)
    assert "sk-abc.def-123" not in str(e.value)


def test_concurrency_is_bounded_and_results_arrive_in_calling_thread():
    with FakeJudge(lambda body: body["messages"][0]["content"].upper()) as j:
        j.delay = 0.15
        c = client(j, concurrency=3)
        got = {}
        threads = set()

        def done(k, r):
            got[k] = r.content
            threads.add(threading.current_thread().name)

        n = c.run([(i, {"messages": [{"role": "user", "content": f"q{i}"}]}) for i in range(9)], done)
    assert n == 9 and got == {i: f"Q{i}" for i in range(9)}
    assert 2 <= j.max_inflight <= 3
    assert threads == {threading.current_thread().name}


def test_run_stops_on_first_failure_and_keeps_what_arrived():
    with FakeJudge() as j:
        j.fail_after = 4
        c = client(j, concurrency=1, max_retries=0)
        got = []
        with pytest.raises(RuntimeFailure):
            c.run([(i, {"messages": [{"role": "user", "content": str(i)}]}) for i in range(10)], lambda k, r: got.append(k))
    assert got == [0, 1, 2, 3]
    assert j.calls == 5  # nothing new starts after the failure


def test_redirects_are_not_followed(monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", CANARY)
    seen = []

    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            seen.append(dict(self.headers))
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        c = ChatClient(f"http://127.0.0.1:{srv.server_address[1]}/v1", "m", api_key_env="MY_JUDGE_KEY", max_retries=0)
        with pytest.raises(RuntimeFailure) as e:
            c.chat([{"role": "user", "content": "u"}])
    finally:
        srv.shutdown()
        srv.server_close()
    assert len(seen) == 1 and "HTTP 307" in str(e.value)


def test_jsonl_log_appends_fsyncs_and_reloads(tmp_path, monkeypatch):
    import os

    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    p = tmp_path / "j.jsonl"
    log = JsonlLog(p, key=lambda r: (r["id"], r["turn"]))
    log.append({"id": 1, "turn": 1, "v": "a"})
    log.append({"id": 1, "turn": 2, "v": "b"})
    assert len(synced) == 2
    again = JsonlLog(p, key=lambda r: (r["id"], r["turn"]))
    assert again.get((1, 2))["v"] == "b" and len(again) == 2


def test_jsonl_log_repairs_a_cut_off_last_line(tmp_path):
    p = tmp_path / "j.jsonl"
    p.write_text(json.dumps({"id": 1}) + "\n" + '{"id": 2, "v": "half', encoding="utf-8")
    log = JsonlLog(p, key=lambda r: r["id"])
    assert log.repaired and list(log.records) == [1]
    log.append({"id": 3})
    assert [json.loads(x)["id"] for x in p.read_text().splitlines()] == [1, 3]
    # a complete last record without its newline is kept
    p.write_text(json.dumps({"id": 1}) + "\n" + json.dumps({"id": 2}), encoding="utf-8")
    log = JsonlLog(p, key=lambda r: r["id"])
    log.append({"id": 3})
    assert [json.loads(x)["id"] for x in p.read_text().splitlines()] == [1, 2, 3]


def test_jsonl_log_bad_middle_line_is_a_data_error(tmp_path):
    p = tmp_path / "j.jsonl"
    p.write_text('{"id": 1}\nnot json\n{"id": 3}\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        JsonlLog(p, key=lambda r: r["id"])
    assert f"{p}:2" in str(e.value)


def test_make_client_uses_openai_api_key_only_for_openai(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    opts = {"concurrency": 1, "timeout": 1, "max_retries": 0, "what": "judge"}
    with pytest.raises(UsageError, match="OPENAI_API_KEY is not set"):
        make_client("https://api.openai.com/v1", "gpt-4", api_key_env=None, **opts)
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    assert make_client("https://api.openai.com/v1", "gpt-4", api_key_env=None, **opts).api_key_env == "OPENAI_API_KEY"
    assert make_client("http://127.0.0.1:9/v1", "j", api_key_env=None, **opts).api_key_env is None  # never sent elsewhere
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(UsageError, match="MY_KEY is not set"):  # a variable that is named must be set
        make_client("http://127.0.0.1:9/v1", "j", api_key_env="MY_KEY", **opts)
