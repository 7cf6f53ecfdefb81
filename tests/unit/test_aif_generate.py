"""``aif generate`` and ``aif distill``: the tiny local model as completer in process, a fake
OpenAI-compatible endpoint on 127.0.0.1, model specs, prompts, resume, settings conflicts."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from alignkit.aif import generate as ag
from alignkit.aif.distill import distill
from alignkit.aif.manifest import WorkDir, prompt_id
from alignkit.aif.models import Sampling, check_unique, load_models_file, parse_model_arg
from alignkit.aif.progress import Reporter
from alignkit.aif.prompts import load_prompts
from alignkit.errors import ConfigError, DataError, RuntimeFailure, UsageError
from tests.aif_support import PROMPTS, write_prompts
from tests.eval_support import CANARY, FakeJudge, assert_no_canary, user_text

S = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=6, n=1)


def lines(path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


class Counting(Reporter):
    def __init__(self):
        self.started, self.advanced, self.notes = [], 0, []

    def start(self, label, total, done=0, unit="completions"):
        self.started.append((label, total, done))

    def advance(self, n=1, tokens=0):
        self.advanced += n

    def note(self, text):
        self.notes.append(text)


# --------------------------------------------------------------------------- specs and prompts


def test_model_arguments(tmp_path, tiny_model_dir):
    local = parse_model_arg(tiny_model_dir, S)
    assert (local.kind, local.id, local.backend) == ("local", Path(tiny_model_dir).name, "transformers")
    named = parse_model_arg(f"hot={tiny_model_dir}", S)
    assert named.id == "hot" and named.path == tiny_model_dir
    ep = parse_model_arg("http://user:pw@127.0.0.1:8000/v1#my-model", S, api_key_env="K")
    assert (ep.kind, ep.id, ep.served_model, ep.api_key_env) == ("endpoint", "my-model", "my-model", "K")
    assert "pw" not in ep.where and "pw" not in json.dumps(ep.record())
    served_dir = parse_model_arg("big=http://127.0.0.1:8000/v1#/models/zephyr", S)
    assert (served_dir.id, served_dir.served_model) == ("big", "/models/zephyr")
    assert parse_model_arg("http://127.0.0.1:8000/v1#/models/zephyr", S).id == "zephyr"
    with pytest.raises(UsageError, match="after '#'"):
        parse_model_arg("http://127.0.0.1:8000/v1", S)
    with pytest.raises(UsageError, match="not a local model directory"):
        parse_model_arg(str(tmp_path / "nope"), S)
    with pytest.raises(UsageError, match="applies its own chat template"):
        parse_model_arg("http://h:1/v1#m", S, chat_template="zephyr")
    with pytest.raises(UsageError, match="also the id"):
        check_unique([parse_model_arg(tiny_model_dir, S), parse_model_arg(tiny_model_dir, S)])
    check_unique([parse_model_arg(f"a={tiny_model_dir}", S), parse_model_arg(f"b={tiny_model_dir}", S)])
    with pytest.raises(UsageError, match="no model given"):
        check_unique([])


def test_models_file(tmp_path, tiny_model_dir):
    f = tmp_path / "models.yaml"
    f.write_text(
        f"models:\n  - {{id: hot, path: {tiny_model_dir}, temperature: 1.2, n: 3}}\n"
        "  - {base_url: 'http://127.0.0.1:9/v1', model: served, api_key_env: K, request_params: {top_k: 5}, max_new_tokens: 9}\n"
    )
    hot, served = load_models_file(f, S)
    assert hot.sampling == Sampling(1.2, 1.0, 6, 3) and hot.kind == "local"
    assert served.sampling == Sampling(0.0, 1.0, 9, 1) and served.request_params == {"top_k": 5} and served.id == "served"
    f.write_text(
        "models:\n  - {path: /x, base_url: 'http://h/v1'}\n  - {path: " + tiny_model_dir + ", colour: red}\n"
        "  - {base_url: 'http://h/v1', model: m, request_params: {temperature: 2}}\n"
        "  - {base_url: 'http://h/v1'}\n  - {path: " + tiny_model_dir + ", top_p: 0}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_models_file(f, S)
    text = str(e.value)
    assert "models[0]: give exactly one of 'path'" in text and "models[1].colour" in text
    assert "models[2].request_params.temperature: is set by alignkit" in text
    assert "models[3].model" in text and "models[4].top_p" in text


def test_prompts_from_a_file_and_a_dataset_dir(tmp_path):
    f = write_prompts(tmp_path / "p.jsonl", ["b", "a", "b", "c"])
    ps, info = load_prompts(str(f))
    assert [p.text for p in ps] == ["b", "a", "c"] and ps[0].id == prompt_id("b")
    assert (info["rows"], info["duplicates"], info["prompts"]) == (4, 1, 3)
    assert [p.text for p in load_prompts(str(f), limit=2)[0]] == ["b", "a"]
    import datasets

    dd = datasets.DatasetDict({"train_gen": datasets.Dataset.from_dict({"instruction": ["x", "y"]})})
    dd.save_to_disk(str(tmp_path / "ds"))
    ps, info = load_prompts(str(tmp_path / "ds"), split="train_gen", column="instruction")
    assert [p.text for p in ps] == ["x", "y"] and info["split"] == "train_gen"
    with pytest.raises(DataError, match="no column 'prompt'"):
        load_prompts(str(tmp_path / "ds"), split="train_gen")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": "  "}\n')
    with pytest.raises(DataError, match="row 1: prompt is empty"):
        load_prompts(str(bad))
    with pytest.raises(DataError, match="no such file"):
        load_prompts(str(tmp_path / "missing.jsonl"))


# --------------------------------------------------------------------------- local model


def test_local_generation_uses_the_chat_template_appends_and_resumes(tmp_path, tiny_model_dir):
    from alignkit.eval.generate import TransformersGenerator

    ps, info = load_prompts(str(write_prompts(tmp_path / "p.jsonl", PROMPTS[:3])))
    work = WorkDir(tmp_path / "work")
    greedy = parse_model_arg(f"greedy={tiny_model_dir}", S)
    rep = Counting()
    summary = ag.generate_completions(ps, info, [greedy], work, reporter=rep)
    recs = lines(work.completions)
    assert [(r["prompt"], r["model"], r["sample"]) for r in recs] == [(p, "greedy", 0) for p in PROMPTS[:3]]
    assert summary["greedy"]["new"] == 3 and rep.started == [("greedy", 3, 0)] and rep.advanced == 3
    # greedy answers equal eval's generator (the model's own chat template, left-padded batches)
    ref = TransformersGenerator(tiny_model_dir).generate([p.conversation() for p in ps], temperature=0.0, max_new_tokens=6)
    assert [r["completion"] for r in recs] == ref
    assert all(r["finish_reason"] in ("stop", "length") and 1 <= r["completion_tokens"] <= 6 for r in recs)
    # sampling: more samples per prompt are added, the old lines are left alone, nothing is redone
    hot = parse_model_arg(f"hot={tiny_model_dir}", Sampling(1.0, 0.9, 6, 2))
    ag.generate_completions(ps, info, [greedy, hot], work)
    recs2 = lines(work.completions)
    assert recs2[:3] == recs and len(recs2) == 3 + 6
    hot3 = parse_model_arg(f"hot={tiny_model_dir}", Sampling(1.0, 0.9, 6, 3))
    rep = Counting()
    s = ag.generate_completions(ps, info, [hot3], work, reporter=rep)
    assert s["hot"]["already_done"] == 6 and s["hot"]["new"] == 3 and rep.started == [("hot", 9, 6)]
    assert sorted(r["sample"] for r in lines(work.completions) if r["model"] == "hot") == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    man = json.loads(work.manifest_path.read_text())
    assert man["models"]["hot"]["n"] == 3 and man["models"]["hot"]["temperature"] == 1.0
    assert man["completions"] == 12 and man["completions_per_model"] == {"greedy": 3, "hot": 9}
    # an interrupted write (half a line) is repaired and only that completion is redone
    with open(work.completions, "a") as f:
        f.write('{"prompt_id": "x", "mo')
    s = ag.generate_completions(ps, info, [hot3, greedy], work)
    assert s["hot"]["new"] == 0 and s["greedy"]["new"] == 0 and len(lines(work.completions)) == 12
    # the same id with other settings is refused
    with pytest.raises(UsageError, match="other settings.*temperature: 1.0 → 0.5"):
        ag.generate_completions(ps, info, [parse_model_arg(f"hot={tiny_model_dir}", Sampling(0.5, 0.9, 6, 3))], work)


def test_seeded_sampling_is_reproducible(tmp_path, tiny_model_dir):
    ps, info = load_prompts(str(write_prompts(tmp_path / "p.jsonl", PROMPTS[:2])))
    hot = parse_model_arg(f"hot={tiny_model_dir}", Sampling(1.0, 1.0, 8, 3))
    outs = []
    for name in ("w1", "w2"):
        ag.generate_completions(ps, info, [hot], WorkDir(tmp_path / name), local=ag.LocalOptions(batch_size=4, seed=7))
        outs.append([(r["prompt_id"], r["sample"], r["completion"]) for r in lines(tmp_path / name / "completions.jsonl")])
    assert outs[0] == outs[1]
    assert len({c for _, _, c in outs[0]}) > 1  # sampled, not all the same


# --------------------------------------------------------------------------- endpoints


def test_endpoint_completions_request_settings_resume_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("MODEL_KEY", CANARY)
    ps, info = load_prompts(str(write_prompts(tmp_path / "p.jsonl", PROMPTS[:4])))
    work = WorkDir(tmp_path / "work")

    def answer(body):
        return {"content": f"  reply to {user_text(body)}  "}

    with FakeJudge(answer) as srv:
        spec = parse_model_arg(f"{srv.base_url}#served-x", Sampling(0.8, 0.95, 33, 2), api_key_env="MODEL_KEY")
        spec.request_params = {"top_k": 4}
        srv.fail_after = 5  # the server dies after 5 answers
        with pytest.raises(RuntimeFailure):
            ag.generate_completions(ps, info, [spec], work, endpoint=ag.EndpointOptions(concurrency=1, max_retries=0))
        assert len(lines(work.completions)) == 5
        body = srv.requests[0]
        assert body["model"] == "served-x" and body["messages"] == [{"role": "user", "content": PROMPTS[0]}]
        assert (body["temperature"], body["top_p"], body["max_tokens"], body["top_k"]) == (0.8, 0.95, 33, 4)
        assert srv.headers[0]["Authorization"] == f"Bearer {CANARY}"
        srv.fail_after = None  # the server is back: a re-run asks only for what is missing
        before = srv.calls
        ag.generate_completions(ps, info, [spec], work, endpoint=ag.EndpointOptions(concurrency=3))
        assert srv.calls - before == 8 - 5
        # the same id at another endpoint is another model: refused
        moved = parse_model_arg("http://127.0.0.1:9/v1#served-x", Sampling(0.8, 0.95, 33, 2))
        moved.request_params = {"top_k": 4}
        with pytest.raises(UsageError, match="endpoint"):
            ag.generate_completions(ps, info, [moved], work)
    recs = lines(work.completions)
    assert len(recs) == 8 and {r["completion"] for r in recs} == {f"reply to {p}" for p in PROMPTS[:4]}
    assert all(r["completion_tokens"] == 1 and r["finish_reason"] == "stop" for r in recs)
    assert_no_canary(root=work.path)
    assert json.loads(work.manifest_path.read_text())["models"]["served-x"]["api_key_env"] == "MODEL_KEY"


def test_greedy_endpoint_sends_temperature_zero_without_top_p(tmp_path):
    ps, info = load_prompts(str(write_prompts(tmp_path / "p.jsonl", PROMPTS[:1])))
    with FakeJudge(lambda b: "ok") as srv:
        rep = Counting()
        spec = parse_model_arg(f"{srv.base_url}#m", Sampling(0.0, 0.9, 5, 2))
        ag.generate_completions(ps, info, [spec], WorkDir(tmp_path / "w"), reporter=rep)
        assert all(b["temperature"] == 0.0 and "top_p" not in b for b in srv.requests) and srv.calls == 2
    assert rep.notes and "greedily" in rep.notes[0]


def test_vllm_backend_samples_with_per_key_seeds(tmp_path, tiny_model_dir, monkeypatch):
    """vLLM is not installed here: a stand-in module records what alignkit asks of it."""
    calls = {}

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LLM:
        def __init__(self, **kw):
            calls["init"] = kw

        def chat(self, conversations, params, **kw):
            calls.setdefault("chat", []).append((conversations, [p.kw for p in params], kw))
            out = types.SimpleNamespace
            return [out(outputs=[out(text=f" v{i} ", finish_reason="length", token_ids=[1, 2])]) for i in range(len(conversations))]

    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", fake)
    ps, info = load_prompts(str(write_prompts(tmp_path / "p.jsonl", PROMPTS[:2])))
    spec = parse_model_arg(tiny_model_dir, Sampling(0.9, 0.8, 7, 2), backend="vllm")
    s = ag.generate_completions(ps, info, [spec], WorkDir(tmp_path / "w"), local=ag.LocalOptions(seed=3))
    assert s[spec.id]["new"] == 4 and s[spec.id]["truncated"] == 4 and calls["init"]["model"] == tiny_model_dir
    convs, params, kw = calls["chat"][0]
    assert convs[0] == [{"role": "user", "content": PROMPTS[0]}] and kw["use_tqdm"] is False
    assert {(p["temperature"], p["top_p"], p["max_tokens"]) for p in params} == {(0.9, 0.8, 7)}
    assert len({p["seed"] for p in params}) == 4  # one seed per (prompt, sample)
    recs = lines(tmp_path / "w" / "completions.jsonl")
    assert [r["completion"] for r in recs] == ["v0", "v1", "v2", "v3"] and recs[0]["backend"] == "vllm"


# --------------------------------------------------------------------------- distill


def test_distill_writes_sft_rows_and_drops_empty_answers(tmp_path, tiny_model_dir):
    import datasets

    ps, info = load_prompts(str(write_prompts(tmp_path / "p.jsonl", PROMPTS[:5])))

    def teacher(body):
        q = user_text(body)
        return "" if q == PROMPTS[1] else f"Answer: {q.lower()}"

    with FakeJudge(teacher) as srv:
        spec = parse_model_arg(f"teach={srv.base_url}#big", Sampling(0.7, 1.0, 50, 4), option="--teacher")
        m, summary = distill(ps, info, spec, WorkDir(tmp_path / "work"), tmp_path / "sft", test_size=1, seed=3)
        assert srv.calls == 5 and summary["teach"]["new"] == 5  # n is forced to 1
        distill(ps, info, spec, WorkDir(tmp_path / "work"), tmp_path / "sft", test_size=1, seed=3)
        assert srv.calls == 5  # resumed from the work dir: nothing asked again
    dd = datasets.load_from_disk(str(tmp_path / "sft"))
    assert set(dd) == {"train_sft", "test_sft"} and (len(dd["train_sft"]), len(dd["test_sft"])) == (3, 1)
    rows = dd["train_sft"].to_list() + dd["test_sft"].to_list()
    assert sorted(r["prompt"] for r in rows) == sorted(p for p in PROMPTS[:5] if p != PROMPTS[1])
    r = rows[0]
    assert r["messages"] == [{"content": r["prompt"], "role": "user"}, {"content": f"Answer: {r['prompt'].lower()}", "role": "assistant"}]
    assert m["counts"]["empty_answers_dropped"] == 1 and m["teacher"]["n"] == 1 and m["kind"] == "sft"
    # the local tiny model as teacher; its dataset goes through the mixer as SFT data
    local = parse_model_arg(tiny_model_dir, Sampling(0.0, 1.0, 6, 1))
    m2, _ = distill(ps, info, local, WorkDir(tmp_path / "w2"), tmp_path / "sft2", test_size=0)
    from alignkit.config.data import DataConfig
    from alignkit.data.mixer import load_mixture

    mixed = load_mixture(DataConfig(mixture=[{"path": str(tmp_path / "sft2"), "split": "train_sft"}]), "sft")
    assert len(mixed["train"]) == m2["counts"]["rows"] == 5 - m2["counts"]["empty_answers_dropped"]
