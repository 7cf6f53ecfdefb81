"""The AIF judge against a fake OpenAI-compatible judge on 127.0.0.1: one call per completion per
aspect, [[N]] ratings parsed (unparsable recorded, never guessed), scores, resume without paying twice,
the key never written, custom judge prompts."""

from __future__ import annotations

import json

import pytest

from alignkit.aif import judge as aj
from alignkit.aif.manifest import WorkDir, load_log, prompt_id
from alignkit.client import make_client
from alignkit.errors import ConfigError, DataError, RuntimeFailure, UsageError
from tests.aif_support import response_of, write_work
from tests.eval_support import CANARY, FakeJudge, assert_no_canary, user_text

TABLE = {
    "Name a color.": {("a", 0): ("red", []), ("a", 1): ("a dog", []), ("b", 0): ("blue sky", [])},
    "Name an animal.": {("a", 0): ("cat", []), ("b", 0): ("the owl", [])},
}
RUBRIC_WORD = {"helpfulness": "Helpfulness and", "honesty": "Honesty and", "instruction_following": "Instruction following:",
               "truthfulness": "Truthfulness:"}  # fmt: skip
# the fake judge's opinion: a rating per (response, aspect)
OPINION = {"red": [5, 5, 4, 4], "a dog": [1, 2, 1, 2], "blue sky": [3, 3, 3, 4], "cat": [5, 4, 5, 5], "the owl": [2, 2, 2, 2]}


def aspect_of(body: dict) -> str:
    text = user_text(body)
    return next(a for a, w in RUBRIC_WORD.items() if w in text)


def opinion(body: dict) -> str:
    r = OPINION[response_of(body)][aj.ASPECTS.index(aspect_of(body))]
    return f"The answer is short. It does what was asked.\nRating: [[{r}]]"


def client(judge: FakeJudge, *, concurrency=4, api_key_env=None, model="judge-x"):
    return make_client(judge.base_url, model, api_key_env=api_key_env, concurrency=concurrency, timeout=10,
                       max_retries=0, what="judge", sleep=lambda s: None)  # fmt: skip


def lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_parse_rating_uses_the_mt_bench_parser_and_never_guesses():
    assert aj.parse_rating("blah\nRating: [[4]]") == (4.0, "ok", 4)
    assert aj.parse_rating("Rating: [[3.5]]") == (3.5, "ok", 3.5)
    assert aj.parse_rating("I give it [2].") == (2.0, "ok", 2)  # FastChat's backup pattern
    assert aj.parse_rating("[[5]] but then [[1]]") == (5.0, "ok", 5)  # the first one
    assert aj.parse_rating("It is good, maybe a four.") == (None, "unparsable", None)
    assert aj.parse_rating("") == (None, "unparsable", None)
    assert aj.parse_rating("Rating: [[7]]") == (None, "out_of_range", 7)
    assert aj.parse_rating("Rating: [[0]]") == (None, "out_of_range", 0)


def test_fill_replaces_the_two_fields_once_and_keeps_other_braces():
    t = "Q: {prompt}\nA: {completion}\nJSON like {\"a\": 1} stays"
    assert aj.fill(t, "use {completion} here", "x {prompt} y") == (
        'Q: use {completion} here\nA: x {prompt} y\nJSON like {"a": 1} stays'
    )


