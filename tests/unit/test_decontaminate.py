"""Decontamination: planted overlaps with evaluation prompts are found, near-misses are not."""

from __future__ import annotations

import json

import pytest

from alignkit.config.data import DataConfig
from alignkit.data.decontaminate import NgramIndex, EvalPrompt, find_contamination, load_eval_prompts, normalize_words
from alignkit.data.mixer import mix
from alignkit.errors import DataError

MT_Q = "Compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultural experiences and must-see attractions."
MT_Q2 = "Rewrite your previous response. Start every sentence with the letter A."
ALPACA_Q = "What are the names of some famous actors that started their careers on Broadway?"


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return str(path)


def sft(user: str, reply: str = "Sure.") -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]}


def test_normalization_ignores_case_punctuation_and_unicode_forms():
    assert normalize_words("Must-See ATTRACTIONS!  ＨＩ") == ["must", "see", "attractions", "hi"]


def test_eval_prompt_formats(tmp_path):
    mt = write_jsonl(tmp_path / "question.jsonl", [{"question_id": 81, "category": "writing", "turns": [MT_Q, MT_Q2]}])
    al = write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": ALPACA_Q, "dataset": "helpful_base"}])
    pl = write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "a"}, {"text": "b"}])
    assert [(p.ident, p.text) for p in load_eval_prompts(mt)] == [("81/turn1", MT_Q), ("81/turn2", MT_Q2)]
    assert [p.text for p in load_eval_prompts(al)] == [ALPACA_Q]
    assert [p.text for p in load_eval_prompts(pl)] == ["a", "b"]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "x"}])
    with pytest.raises(DataError, match="no prompt field"):
        load_eval_prompts(bad)


def test_index_matches_13_grams_and_not_12():
    words = normalize_words(MT_Q)  # 20 words
    idx = NgramIndex([EvalPrompt("f", 1, "81", MT_Q)], n=13)
    thirteen = " ".join(words[3:16])
    twelve = " ".join(words[3:15])
    assert idx.find(f"Intro text. {thirteen.upper()}, and more.") == (0, thirteen)
    assert idx.find(f"Intro text. {twelve} plus more.") is None
    # short prompts (8..12 words) match as a whole; shorter ones are not checked
    short = NgramIndex([EvalPrompt("f", 1, "x", "Start every sentence with the letter A please now"),
                        EvalPrompt("f", 2, "y", "Say hi")], n=13)
    assert short.unchecked == 1
    assert short.find("ok: start every sentence with the letter a, please now!") is not None
    assert short.find("start every sentence with the letter b please now") is None


def test_planted_overlaps_are_reported_per_source_with_copies(tmp_path):
    ev = write_jsonl(tmp_path / "question.jsonl", [{"question_id": 81, "turns": [MT_Q, MT_Q2]}])
    al = write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": ALPACA_Q}])
    clean = [sft(f"Tell me about topic number {i} in a few words.") for i in range(40)]
    a_rows = list(clean)
    a_rows[5] = sft("Please " + MT_Q.lower().replace(",", ""))  # planted: prompt copied into a user turn
    a_rows[17] = sft("hi", "Here is my answer: " + ALPACA_Q)  # planted in the reply
    a_rows[30] = sft(" ".join(normalize_words(MT_Q)[:12]))  # 12 words only: a near miss
    b_rows = [sft(f"Other question {i} here.") for i in range(10)]
    b_rows[3] = sft("Rewrite your previous response! start EVERY sentence with the letter a.")  # short prompt, whole
    a = write_jsonl(tmp_path / "a.jsonl", a_rows)
    b = write_jsonl(tmp_path / "b.jsonl", b_rows)
    data = DataConfig(mixture=[{"path": a}, {"path": b, "weight": 2}])
    res = mix(data, "sft")
    cont = find_contamination(res.tables["train"], "sft", res.indices["train"], list(data.mixture), [ev, al])
    found = {(m["source"], m["row"]): m for m in cont.matches}
    assert set(found) == {(f"{a} (train)", 5), (f"{a} (train)", 17), (f"{b} (train)", 3)}
    assert found[(f"{a} (train)", 5)]["eval"] == "question.jsonl:1 (81/turn1)"
    assert found[(f"{a} (train)", 17)]["eval"] == "alpaca.jsonl:1 (1)"
    assert found[(f"{b} (train)", 3)]["copies"] == 2
    assert cont.per_source == {f"{a} (train)": {"rows_flagged": 2, "copies": 2}, f"{b} (train)": {"rows_flagged": 1, "copies": 2}}
    assert len(cont.positions) == 4
    # the same result in parallel
    par = find_contamination(res.tables["train"], "sft", res.indices["train"], list(data.mixture), [ev, al], workers=2, batch=7)
    assert par.matches == cont.matches and par.positions == cont.positions


def test_dpo_rows_are_scanned_in_prompt_and_completions(tmp_path):
    ev = write_jsonl(tmp_path / "e.jsonl", [{"prompt": MT_Q}])
    rows = [{"prompt": f"q{i}", "chosen": "fine", "rejected": "bad"} for i in range(5)]
    rows[2]["rejected"] = "I will " + MT_Q
    p = write_jsonl(tmp_path / "prefs.jsonl", rows)
    data = DataConfig(mixture=[{"path": p}])
    res = mix(data, "dpo")
    cont = find_contamination(res.tables["train"], "dpo", res.indices["train"], list(data.mixture), [ev])
    assert [m["row"] for m in cont.matches] == [2]
