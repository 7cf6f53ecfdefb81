"""The embedded demo: paths, tokenizer, template, model, data, and the cached atomic build."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from alignkit.demo import assets as A
from alignkit.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# paths


def test_demo_root_follows_alignkit_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "c"))
    assert A.demo_root() == tmp_path / "c" / "demo" / "v1"
    monkeypatch.delenv("ALIGNKIT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert A.demo_root() == tmp_path / "home" / ".cache" / "alignkit" / "demo" / "v1"
    assert A.demo_root({"ALIGNKIT_CACHE": str(tmp_path / "e")}) == tmp_path / "e" / "demo" / "v1"
    monkeypatch.setenv("ALIGNKIT_CACHE", "  ")  # blank means unset
    assert A.demo_root() == tmp_path / "home" / ".cache" / "alignkit" / "demo" / "v1"


def test_demo_path_names_and_no_build(monkeypatch, tmp_path):
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path))
    root = tmp_path / "demo" / "v1"
    assert A.demo_path("model") == str(root / "model")
    assert A.demo_path("demo:data/sft_train.jsonl") == str(root / "data" / "sft_train.jsonl")
    assert A.demo_path("data/prefs_test.jsonl") == str(root / "data" / "prefs_test.jsonl")
    assert A.demo_path("model/config.json") == str(root / "model" / "config.json")
    assert not root.exists()  # pure: nothing was built


@pytest.mark.parametrize("bad", ["modle", "../etc/passwd", "/etc/passwd", "data/../../x", "", "data/sft.jsonl"])
def test_demo_path_rejects_unknown(bad):
    with pytest.raises(ConfigError) as e:
        A.demo_path(bad)
    assert "demo:model" in str(e.value)


def test_demo_path_suggests():
    with pytest.raises(ConfigError) as e:
        A.demo_path("modle")
    assert "did you mean 'model'" in str(e.value)


# ---------------------------------------------------------------------------------------------
# tokenizer, template, model


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize(
    "text",
    ["Name something.", "  two  spaces\tand tab\n", "Ünïcødé — 漢字 🙂", "<|user|>\nHi</s>\n", "x" * 300],
)
def test_tokenizer_round_trips(tok, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text


def test_special_tokens_distinct(tok):
    ids = {tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}
    assert None not in ids and len(ids) == 3
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<pad>")
    assert tok("hello", add_special_tokens=False)["input_ids"] == tok("hello")["input_ids"]  # no implicit BOS
    assert tok.decode(tok("a</s>", add_special_tokens=False)["input_ids"], skip_special_tokens=True) == "a"
    assert 300 < len(tok) <= A.VOCAB_SIZE


def test_chat_template_is_zephyr(tok, tiny_model_dir):
    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert tok.apply_chat_template(conv, tokenize=False) == "<|user|>\nHi</s>\n<|assistant|>\nHello</s>\n"
    assert (
        tok.apply_chat_template(conv[:1], tokenize=False, add_generation_prompt=True)
        == "<|user|>\nHi</s>\n<|assistant|>\n"
    )
    sysconv = [{"role": "system", "content": "Be brief."}] + conv
    assert tok.apply_chat_template(sysconv, tokenize=False).startswith("<|system|>\nBe brief.</s>\n<|user|>\n")
    saved = (Path(tiny_model_dir) / "chat_template.jinja").read_text()
    assert saved == (Path(A.__file__).parent.parent / "data" / "templates" / "zephyr.jinja").read_text()


def test_model_loads_and_generates_with_left_padding(tok, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = model.config
    assert (cfg.model_type, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == ("llama", 64, 2, 4)
    assert cfg.vocab_size == len(tok)
    assert (cfg.pad_token_id, cfg.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)
    gc = model.generation_config
    assert (gc.pad_token_id, gc.eos_token_id, gc.bos_token_id) == (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id)
    assert model.dtype == torch.float32

    prompts = [
        tok.apply_chat_template([{"role": "user", "content": c}], tokenize=False, add_generation_prompt=True)
        for c in ("Hi", "Please name one thing that you like, any word will do.")
    ]
    tok.padding_side = "left"
    try:
        batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tok.padding_side = "right"
    assert batch["attention_mask"][0, 0] == 0 and batch["input_ids"][0, 0] == tok.pad_token_id
    width = batch["input_ids"].shape[1]
    out = model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 2 and out.shape[1] > width
    # left padding must not change what each prompt generates
    for i, p in enumerate(prompts):
        single = tok(p, return_tensors="pt", add_special_tokens=False)
        alone = model.generate(**single, max_new_tokens=5, do_sample=False)[0, single["input_ids"].shape[1] :]
        batched = out[i, width:][: len(alone)]
        assert batched.tolist() == alone.tolist()


def test_random_init_is_seeded(tiny_assets, tmp_path):
    """A rebuild elsewhere gives byte-identical weights and tokenizer."""
    other = A.ensure_demo_assets(tmp_path / "v1")
    for rel in ("model/model.safetensors", "model/tokenizer.json", "data/prefs_train.jsonl"):
        assert _sha(other.root / rel) == _sha(tiny_assets.root / rel), rel


# ---------------------------------------------------------------------------------------------
# data


def test_data_rows(tiny_assets, load_jsonl):
    sft_train, sft_test = load_jsonl(tiny_assets.sft_train), load_jsonl(tiny_assets.sft_test)
    p_train, p_test = load_jsonl(tiny_assets.prefs_train), load_jsonl(tiny_assets.prefs_test)
    assert (len(sft_train), len(sft_test), len(p_train), len(p_test)) == (320, 64, 320, 64)
    colors, animals = set(A.COLORS), set(A.ANIMALS)

    for rows in (sft_train, sft_test):
        answers = []
        for r in rows:
            msgs = r["messages"]
            assert [m["role"] for m in msgs] == ["user", "assistant"]
            assert msgs[0]["content"] == r["prompt"]
            answers.append(msgs[-1]["content"])
        n_color = sum(a in colors for a in answers)
        n_animal = sum(a in animals for a in answers)
        assert n_color + n_animal == len(rows) and n_color == n_animal  # SFT must not teach the preference

    for rows in (p_train, p_test):
        for r in rows:
            assert set(r) == {"prompt", "prompt_id", "chosen", "rejected", "score_chosen", "score_rejected"}
            assert isinstance(r["prompt"], str)
            assert r["chosen"][:-1] == r["rejected"][:-1] == [{"role": "user", "content": r["prompt"]}]
            assert r["chosen"][-1]["role"] == r["rejected"][-1]["role"] == "assistant"
            assert r["chosen"][-1]["content"] in colors and r["rejected"][-1]["content"] in animals
            assert r["score_chosen"] > r["score_rejected"]

    # held-out rows use phrasings never seen in training
    train_prompts = {r["prompt"] for r in sft_train + p_train}
    test_prompts = {r["prompt"] for r in sft_test + p_test}
    assert train_prompts and test_prompts and not (train_prompts & test_prompts)
    assert len(train_prompts) > 50


def test_rows_deterministic():
    assert A.demo_rows(7) == A.demo_rows(7)
    assert A.demo_rows(7) != A.demo_rows(8)


# ---------------------------------------------------------------------------------------------
# cache and atomic build


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".build-" in p.name or ".old-" in p.name)


def test_build_is_cached(tmp_path, monkeypatch):
    root = tmp_path / "v1"
    first = A.ensure_demo_assets(root)
    assert first.built and first.model_dir == root / "model" and first.sft_train.is_file()
    stamp = json.loads((root / A.STAMP_FILE).read_text())
    assert stamp["build_format"] == A.BUILD_FORMAT and stamp["seed"] == A.SEED

    def boom(*a, **k):
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(A, "_build", boom)
    second = A.ensure_demo_assets(root)
    assert not second.built and second == A.DemoAssets.at(root)


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    root = tmp_path / "v1"

    def broken(tokenizer, out_dir, seed):
        raise OSError("disk full")

    monkeypatch.setattr(A, "_build_model", broken)
    from alignkit.errors import RuntimeFailure

    with pytest.raises(RuntimeFailure, match="disk full"):
        A.ensure_demo_assets(root)
    assert not root.exists() and _leftovers(tmp_path) == []
    monkeypatch.undo()
    assert A.ensure_demo_assets(root).built


def test_incomplete_cache_is_rebuilt_and_force_rebuilds(tmp_path):
    root = tmp_path / "v1"
    A.ensure_demo_assets(root)
    before = _sha(root / "model" / "model.safetensors")
    (root / "data" / "prefs_test.jsonl").unlink()  # damaged cache
    assert A.ensure_demo_assets(root).built
    assert (root / "data" / "prefs_test.jsonl").is_file()
    (root / "marker").write_text("x")
    again = A.ensure_demo_assets(root, force=True)
    assert again.built and not (root / "marker").exists()
    assert _sha(root / "model" / "model.safetensors") == before
    assert _leftovers(tmp_path) == []


def test_stale_stamp_is_rebuilt(tmp_path):
    root = tmp_path / "v1"
    A.ensure_demo_assets(root)
    stamp = json.loads((root / A.STAMP_FILE).read_text())
    stamp["build_format"] = -1
    (root / A.STAMP_FILE).write_text(json.dumps(stamp))
    assert A.ensure_demo_assets(root).built


def test_concurrent_callers_build_once(tmp_path):
    root = tmp_path / "v1"
    results, errors = [], []

    def worker():
        try:
            results.append(A.ensure_demo_assets(root))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(r.built for r in results) == [False, True]
    assert _leftovers(tmp_path) == []
