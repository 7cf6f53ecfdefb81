"""CPT data (a text column) and ORPO data (DPO's pairs) through the mixer: what the build holds, bad rows named."""

from __future__ import annotations

import json

import pytest

from alignkit.config.data import DataConfig
from alignkit.data.decontaminate import row_texts
from alignkit.data.mixer import load_mixture
from alignkit.errors import DataError


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_cpt_keeps_only_the_text_column_renamed_to_text(tmp_path):
    f = write(tmp_path / "t.jsonl", [{"body": f"doc {i}", "id": i, "text": 5} for i in range(4)])
    ds = load_mixture(DataConfig(mixture=[{"path": f}], text_column="body"), "cpt")
    assert ds["train"].column_names == ["text"]
    assert sorted(ds["train"]["text"]) == [f"doc {i}" for i in range(4)]


def test_cpt_default_column_is_text(tmp_path):
    f = write(tmp_path / "t.jsonl", [{"text": "a b c", "meta": 1}])
    assert load_mixture(DataConfig(mixture=[{"path": f}]), "cpt")["train"]["text"] == ["a b c"]


def test_cpt_empty_and_null_rows_are_named_or_skipped(tmp_path):
    f = write(tmp_path / "t.jsonl", [{"text": "fine"}, {"text": "  "}, {"text": None}, {"text": "ok"}])
    with pytest.raises(DataError) as exc:
        load_mixture(DataConfig(mixture=[{"path": f}]), "cpt")
    text = str(exc.value.problems)
    assert "row 1" in text and "text is empty" in text and "row 2" in text and "missing (null)" in text
    ds = load_mixture(DataConfig(mixture=[{"path": f}], skip_invalid=True), "cpt")
    assert sorted(ds["train"]["text"]) == ["fine", "ok"]


def test_cpt_column_of_conversations_is_refused(tmp_path):
    f = write(tmp_path / "t.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(DataError) as exc:
        load_mixture(DataConfig(mixture=[{"path": f}], text_column="messages"), "cpt")
    assert "not text" in exc.value.problems[0].message


def test_orpo_reads_dpos_pairs(tmp_path):
    f = write(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "yes", "rejected": "no", "extra": 1}])
    ds = load_mixture(DataConfig(mixture=[{"path": f}]), "orpo")
    assert ds["train"].column_names[:3] == ["prompt", "chosen", "rejected"]
    assert ds["train"][0]["chosen"] == [{"role": "assistant", "content": "yes"}]


def test_decontamination_reads_plain_text():
    assert row_texts("cpt", {"text": "the whole document"}) == ["the whole document"]
