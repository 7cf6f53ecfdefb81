"""Test helpers for the evaluation tests: a fake OpenAI-compatible judge and small benchmark files.

The fake judge is a real HTTP server on 127.0.0.1 (stdlib ``http.server`` in a thread). It answers
``POST /v1/chat/completions`` with what ``responder(body)`` returns, can be told to misbehave for
the next requests (``plan``: "429", "500", "garbage", "nochoices", "sleep:SECONDS", "401",
"echo-auth") or for every request (``always``), and records every request it receives.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

CANARY = "sk-canary-7f3e1d9c0b2a4e6f8a1b3c5d"


class FakeJudge:
    def __init__(self, responder: Callable[[dict], Any] | None = None):
        self.responder = responder or (lambda body: "Rating: [[7]]")
        self.plan: list[str] = []
        self.always: str | None = None
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.paths: list[str] = []
        self.calls = 0
        self.inflight = 0  # requests read and not yet answered (at most what the client has open at once)
        self.max_inflight = 0
        self.delay = 0.0  # seconds every OK answer takes
        self.fail_after: int | None = None  # answer OK this many times, then 500 forever
        self._lock = threading.Lock()
        judge = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with judge._lock:
                    judge.calls += 1
                    n = judge.calls
                    judge.paths.append(self.path)
                    judge.headers.append(dict(self.headers))
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = {"_raw": raw.decode("utf-8", "replace")}
                    judge.requests.append(body)
                    action = judge.plan.pop(0) if judge.plan else judge.always
                    if judge.fail_after is not None and n > judge.fail_after:
                        action = "500"
                    judge.inflight += 1
                    judge.max_inflight = max(judge.max_inflight, judge.inflight)
                    self._counted = True
                try:
                    self._answer(action, body)
                finally:
                    self._uncount()

            def _uncount(self):
                # a request counts as in flight until its answer starts to go out, not until the write returns:
                # the client may already have the answer and sent its next request by then
                with judge._lock:
                    if getattr(self, "_counted", False):
                        self._counted = False
                        judge.inflight -= 1

            def _send(self, status: int, payload: bytes, ctype: str = "application/json", extra: dict | None = None):
                self._uncount()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def _answer(self, action: str | None, body: dict):
                if self.path != "/v1/chat/completions":
                    return self._send(404, b'{"error": "not found"}')
                if action and action.startswith("sleep:"):
                    time.sleep(float(action.split(":", 1)[1]))
                    action = None
                if action == "429":
                    return self._send(429, b'{"error": {"message": "rate limited"}}', extra={"Retry-After": "0"})
                if action == "500":
                    return self._send(500, b'{"error": {"message": "boom"}}')
                if action == "401":
                    return self._send(401, b'{"error": {"message": "bad key"}}')
                if action == "echo-auth":  # a misbehaving server that reflects the key
                    msg = json.dumps({"error": {"message": f"denied for {self.headers.get('Authorization')}"}})
                    return self._send(400, msg.encode())
                if action == "garbage":
                    return self._send(200, b"<html>this is not json</html>", ctype="text/html")
                if action == "nochoices":
                    return self._send(200, b'{"object": "chat.completion", "choices": []}')
                if judge.delay:
                    time.sleep(judge.delay)
                out = judge.responder(body)
                message: dict[str, Any] = {"role": "assistant"}
                choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
                if isinstance(out, dict):
                    message["content"] = out.get("content", "")
                    if "top_logprobs" in out:
                        choice["logprobs"] = {
                            "content": [{"token": message["content"], "logprob": 0.0, "top_logprobs": out["top_logprobs"]}]
                        }
                else:
                    message["content"] = out
                choice["message"] = message
                resp = {
                    "id": uuid.uuid4().hex,
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [choice],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
                self._send(200, json.dumps(resp).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        # shutdown() waits for the serve loop's next poll: 0.05 s instead of the default 0.5 s per server
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> "FakeJudge":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def user_text(body: dict) -> str:
    return next((m["content"] for m in body.get("messages", []) if m.get("role") == "user"), "")


# -- small benchmark files in FastChat's schemas (written by the tests, not benchmark text) ---------

QUESTIONS = [
    {"question_id": 1, "category": "writing", "turns": ["Write a line about rain.", "Now make it rhyme."]},
    {"question_id": 2, "category": "math", "turns": ["What is 2+3?", "And times 4?"]},
    {"question_id": 3, "category": "stem", "turns": ["Name a gas.", "Name another."]},
    {"question_id": 4, "category": "coding", "turns": ["Print hi in Python.", "Now in C."]},
    {"question_id": 5, "category": "extraction", "turns": ["Extract the year: born 1990."]},  # one turn only
]
REFERENCES = [
    {"question_id": 2, "model_id": "gpt-4", "choices": [{"index": 0, "turns": ["5", "20"]}]},
    {"question_id": 4, "model_id": "gpt-4", "choices": [{"index": 0, "turns": ["print('hi')", "puts(\"hi\");"]}]},
]
# Same names, types and template variables as FastChat's judge_prompts.jsonl; our own short wording.
JUDGE_PROMPTS = [
    {"name": "single-v1", "type": "single", "system_prompt": "SYS-GENERAL",
     "prompt_template": "GENERAL\n[Q]{question}\n[A]{answer}\nRate as [[rating]].",
     "description": "t", "category": "general", "output_format": "[[rating]]"},
    {"name": "single-math-v1", "type": "single", "system_prompt": "SYS-MATH",
     "prompt_template": "MATH\n[Q]{question}\n[REF]{ref_answer_1}\n[A]{answer}\nRate as [[rating]].",
     "description": "t", "category": "math", "output_format": "[[rating]]"},
    {"name": "single-v1-multi-turn", "type": "single", "system_prompt": "SYS-GENERAL-MT",
     "prompt_template": "GENERAL-MT\n[Q1]{question_1}\n[A1]{answer_1}\n[Q2]{question_2}\n[A2]{answer_2}\nRate as [[rating]].",
     "description": "t", "category": "general", "output_format": "[[rating]]"},
    {"name": "single-math-v1-multi-turn", "type": "single", "system_prompt": "SYS-MATH-MT",
     "prompt_template": "MATH-MT\n[Q1]{question_1}\n[REF1]{ref_answer_1}\n[Q2]{question_2}\n[REF2]{ref_answer_2}\n"
                        "[A1]{answer_1}\n[A2]{answer_2}\nRate as [[rating]].",
     "description": "t", "category": "math", "output_format": "[[rating]]"},
    {"name": "pair-v2", "type": "pairwise", "system_prompt": "x", "prompt_template": "{question}",
     "description": "t", "category": "general", "output_format": "[[A]]"},
]  # fmt: skip

# An AlpacaEval-style annotator template (ChatML-like text with the three placeholders).
ALPACA_TEMPLATE = (
    "<|im_start|>system\nYou compare two outputs.\n<|im_end|>\n"
    "<|im_start|>user\nINSTRUCTION: {instruction}\nOUTPUT m: {output_1}\nOUTPUT M: {output_2}\n"
    "Answer m or M.\n<|im_end|>"
)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_mtbench_files(d: Path, questions: list[dict] | None = None) -> dict[str, str]:
    return {
        "questions": str(write_jsonl(d / "question.jsonl", questions or QUESTIONS)),
        "references": str(write_jsonl(d / "reference.jsonl", REFERENCES)),
        "judge_prompts": str(write_jsonl(d / "judge_prompts.jsonl", JUDGE_PROMPTS)),
    }


class EchoGenerator:
    """A generator that answers deterministically and records every call (no model involved)."""

    backend = "fake"

    def __init__(self):
        self.calls: list[dict] = []
        self.closed = False

    def generate(self, conversations, *, temperature, max_new_tokens, on_progress=None):
        self.calls.append({"conversations": [list(c) for c in conversations], "temperature": temperature,
                           "max_new_tokens": max_new_tokens})  # fmt: skip
        return [f"ANSWER[{c[-1]['content']}]#{len(c)}" for c in conversations]

    def close(self):
        self.closed = True


def files_under(root: Path) -> list[Path]:
    return [p for p in Path(root).rglob("*") if p.is_file()]


def assert_no_canary(*texts: str, root: Path | None = None) -> None:
    for t in texts:
        assert CANARY not in (t or "")
    if root is not None:
        for p in files_under(root):
            assert CANARY.encode() not in p.read_bytes(), p
