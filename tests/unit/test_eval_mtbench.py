"""MT-Bench: FastChat's parsing and arithmetic on judge outputs the tests write, and the full loop
(answers → judge over HTTP → results.json) with resume."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from alignkit.errors import DataError, RuntimeFailure  # noqa: E402
from alignkit.eval import mtbench  # noqa: E402
from alignkit.client import ChatClient, JsonlLog  # noqa: E402
from tests.eval_support import (  # noqa: E402
    CANARY,
    JUDGE_PROMPTS,
    QUESTIONS,
    EchoGenerator,
    FakeJudge,
    assert_no_canary,
    user_text,
    write_jsonl,
    write_mtbench_files,
)


@pytest.mark.parametrize(
    "text,score",
    [
        ("Rating: [[8]]", 8),
        ("The answer is fine. Rating: [[7.5]]", 7.5),
        ("[[10]]", 10),
        ("Rating: [9]", 9),  # the single-bracket fallback
        ("first [[8]] then [[3]]", 8),  # the first match wins
        ("a list [3] and then the rating [[9]]", 9),  # [[x]] is searched first over the whole text
        ("Rating: [[8.]]", 8.0),
        ("Rating: [[0]]", 0),  # parsed, kept (only -1 means unparsable)
        ("Rating: [[8/10]]", -1),
        ("Rating: [[ 8 ]]", -1),
        ("Rating: 8 out of 10", -1),
        ("Rating: [[-1]]", -1),
        ("", -1),
    ],
)
def test_parse_score_follows_fastchat(text, score):
    got = mtbench.parse_score(text)
    assert got == score and type(got) is type(score)


def test_temperatures_per_category():
    assert [mtbench.question_temperature(c) for c in ("writing", "roleplay")] == [0.7, 0.7]
    assert [mtbench.question_temperature(c) for c in ("extraction", "math", "coding", "reasoning")] == [0.0] * 4
    assert [mtbench.question_temperature(c) for c in ("stem", "humanities")] == [0.1, 0.1]
    assert mtbench.question_temperature("unknown-category") == 0.7


def j(qid, turn, score):
    return {"question_id": qid, "model": "m", "judge": ["g", "p"], "turn": turn, "score": score, "judgment": ""}


def test_scores_pool_all_turns_and_drop_unparsable():
    qs = [
        {"question_id": 1, "category": "writing", "turns": ["a", "b"]},
        {"question_id": 2, "category": "writing", "turns": ["a", "b"]},
        {"question_id": 3, "category": "math", "turns": ["a", "b"]},
        {"question_id": 4, "category": "math", "turns": ["a", "b"]},
    ]
    rows = [
        j(1, 1, 8), j(1, 2, 5),
        j(2, 1, 6), j(2, 2, -1),
        j(3, 1, 9), j(3, 2, 7),
        j(4, 1, -1), j(4, 2, float("nan")),
        {**j(4, 2, None)}, {**j(4, 2, True)},
    ]  # fmt: skip
    r = mtbench.score_judgments(rows, qs)
    # turn 1: 8, 6, 9 -> 23/3; turn 2: 5, 7 -> 6; overall pooled: (8+6+9+5+7)/5 = 7.0
    assert r["turn_1"] == pytest.approx(23 / 3)
    assert r["turn_2"] == pytest.approx(6.0)
    assert r["overall"] == pytest.approx(7.0)
    assert r["overall"] != pytest.approx((23 / 3 + 6.0) / 2)  # not the mean of the turn means
    assert r["dropped"] == 5 and r["counts"] == {"judgments": 10, "scored": 5, "dropped": 5, "turn_1": 3, "turn_2": 2}
    w, m = r["categories"]["writing"], r["categories"]["math"]
    assert (w["turn_1"], w["turn_2"], w["overall"], w["n"]) == (7.0, 5.0, pytest.approx(19 / 3), 3)
    assert (m["turn_1"], m["turn_2"], m["overall"], m["n"]) == (9.0, 7.0, 8.0, 2)


def test_all_dropped_gives_none_not_nan():
    r = mtbench.score_judgments([j(1, 1, -1)], [{"question_id": 1, "category": "x", "turns": ["a"]}])
    assert r["overall"] is None and r["turn_1"] is None and r["dropped"] == 1


def answers_for(questions):
    return {
        q["question_id"]: {"question_id": q["question_id"], "model_id": "m",
                           "choices": [{"index": 0, "turns": [f"A{q['question_id']}.{t + 1}" for t in range(len(q["turns"]))]}]}
        for q in questions
    }  # fmt: skip


def test_matches_pick_fastchat_prompts_and_fill_them(tmp_path):
    files = write_mtbench_files(tmp_path)
    prompts = mtbench.load_judge_prompts(files["judge_prompts"])
    refs = mtbench.load_references(files["references"])
    matches = mtbench.make_matches(QUESTIONS, answers_for(QUESTIONS), refs, prompts)
    by = {(m.question_id, m.turn): m for m in matches}
    assert len(matches) == 9  # 5 questions' turn 1 + 4 two-turn questions' turn 2
    assert (5, 2) not in by
    assert by[(1, 1)].prompt_name == "single-v1" and by[(1, 2)].prompt_name == "single-v1-multi-turn"
    assert by[(2, 1)].prompt_name == "single-math-v1" and by[(2, 2)].prompt_name == "single-math-v1-multi-turn"
    assert by[(3, 1)].prompt_name == "single-v1"  # stem is not reference-guided
    assert by[(4, 2)].prompt_name == "single-math-v1-multi-turn"  # coding is
    assert by[(1, 1)].user_prompt == "GENERAL\n[Q]Write a line about rain.\n[A]A1.1\nRate as [[rating]]."
    assert by[(2, 1)].user_prompt == "MATH\n[Q]What is 2+3?\n[REF]5\n[A]A2.1\nRate as [[rating]]."
    assert by[(2, 2)].user_prompt == (
        "MATH-MT\n[Q1]What is 2+3?\n[REF1]5\n[Q2]And times 4?\n[REF2]20\n[A1]A2.1\n[A2]A2.2\nRate as [[rating]]."
    )
    assert by[(2, 2)].messages()[0] == {"role": "system", "content": "SYS-MATH-MT"}


def test_missing_reference_is_a_data_error(tmp_path):
    files = write_mtbench_files(tmp_path)
    prompts = mtbench.load_judge_prompts(files["judge_prompts"])
    with pytest.raises(DataError) as e:
        mtbench.make_matches(QUESTIONS, answers_for(QUESTIONS), {}, prompts)
    assert "question 2 (math)" in str(e.value) and "question 4 (coding)" in str(e.value)
    # an inline reference in the question file is used when the references file lacks it
    qs = [{**QUESTIONS[1], "reference": ["5", "20"]}]
    assert len(mtbench.make_matches(qs, answers_for(qs), {}, prompts)) == 2


def test_file_schemas_are_checked(tmp_path):
    bad_q = write_jsonl(tmp_path / "q.jsonl", [{"question_id": 1, "turns": ["x"]}])
    with pytest.raises(DataError) as e:
        mtbench.load_questions(str(bad_q))
    assert "row 1" in str(e.value) and "category" in str(e.value)
    dup = write_jsonl(tmp_path / "d.jsonl", [QUESTIONS[0], QUESTIONS[0]])
    with pytest.raises(DataError):
        mtbench.load_questions(str(dup))
    prompts = write_jsonl(tmp_path / "p.jsonl", [p for p in JUDGE_PROMPTS if p["name"] != "single-math-v1"])
    with pytest.raises(DataError) as e:
        mtbench.load_judge_prompts(str(prompts))
    assert "single-math-v1" in str(e.value)
    refs = write_jsonl(tmp_path / "r.jsonl", [{"question_id": 2, "choices": []}])
    with pytest.raises(DataError):
        mtbench.load_references(str(refs))
    with pytest.raises(DataError) as e:
        mtbench.load_questions(str(tmp_path / "nope.jsonl"))
    assert "--questions" in str(e.value)


def test_answers_are_two_turn_conversations_at_category_temperatures(tmp_path):
    gen = EchoGenerator()
    log = JsonlLog(tmp_path / "answers.jsonl", mtbench.answer_key)
    answers = mtbench.generate_answers(QUESTIONS, gen, log, model_id="m", batch_size=8)
    temps = sorted({c["temperature"] for c in gen.calls})
    assert temps == [0.0, 0.1, 0.7]
    assert all(c["max_new_tokens"] == 1024 for c in gen.calls)
    # turn 2 of question 1 (writing, 0.7): the prompt holds turn 1 and the model's own turn-1 answer
    turn2 = [c for c in gen.calls if c["temperature"] == 0.7][1]["conversations"][0]
    assert turn2 == [
        {"role": "user", "content": "Write a line about rain."},
        {"role": "assistant", "content": "ANSWER[Write a line about rain.]#1"},
        {"role": "user", "content": "Now make it rhyme."},
    ]
    assert answers[1]["choices"][0]["turns"] == ["ANSWER[Write a line about rain.]#1", "ANSWER[Now make it rhyme.]#3"]
    assert len(answers[5]["choices"][0]["turns"]) == 1
    # resume: nothing is generated again
    gen2 = EchoGenerator()
    mtbench.generate_answers(QUESTIONS, gen2, JsonlLog(tmp_path / "answers.jsonl", mtbench.answer_key), model_id="m")
    assert gen2.calls == []


def scripted_judge(body):
    """Ratings in several formats, keyed on the question text; one unparsable."""
    text = user_text(body)
    if "MT\n" in text.split("[Q")[0]:  # multi-turn prompts
        if "rain" in text:
            return "Turn two is weaker. Rating: [6]"
        if "2+3" in text:
            return "Correct. [[9]]"
        if "gas" in text:
            return "I cannot rate this."
        return "Rating: [[4.5]]"
    if "rain" in text:
        return "Rating: [[8]]"
    if "2+3" in text:
        return "Matches the reference. Rating: [[10]]"
    if "gas" in text:
        return "Rating: [[7]]"
    if "Python" in text:
        return "Rating: [[3]]"
    return "Rating: [[5]]"


def run(tmp_path, judge, files, gen=None, **kw):
    gen = gen or EchoGenerator()
    return mtbench.run_mt_bench(
        model="m-dir", model_id="m", output=tmp_path / "out", generator_factory=lambda: gen, judge=judge,
        questions_spec=files["questions"], references_spec=files["references"],
        judge_prompts_spec=files["judge_prompts"], **kw,
    )  # fmt: skip


def test_full_run_scores_and_writes_results(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("JUDGE_KEY", CANARY)
    files = write_mtbench_files(tmp_path)
    with FakeJudge(scripted_judge) as fj:
        judge = ChatClient(fj.base_url, "judge-model", api_key_env="JUDGE_KEY", require_key=True, max_retries=1, sleep=lambda s: None)
        res = run(tmp_path, judge, files)
    assert fj.calls == 9
    assert all(b["temperature"] == 0 and b["max_tokens"] == 2048 and b["model"] == "judge-model" for b in fj.requests)
    # turn 1: 8, 10, 7, 3, 5; turn 2: 6, 9, (dropped), 4.5
    assert res["turn_1"] == pytest.approx(33 / 5)
    assert res["turn_2"] == pytest.approx(19.5 / 3)
    assert res["overall"] == pytest.approx(52.5 / 8)
    assert res["dropped"] == 1 and res["counts"]["judgments"] == 9
    assert res["categories"]["math"] == {"turn_1": 10.0, "turn_2": 9.0, "overall": 9.5, "n": 2}
    assert res["categories"]["stem"]["turn_2"] is None and res["categories"]["stem"]["n"] == 1
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["overall"] == pytest.approx(52.5 / 8) and saved["judge_model"] == "judge-model"
    lines = [json.loads(x) for x in (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()]
    assert len(lines) == 9 and {tuple(x["judge"]) for x in lines} >= {("judge-model", "single-math-v1")}
    out, err = capfd.readouterr()
    assert_no_canary(out, err, root=tmp_path)


def test_interrupted_judging_resumes_without_paying_twice(tmp_path):
    files = write_mtbench_files(tmp_path)
    with FakeJudge(scripted_judge) as fj:
        fj.fail_after = 4  # the judge dies after 4 answers
        judge = ChatClient(fj.base_url, "g", max_retries=0, concurrency=2, sleep=lambda s: None)
        with pytest.raises(RuntimeFailure):
            run(tmp_path, judge, files)
        saved = (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()
        assert len(saved) == 4
        assert not (tmp_path / "out" / "results.json").exists()
    with FakeJudge(scripted_judge) as fj2:
        gen = EchoGenerator()
        judge = ChatClient(fj2.base_url, "g", max_retries=0, sleep=lambda s: None)
        res = run(tmp_path, judge, files, gen=gen)
        assert fj2.calls == 9 - 4  # only the missing judgments are requested
        assert gen.calls == []  # answers were kept too
        assert res["counts"]["judgments"] == 9
        res2 = run(tmp_path, judge, files, gen=gen)
        assert fj2.calls == 5 and res2["overall"] == res["overall"]


def test_no_parsable_rating_at_all_is_a_runtime_failure(tmp_path):
    files = write_mtbench_files(tmp_path)
    with FakeJudge(lambda body: "Solid answer. 7/10") as fj:
        judge = ChatClient(fj.base_url, "g", max_retries=0, sleep=lambda s: None)
        with pytest.raises(RuntimeFailure) as e:
            run(tmp_path, judge, files)
    msg = str(e.value)
    assert "none of the 9 judgments has a parsable rating" in msg and "'g'" in msg and fj.base_url in msg
    assert str(tmp_path / "out" / "judgments.jsonl") in msg and "[[N]]" in msg
    assert not (tmp_path / "out" / "results.json").exists()


def test_answers_only_needs_no_judge_files(tmp_path):
    gen = EchoGenerator()
    res = mtbench.run_mt_bench(
        model="m-dir", model_id="m", output=tmp_path / "o", generator_factory=lambda: gen, judge=None,
        questions_spec=write_mtbench_files(tmp_path)["questions"], references_spec="/nonexistent",
        judge_prompts_spec="/nonexistent", limit=2,
    )  # fmt: skip
    assert res["judged"] is False and res["n_questions"] == 2 and gen.closed
    assert len((tmp_path / "o" / "answers.jsonl").read_text().splitlines()) == 2


def test_results_markdown_table():
    r = mtbench.score_judgments([j(1, 1, 8), j(1, 2, 6)], [{"question_id": 1, "category": "writing", "turns": ["a", "b"]}])
    r.update(model="m", judge_model="g")
    md = mtbench.results_markdown(r)
    assert "| writing | 8.00 | 6.00 | 7.00 | 2 |" in md and "**7.00**" in md
    assert not math.isnan(r["overall"])