def test_one_call_per_completion_per_aspect_then_scores(tmp_path):
    work = WorkDir(write_work(tmp_path / "w", TABLE, judge=None))
    prompts = aj.load_judge_prompts(None)
    with FakeJudge(opinion) as j:
        result = aj.judge_completions(work, client(j), list(aj.ASPECTS), prompts, max_tokens=300)
        assert j.calls == 5 * 4 and result["requests"] == 20 and result["new"] == {"ok": 20, "unparsable": 0, "out_of_range": 0}
        for body in j.requests:
            assert body["model"] == "judge-x" and body["temperature"] == 0.0 and body["max_tokens"] == 300
            assert body["messages"][0] == {"role": "system", "content": aj.SYSTEM}
            text = user_text(body)
            assert "[[3]]" in text and "rationale" in text
        # each (completion, aspect) asked exactly once, with the completion and its own prompt
        asked = sorted((response_of(b), aspect_of(b)) for b in j.requests)
        assert asked == sorted((r, a) for r in OPINION for a in aj.ASPECTS)
        assert all("Name a color." in user_text(b) for b in j.requests if response_of(b) == "blue sky")
        # a second run pays for nothing
        again = aj.judge_completions(work, client(j), list(aj.ASPECTS), prompts, max_tokens=300)
        assert j.calls == 20 and again["requests"] == 0
    recs = lines(work.ratings)
    assert len(recs) == 20 and all(r["status"] == "ok" and r["judge"] == "judge-x" for r in recs)
    comps = lines(work.completions)
    scores = aj.completion_scores(comps, recs, "judge-x", list(aj.ASPECTS))
    by_text = {c["completion"]: scores[(c["prompt_id"], c["model"], c["sample"])] for c in comps}
    assert by_text["red"]["score"] == 4.5 and by_text["the owl"]["score"] == 2.0 and by_text["blue sky"]["score"] == 3.25
    assert by_text["a dog"]["ratings"] == {"helpfulness": 1.0, "honesty": 2.0, "instruction_following": 1.0, "truthfulness": 2.0}
    # the manifest records the judge, its aspects, prompt hashes and counts
    man = json.loads(work.manifest_path.read_text())["judges"]["judge-x"]
    assert man["aspects"] == list(aj.ASPECTS) and set(man["prompts"]) == set(aj.ASPECTS)
    assert man["counts"]["honesty"] == {"ok": 5, "unparsable": 0, "out_of_range": 0}
    assert man["endpoint"] == f"{j.base_url}/chat/completions"


def test_resume_after_an_interruption_never_repeats_a_paid_call(tmp_path):
    work = WorkDir(write_work(tmp_path / "w", TABLE, judge=None))
    prompts = aj.load_judge_prompts(None)
    with FakeJudge(opinion) as j:
        j.fail_after = 7  # the endpoint dies after 7 answers
        with pytest.raises(RuntimeFailure) as e:
            aj.judge_completions(work, client(j, concurrency=1), list(aj.ASPECTS), prompts)
        assert "failed" in str(e.value) and "resumes" in str(e.value)
    assert len(lines(work.ratings)) == 7
    # an interrupted write leaves half a line: it is dropped and that rating asked again
    with open(work.ratings, "a") as f:
        f.write('{"prompt_id": "cut-off", "mod')
    with FakeJudge(opinion) as j2:
        aj.judge_completions(work, client(j2), list(aj.ASPECTS), prompts)
        assert j2.calls == 20 - 7  # exactly the ones not yet paid for
    recs = lines(work.ratings)
    keys = [aj.rating_key(r) for r in recs]
    assert len(recs) == 20 and len(set(keys)) == 20


def test_unparsable_answers_are_recorded_and_retried_only_on_request(tmp_path):
    work = WorkDir(write_work(tmp_path / "w", TABLE, judge=None))
    prompts = aj.load_judge_prompts(None)

    def moody(body):
        if response_of(body) == "cat" and aspect_of(body) == "honesty":
            return "Honestly, quite good."
        if response_of(body) == "red" and aspect_of(body) == "truthfulness":
            return "Rating: [[9]]"
        return opinion(body)

    with FakeJudge(moody) as j:
        result = aj.judge_completions(work, client(j), list(aj.ASPECTS), prompts)
        assert result["new"] == {"ok": 18, "unparsable": 1, "out_of_range": 1}
        assert aj.judge_completions(work, client(j), list(aj.ASPECTS), prompts)["requests"] == 0
    recs = lines(work.ratings)
    bad = {(r["aspect"], r["status"], r["raw_rating"], r["rating"]) for r in recs if r["status"] != "ok"}
    assert bad == {("honesty", "unparsable", None, None), ("truthfulness", "out_of_range", 9, None)}
    assert any(r["judgment"] == "Honestly, quite good." for r in recs)  # the answer itself is kept
    comps = lines(work.completions)
    scores = aj.completion_scores(comps, recs, "judge-x", list(aj.ASPECTS))
    by_text = {c["completion"]: scores[(c["prompt_id"], c["model"], c["sample"])] for c in comps}
    assert by_text["cat"]["status"] == "invalid" and by_text["cat"]["score"] is None
    assert by_text["red"]["status"] == "invalid" and by_text["blue sky"]["status"] == "rated"
    with FakeJudge(opinion) as j:
        result = aj.judge_completions(work, client(j), list(aj.ASPECTS), prompts, retry_unparsable=True)
        assert j.calls == 2 and result["new"]["ok"] == 2
    recs = list(load_log(work.ratings, aj.rating_key).values())  # later lines replace earlier ones
    assert len(lines(work.ratings)) == 22 and len(recs) == 20
    scores = aj.completion_scores(comps, recs, "judge-x", list(aj.ASPECTS))
    assert all(s["status"] == "rated" for s in scores.values())


