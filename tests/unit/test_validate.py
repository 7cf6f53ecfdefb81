"""Row validation: every problem named with source and row; skip_invalid drops and counts."""

from __future__ import annotations

import json
import random

import pytest

from alignkit.config.data import DataConfig
from alignkit.data.mixer import mix
from alignkit.data.messages import check_sft_messages, normalize_preference
from alignkit.data.validate import validate_sft
from alignkit.errors import DataError

U = {"role": "user", "content": "hi"}
A = {"role": "assistant", "content": "hello"}
S = {"role": "system", "content": "be nice"}


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return str(path)


@pytest.mark.parametrize(
    "messages,problem",
    [
        ([U, A], None),
        ([S, U, A, U, A], None),
        (None, "messages is missing (null)"),
        ([], "messages is empty"),
        ("hi", "messages is a str, not a list of {role, content} messages"),
        ([U, {"role": "bot", "content": "x"}], "messages[1].role is 'bot'; expected system, user or assistant"),
        ([U, {"role": "assistant"}], "messages[1] (assistant) has no content"),
        ([{"content": "x"}, A], "messages[0] has no role"),
        ([U, S, A], "messages[1] is a system turn after the start; only the first turn may be system"),
        ([S, A], "messages has no user turn"),
        ([U, A, U], "messages ends with a user turn; SFT rows must end with an assistant turn"),
        ([U, 3], "messages[1] is not a {role, content} object"),
    ],
)
def test_sft_row_checks(messages, problem):
    assert check_sft_messages(messages) == problem


def _random_messages(rng: random.Random):
    kind = rng.random()
    if kind < 0.05:
        return None
    n = rng.randint(0, 5)
    roles = ["system", "user", "assistant", "bot", None]
    msgs = []
    for _ in range(n):
        role = rng.choices(roles, weights=[1, 4, 4, 0.3, 0.2])[0]
        content = None if rng.random() < 0.05 else "text"
        msgs.append({"role": role, "content": content})
    return msgs


def test_vectorized_sft_check_agrees_with_the_row_check():
    import pyarrow as pa

    from alignkit.data.validate import message_type

    rng = random.Random(0)
    values = [_random_messages(rng) for _ in range(3000)]
    # several chunks, as multi-file sources give
    chunks = [pa.array(values[i : i + 700], type=message_type()) for i in range(0, len(values), 700)]
    table = pa.Table.from_arrays([pa.chunked_array(chunks)], names=["messages"])
    _, res = validate_sft(table, "src")
    expected = [i for i, v in enumerate(values) if check_sft_messages(v)]
    assert res.bad_rows.tolist() == expected
    assert 100 < len(expected) < 2900  # the corpus has both kinds
    assert [p.row for p in res.problems] == expected[:20]
    assert all(p.message == check_sft_messages(values[p.row]) for p in res.problems)


def test_errors_name_source_row_and_problem_then_count_the_rest(tmp_path):
    good = {"messages": [U, A]}
    rows = [good] * 5 + [{"messages": [U, {"role": "bot", "content": "x"}]}] + [good] + [{"messages": [U]}] * 30
    a = write_jsonl(tmp_path / "a.jsonl", rows)
    b = write_jsonl(tmp_path / "b.jsonl", [good, {"messages": []}])
    with pytest.raises(DataError) as e:
        mix(DataConfig(mixture=[{"path": a}, {"path": b}]), "sft")
    probs = e.value.problems
    assert probs[0].where == f"source {a} (train) row 5 (line 6)"
    assert probs[0].message == "messages[1].role is 'bot'; expected system, user or assistant"
    assert "skip_invalid" in probs[0].fix
    assert probs[1].where == f"source {a} (train) row 7 (line 8)"
    assert probs[1].message == "messages ends with a user turn; SFT rows must end with an assistant turn"
    assert len(probs) == 21
    assert probs[-1].message == f"and 12 more invalid rows (32 in all; per source: {a} (train): 31, {b} (train): 1)"
    assert e.value.title == "32 invalid rows"


def test_rows_in_a_glob_are_located_in_their_file(tmp_path):
    write_jsonl(tmp_path / "p-0.jsonl", [{"messages": [U, A]}] * 3)
    write_jsonl(tmp_path / "p-1.jsonl", [{"messages": [U, A]}, {"messages": [A]}])
    with pytest.raises(DataError) as e:
        mix(DataConfig(mixture=[{"path": str(tmp_path / "p-*.jsonl")}]), "sft")
    assert e.value.problems[0].where.endswith("row 4 (file p-1.jsonl row 1, line 2)")


