"""Benchmark files from paths or URLs, cached under HF_HOME."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alignkit.errors import DataError
from alignkit.eval import mtbench, sources
from tests.eval_support import QUESTIONS


@pytest.fixture
def http_files():
    body = "".join(json.dumps(q) + "\n" for q in QUESTIONS).encode()
    hits = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            hits.append(self.path)
            if self.path != "/data/question.jsonl":
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", hits
    srv.shutdown()
    srv.server_close()


def test_url_is_downloaded_once_into_hf_home(http_files, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    base, hits = http_files
    url = base + "/data/question.jsonl"
    qs = mtbench.load_questions(url)
    assert [q["question_id"] for q in qs] == [q["question_id"] for q in QUESTIONS]
    cached = sources.cached_path(url)
    assert cached.is_file() and str(cached).startswith(str(tmp_path / "hf" / "alignkit" / "eval-sources"))
    mtbench.load_questions(url)
    assert hits == ["/data/question.jsonl"]  # the second load read the cache
    mtbench.load_questions(url, refresh=True)
    assert len(hits) == 2
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no partial files left


def test_failed_download_names_option_and_fix(http_files, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    base, _ = http_files
    with pytest.raises(DataError) as e:
        mtbench.load_judge_prompts(base + "/missing.jsonl")
    msg = str(e.value)
    assert "--judge-prompts" in msg and "download failed" in msg and "local path" in msg
    assert not any((tmp_path / "hf").rglob("*.part"))


def test_local_records_json_or_jsonl(tmp_path):
    a = tmp_path / "a.json"
    a.write_text(json.dumps([{"x": 1}, {"x": 2}]))
    b = tmp_path / "b.jsonl"
    b.write_text('{"x": 1}\n\n{"x": 2}\n')
    assert sources.load_records(str(a), option="--o") == sources.load_records(str(b), option="--o") == [{"x": 1}, {"x": 2}]
    c = tmp_path / "c.jsonl"
    c.write_text('{"x": 1}\n[1, 2]\n')
    with pytest.raises(DataError) as e:
        sources.load_records(str(c), option="--o")
    assert f"{c}:2" in str(e.value)