def test_the_api_key_is_sent_but_never_written(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", CANARY)
    work = WorkDir(write_work(tmp_path / "w", TABLE, judge=None))
    with FakeJudge(opinion) as j:
        aj.judge_completions(work, client(j, api_key_env="MY_JUDGE_KEY"), ["helpfulness"], aj.load_judge_prompts(None))
        assert all(h.get("Authorization") == f"Bearer {CANARY}" for h in j.headers)
    assert_no_canary(root=work.path)
    assert json.loads(work.manifest_path.read_text())["judges"]["judge-x"]["api_key_env"] == "MY_JUDGE_KEY"
    # a server that echoes the key back: the error names the endpoint, not the key
    with FakeJudge(opinion) as j:
        j.always = "echo-auth"
        with pytest.raises(RuntimeFailure) as e:
            aj.judge_completions(work, client(j, api_key_env="MY_JUDGE_KEY"), ["honesty"], aj.load_judge_prompts(None))
    assert CANARY not in str(e.value) and "127.0.0.1" in str(e.value)
    assert_no_canary(root=work.path)


def test_custom_judge_prompts_and_changed_prompts_are_refused(tmp_path):
    work = WorkDir(write_work(tmp_path / "w", TABLE, judge=None))
    f = tmp_path / "prompts.yaml"
    f.write_text("conciseness:\n  template: |\n    Is this short? {prompt} => {completion}\n    End with [[N]].\n")
    prompts = aj.load_judge_prompts(f)
    assert set(prompts) == set(aj.ASPECTS) | {"conciseness"} and prompts["conciseness"]["system"] == aj.SYSTEM
    assert aj.parse_aspects("conciseness, helpfulness", prompts) == ["conciseness", "helpfulness"]
    with FakeJudge(lambda b: "[[3]]") as j:
        aj.judge_completions(work, client(j), ["conciseness"], prompts)
        assert j.calls == 5
        assert user_text(j.requests[0]).startswith("Is this short? Name a")
        f.write_text("conciseness:\n  system: Be brief.\n  template: 'Short? {prompt} {completion}'\n")
        with pytest.raises(UsageError, match="different judge prompt"):
            aj.judge_completions(work, client(j), ["conciseness"], aj.load_judge_prompts(f))
        assert j.calls == 5
        # another judge model may use other prompts in the same work directory
        aj.judge_completions(work, client(j, model="judge-y"), ["conciseness"], aj.load_judge_prompts(f))
        assert j.calls == 10 and j.requests[-1]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert aj.judges_in(work) == ["judge-x", "judge-y"]


def test_judge_prompt_and_aspect_errors_name_the_place(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("clarity:\n  template: 'no fields here'\nbad name:\n  template: '{prompt}{completion}'\n"
                 "tone:\n  template: '{prompt} {completion}'\n  rubric: x\n")  # fmt: skip
    with pytest.raises(ConfigError) as e:
        aj.load_judge_prompts(f)
    text = str(e.value)
    assert "clarity.template: does not contain {prompt} and {completion}" in text
    assert "bad name" in text and "tone.rubric: unknown key" in text
    with pytest.raises(UsageError, match="unknown aspect 'helpfullness'"):
        aj.parse_aspects("helpfullness", aj.load_judge_prompts(None))
    with pytest.raises(UsageError, match="twice"):
        aj.parse_aspects("honesty,honesty", aj.load_judge_prompts(None))
    with pytest.raises(Exception, match="no completions.jsonl"):
        with FakeJudge() as j:
            aj.judge_completions(WorkDir(tmp_path / "nothing"), client(j), ["honesty"], aj.load_judge_prompts(None))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "completions.jsonl").write_text(json.dumps({"prompt_id": prompt_id("hi"), "model": "m", "sample": 0, "prompt": "hi"}) + "\n")
    with pytest.raises(DataError, match="completion missing or not a string"):
        with FakeJudge() as j:
            aj.judge_completions(WorkDir(broken), client(j), ["honesty"], aj.load_judge_prompts(None))
        assert j.calls == 0