def test_skip_invalid_drops_rows_and_counts_them_per_source(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"messages": [U, A]}] * 8 + [{"messages": [U]}] * 2)
    b = write_jsonl(tmp_path / "b.jsonl", [{"messages": [U, A]}] * 4 + [{"messages": None}])
    res = mix(DataConfig(mixture=[{"path": a}, {"path": b, "weight": 0.5}], skip_invalid=True), "sft")
    rows = res.plan.splits["train"]
    assert [(r.available, r.invalid, r.rows) for r in rows] == [(10, 2, 8), (5, 1, 2)]
    assert res.tables["train"].num_rows == 10
    # provenance points at original row numbers, never at a dropped row
    assert set(res.indices["train"].row[res.indices["train"].src == 0].tolist()) <= set(range(8))


def test_a_source_without_the_task_columns_is_named():
    import pyarrow as pa

    _, res = validate_sft(pa.table({"text": ["x"]}), "raw.jsonl (train)")
    (p,) = res.source_problems
    assert p.where == "source raw.jsonl (train)"
    assert "no 'messages' column (columns: text)" in p.message


def test_dpo_missing_columns_error(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"messages": [U, A]}])
    with pytest.raises(DataError) as e:
        mix(DataConfig(mixture=[{"path": a}]), "dpo")
    assert "has no 'chosen' or 'rejected' column" in e.value.problems[0].message


# ---------------------------------------------------------------------------------------------- DPO forms


def test_preference_full_conversations_with_a_prompt_string():
    # ultrafeedback_binarized: prompt (str) + chosen/rejected as full conversations
    row = {"prompt": "hi", "chosen": [U, A], "rejected": [U, {"role": "assistant", "content": "no"}]}
    (p, c, r), err = normalize_preference(row)
    assert err is None
    assert p == [U] and c == [A] and r == [{"role": "assistant", "content": "no"}]


def test_preference_trl_conversational_form():
    row = {"prompt": [S, U], "chosen": [A], "rejected": [{"role": "assistant", "content": "no"}]}
    (p, c, r), _ = normalize_preference(row)
    assert p == [S, U] and c == [A]


def test_preference_strings_and_multi_turn_shared_prefix():
    (p, c, r), _ = normalize_preference({"prompt": "hi", "chosen": "yes", "rejected": "no"})
    assert p == [U] and c == [{"role": "assistant", "content": "yes"}] and r == [{"role": "assistant", "content": "no"}]
    a1 = {"role": "assistant", "content": "first"}
    u2 = {"role": "user", "content": "more"}
    (p, c, r), _ = normalize_preference({"chosen": [U, a1, u2, A], "rejected": [U, a1, u2, {"role": "assistant", "content": "x"}]})
    assert p == [U, a1, u2] and c == [A]
    # a shared assistant turn after the last user turn belongs to the completions
    (p, c, r), _ = normalize_preference({"chosen": [U, a1, A], "rejected": [U, a1, {"role": "assistant", "content": "x"}]})
    assert p == [U] and c == [a1, A]


@pytest.mark.parametrize(
    "row,problem",
    [
        ({"chosen": [U, A], "rejected": [U, A]}, "chosen and rejected are identical"),
        ({"chosen": "a", "rejected": [U, A], "prompt": "p"}, "chosen is a str and rejected a list; both must be message lists or both strings"),
        ({"chosen": "a", "rejected": "b"}, "chosen and rejected are strings but there is no prompt"),
        ({"chosen": [A], "rejected": [{"role": "assistant", "content": "x"}]}, "chosen and rejected share no prompt (no common turns ending with a user turn) and there is no prompt column"),
        ({"prompt": "  ", "chosen": "a", "rejected": "b"}, "prompt is empty"),
        ({"prompt": [U, A], "chosen": [A], "rejected": [U]}, "the prompt's last turn is assistant; it must end with a user turn"),
        ({"prompt": [U], "chosen": [A], "rejected": [U]}, "rejected must be assistant turns after the prompt (got ['user'])"),
        ({"prompt": [U], "chosen": [{"role": "x", "content": "y"}], "rejected": [A]}, "chosen[0].role is 'x'; expected system, user or assistant"),
        ({"chosen": [U, A]}, "needs 'chosen' and 'rejected'"),
    ],
)
def test_preference_problems(row, problem):
    norm, err = normalize_preference(row)
    assert norm is None
    assert err == problem


def test_dpo_invalid_rows_are_reported_and_skippable(tmp_path):
    good = {"prompt": "q", "chosen": "a", "rejected": "b"}
    bad = {"prompt": "q", "chosen": "a", "rejected": "a"}
    p = write_jsonl(tmp_path / "prefs.jsonl", [good, bad, good])
    with pytest.raises(DataError) as e:
        mix(DataConfig(mixture=[{"path": p}]), "dpo")
    assert e.value.problems[0].where == f"source {p} (train) row 1 (line 2)"
    assert e.value.problems[0].message == "chosen and rejected are identical"
    res = mix(DataConfig(mixture=[{"path": p}], skip_invalid=True), "dpo")
    assert res.tables["train"].num_rows == 2
    assert res.plan.splits["train"][0].invalid == 1
