"""The request path against a real OpenAI-compatible server: `transformers serve` on 127.0.0.1
serving the tiny local model (one server start for the whole module)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from alignkit.errors import RuntimeFailure
from alignkit.client import ChatClient
from tests.eval_support import FakeJudge, write_mtbench_files

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def served(tiny_model_dir, tiny_env, tmp_path_factory):
    exe = Path(sys.executable).with_name("transformers")
    if not exe.exists():
        exe = shutil.which("transformers")
    assert exe, "transformers CLI not found: install the serving extra (pip install 'alignkit[serving]')"
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [str(exe), "serve", tiny_model_dir, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
            stdout=fh, stderr=subprocess.STDOUT, env=tiny_env,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited early:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"transformers serve did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"base_url": base + "/v1", "model": tiny_model_dir, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_chat_request_to_served_model(served):
    c = ChatClient(served["base_url"], served["model"], max_retries=0, what="model")
    r = c.chat([{"role": "user", "content": "Name something."}], temperature=0.0, max_tokens=8)
    assert isinstance(r.content, str) and r.content
    assert r.model and r.model.startswith(served["model"])
    assert r.usage and r.usage["completion_tokens"] <= 8


def test_wrong_model_name_is_refused_naming_endpoint(served):
    c = ChatClient(served["base_url"], "some-other-model", max_retries=3, what="model", sleep=lambda s: None)
    with pytest.raises(RuntimeFailure) as e:
        c.chat([{"role": "user", "content": "hi"}], max_tokens=4)
    assert c.calls == 1  # a 4xx is not retried
    assert served["base_url"] + "/chat/completions" in str(e.value) and "HTTP 400" in str(e.value)


def test_mt_bench_answers_from_served_model(served, tmp_path):
    from typer.testing import CliRunner

    from alignkit.commands.eval import app

    files = write_mtbench_files(tmp_path / "data")
    out = tmp_path / "out"
    with FakeJudge(lambda body: "Rating: [[5]]") as fj:
        res = CliRunner().invoke(
            app,
            ["mt-bench", "--model", served["model"], "--model-base-url", served["base_url"], "--model-id", "tiny",
             "--judge-model", "judge-x", "--judge-base-url", fj.base_url, "--questions", files["questions"],
             "--references", files["references"], "--judge-prompts", files["judge_prompts"],
             "--output", str(out), "--max-new-tokens", "8", "--concurrency", "2"],
        )  # fmt: skip
        assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
        prompts = [next(m["content"] for m in b["messages"] if m["role"] == "user") for b in fj.requests]
    answers = {a["question_id"]: a for a in map(json.loads, (out / "answers.jsonl").read_text().splitlines())}
    assert set(answers) == {1, 2, 3, 4, 5}
    a1 = answers[1]["choices"][0]["turns"]
    assert len(a1) == 2 and answers[1]["generate_params"]["backend"] == "endpoint"
    # the judge saw the served model's own answers
    assert any(f"[A1]{a1[0]}\n[Q2]" in p and f"[A2]{a1[1]}" in p for p in prompts)
    results = json.loads((out / "results.json").read_text())
    assert results["overall"] == 5.0 and results["counts"]["judgments"] == 9
