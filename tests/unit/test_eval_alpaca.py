"""AlpacaEval: order randomization, preference parsing and win-rate arithmetic on judge outputs the
tests write, and the full loop against a fake judge over HTTP."""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from alignkit.errors import DataError, RuntimeFailure  # noqa: E402
from alignkit.eval import alpaca  # noqa: E402
from alignkit.client import ChatClient, ChatResponse, JsonlLog  # noqa: E402
from tests.eval_support import ALPACA_TEMPLATE, CANARY, EchoGenerator, FakeJudge, assert_no_canary, user_text  # noqa: E402

INSTRUCTIONS = [f"Instruction number {i}: say something about topic {i * 7 % 13}." for i in range(24)]


def test_switch_is_alpaca_evals_seeded_coin():
    for ins in INSTRUCTIONS:
        # AlpacaEval: random_seeded_choice(seed="is_switched_outputs" + instruction + str(seed), [False, True])
        expected = random.Random("is_switched_outputs" + ins + "0").choices([False, True], k=1)[0]
        assert alpaca.is_switched(ins) is expected
        assert alpaca.is_switched(ins, seed=0) is alpaca.is_switched(ins)
    flips = [alpaca.is_switched(i) for i in INSTRUCTIONS]
    assert 4 <= sum(flips) <= 20  # both orders occur
    assert flips != [alpaca.is_switched(i, seed=1) for i in INSTRUCTIONS]  # the seed matters


def lp(**tokens):
    return ChatResponse(content="m", logprobs=[{"token": "m", "logprob": 0.0,
                                                "top_logprobs": [{"token": t, "logprob": v} for t, v in tokens.items()]}])  # fmt: skip


def test_weighted_and_clf_parsers():
    r = lp(m=-0.2, M=-1.8, The=-9.0)
    # P(m) = 1 / (1 + e^-1.6) = 0.83198...; preference = 2 - P(m)
    assert alpaca.parse_preference(r, "weighted") == pytest.approx(2 - 1 / (1 + math.exp(-1.6)))
    assert alpaca.parse_preference(r, "clf") == 1.0
    assert alpaca.parse_preference(lp(M=-0.1, x=-1.0), "weighted") == 2.0  # missing m has probability 0
    assert alpaca.parse_preference(lp(M=-0.1), "clf") == 2.0
    assert math.isnan(alpaca.parse_preference(lp(x=-0.1, y=-2.0), "weighted"))
    assert math.isnan(alpaca.parse_preference(ChatResponse(content="m"), "weighted"))  # no logprobs at all


def test_ranking_and_token_parsers():
    rk = "[{'model': 'model_1', 'rank': 2}, {'model': 'model_2', 'rank': 1}]"
    assert alpaca.parse_preference(ChatResponse(content=rk), "ranking") == 2.0
    assert alpaca.parse_preference(ChatResponse(content=rk.replace("2}", "1}", 1).replace("1}]", "2}]")), "ranking") == 1.0
    assert math.isnan(alpaca.parse_preference(ChatResponse(content="model_1 wins"), "ranking"))
    assert math.isnan(alpaca.parse_preference(ChatResponse(content="[{'model': 'model_1', 'rank': 3}]"), "ranking"))
    assert alpaca.parse_preference(ChatResponse(content=" m\n"), "token") == 1.0
    assert alpaca.parse_preference(ChatResponse(content="M"), "token") == 2.0
    assert math.isnan(alpaca.parse_preference(ChatResponse(content="Output (a)"), "token"))


def test_win_rates_by_hand():
    prefs = [2.0, 1.0, 1.5, 1.8, 1.4, 0, None, float("nan"), 3.0, "junk"]
    r = alpaca.score_preferences(prefs)
    # valid (0 read as 1.5; 3.0, None, NaN, junk dropped): 2, 1, 1.5, 1.8, 1.4, 1.5 -> minus 1: 1, 0, .5, .8, .4, .5
    assert r["win_rate"] == pytest.approx(3.2 / 6 * 100)
    # sample std (ddof 1): squares of deviations from 0.5333 sum to 0.593333; /5; sqrt; / sqrt(6)
    assert r["standard_error"] == pytest.approx(math.sqrt(0.5933333333 / 5) / math.sqrt(6) * 100, rel=1e-6)
    assert r["standard_error"] == pytest.approx(14.0633487, rel=1e-6)
    assert (r["n_wins"], r["n_wins_base"], r["n_draws"], r["n_total"], r["n_dropped"]) == (2, 2, 2, 6, 4)
    # discrete: 1.8 -> 2, 1.4 -> 1, exact 1.5 stays a draw worth half: (1 + 0 + .5 + 1 + 0 + .5) / 6
    assert r["discrete_win_rate"] == pytest.approx(50.0)


def test_win_rate_edge_cases():
    r = alpaca.score_preferences([2.0])
    assert r["win_rate"] == 100.0 and r["standard_error"] is None  # one row: no standard error
    r = alpaca.score_preferences([])
    assert r["win_rate"] is None and r["n_total"] == 0
    r = alpaca.score_preferences([1.5, 1.5])
    assert r["win_rate"] == 50.0 and r["discrete_win_rate"] == 50.0 and r["standard_error"] == 0.0


def test_prompt_to_messages_and_template_filling():
    filled = alpaca.fill_template(ALPACA_TEMPLATE, instruction="do {output_1}", output_1="A", output_2="B")
    assert "INSTRUCTION: do {output_1}\nOUTPUT m: A\nOUTPUT M: B" in filled  # values are never re-substituted
    msgs = alpaca.prompt_to_messages(filled)
    assert msgs == [
        {"role": "system", "content": "You compare two outputs."},
        {"role": "user", "content": "INSTRUCTION: do {output_1}\nOUTPUT m: A\nOUTPUT M: B\nAnswer m or M."},
    ]
    named = alpaca.prompt_to_messages("<|im_start|>system name=example_user\nhi\n<|im_end|>")
    assert named == [{"name": "example_user", "role": "system", "content": "hi"}]
    assert alpaca.prompt_to_messages("plain text prompt") == [{"role": "user", "content": "plain text prompt"}]


def pairs(n, same=()):
    return [
        {"index": i, "instruction": INSTRUCTIONS[i], "output_1": f"reference {i}",
         "output_2": (f"reference {i}" if i in same else f"model {i}"), "generator_1": "ref", "generator_2": "mine"}
        for i in range(n)
    ]  # fmt: skip


def test_swapped_pairs_are_mapped_back(tmp_path):
    # the judge always prefers whatever it was shown second ("M"): after un-swapping, the model wins
    # exactly the pairs that were not swapped
    with FakeJudge(lambda body: "M") as fj:
        judge = ChatClient(fj.base_url, "g", sleep=lambda s: None)
        log = JsonlLog(tmp_path / "a.jsonl", alpaca.annotation_key)
        anns = alpaca.annotate(pairs(16, same={3}), judge, log, template=ALPACA_TEMPLATE, parser="token")
    assert fj.calls == 15  # identical outputs need no judge call
    for a in anns:
        if a["index"] == 3:
            assert a["preference"] == 1.5 and a["raw_completion"] is None
            continue
        assert a["is_switched_outputs"] == alpaca.is_switched(a["instruction"])
        assert a["preference"] == (1.0 if a["is_switched_outputs"] else 2.0)
    # what the judge saw: the model's output second exactly when not swapped
    for body in fj.requests:
        text = user_text(body)
        i = int(text.split("Instruction number ")[1].split(":")[0])
        shown_second = text.split("OUTPUT M: ")[1].split("\n")[0]
        assert shown_second == (f"reference {i}" if alpaca.is_switched(INSTRUCTIONS[i]) else f"model {i}")
        assert body["max_tokens"] == 1 and body["temperature"] == 0
    n_unswitched = sum(1 for a in anns if a["index"] != 3 and not a["is_switched_outputs"])
    r = alpaca.score_preferences([a["preference"] for a in anns])
    assert r["win_rate"] == pytest.approx((n_unswitched + 0.5) / 16 * 100)


def test_weighted_request_and_nan_rows(tmp_path):
    def responder(body):
        text = user_text(body)
        if "Instruction number 2:" in text:
            return {"content": "x", "top_logprobs": [{"token": "x", "logprob": -0.1}]}  # unusable -> NaN
        return {"content": "m", "top_logprobs": [{"token": "m", "logprob": -0.2}, {"token": "M", "logprob": -1.8}]}

    with FakeJudge(responder) as fj:
        judge = ChatClient(fj.base_url, "g", sleep=lambda s: None)
        anns = alpaca.annotate(pairs(4), judge, JsonlLog(tmp_path / "a.jsonl", alpaca.annotation_key),
                               template=ALPACA_TEMPLATE, parser="weighted")  # fmt: skip
    body = fj.requests[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 5 and body["max_tokens"] == 1
    p_first = 2 - 1 / (1 + math.exp(-1.6))  # preference in the order the judge saw
    for a in anns:
        if a["index"] == 2:
            assert a["preference"] is None
        else:
            assert a["preference"] == pytest.approx(3 - p_first if a["is_switched_outputs"] else p_first)
    r = alpaca.score_preferences([a["preference"] for a in anns])
    assert r["n_total"] == 3 and r["n_dropped"] == 1


def test_length_controlled_says_why_it_is_missing():
    lc, why = alpaca.length_controlled_win_rate([], n_instructions=10)
    assert lc is None and "805" in why
    try:
        import alpaca_eval  # noqa: F401
    except ImportError:
        lc, why = alpaca.length_controlled_win_rate([], n_instructions=805)
        assert lc is None and "alpaca_eval package" in why


def write_reference(tmp_path, n=6):
    ref = [{"instruction": INSTRUCTIONS[i], "output": f"reference {i}", "generator": "gpt4_ref", "dataset": "t"}
           for i in range(n)]  # fmt: skip
    p = tmp_path / "ref.json"
    p.write_text(json.dumps(ref))
    tpl = tmp_path / "judge.txt"
    tpl.write_text(ALPACA_TEMPLATE)
    return str(p), str(tpl)


def test_full_run_resume_and_files(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("AE_KEY", CANARY)
    ref, tpl = write_reference(tmp_path)
    gen = EchoGenerator()

    def go(judge, g):
        return alpaca.run_alpaca_eval(
            model="m-dir", model_id="mine", output=tmp_path / "out", reference_spec=ref, generator_factory=lambda: g,
            judge=judge, judge_prompt_spec=tpl, parser="token", temperature=0.0, max_new_tokens=32,
        )  # fmt: skip

    with FakeJudge(lambda body: "m") as fj:
        judge = ChatClient(fj.base_url, "g", api_key_env="AE_KEY", require_key=True, sleep=lambda s: None)
        res = go(judge, gen)
        assert fj.calls == 6
        assert gen.calls[0]["temperature"] == 0.0 and gen.calls[0]["conversations"][0] == [
            {"role": "user", "content": INSTRUCTIONS[0]}
        ]
        res2 = go(judge, EchoGenerator())
        assert fj.calls == 6  # resumed: nothing paid twice
    switched = sum(alpaca.is_switched(i) for i in INSTRUCTIONS[:6])
    # judge always says "m" (first shown): the model wins exactly the swapped pairs
    assert res["win_rate"] == pytest.approx(switched / 6 * 100) == res2["win_rate"]
    assert res["length_controlled_win_rate"] is None and "805" in res["length_controlled_note"]
    outputs = json.loads((tmp_path / "out" / "model_outputs.json").read_text())
    assert outputs[0] == {"instruction": INSTRUCTIONS[0], "output": f"ANSWER[{INSTRUCTIONS[0]}]#1", "generator": "mine", "dataset": "t"}
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["benchmark"] == "alpaca-eval" and saved["reference_generator"] == "gpt4_ref"
    assert "unavailable" in alpaca.results_markdown(saved)
    out, err = capfd.readouterr()
    assert_no_canary(out, err, root=tmp_path)


def test_no_readable_judgment_is_a_runtime_failure_even_with_identical_output_draws(tmp_path):
    """Draws for identical outputs are not judgments: a judge that never answered readably still fails."""
    ref, tpl = write_reference(tmp_path, n=3)
    rows = json.loads(Path(ref).read_text())
    rows[0]["output"] = f"ANSWER[{INSTRUCTIONS[0]}]#1"  # what EchoGenerator answers: a draw without a judge call
    Path(ref).write_text(json.dumps(rows))
    with FakeJudge(lambda body: "Both are fine.") as fj:
        judge = ChatClient(fj.base_url, "g", sleep=lambda s: None)
        with pytest.raises(RuntimeFailure) as e:
            alpaca.run_alpaca_eval(
                model="m-dir", model_id="mine", output=tmp_path / "out", reference_spec=ref,
                generator_factory=EchoGenerator, judge=judge, judge_prompt_spec=tpl, parser="token",
            )  # fmt: skip
        assert fj.calls == 2
    assert "none of the 2 judgments" in str(e.value) and "'Both are fine.'" in str(e.value)
    assert not (tmp_path / "out" / "results.json").exists()
    assert len((tmp_path / "out" / "annotations.jsonl").read_text().splitlines()) == 3


def test_reference_and_template_are_checked(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps([{"instruction": "x"}]))
    with pytest.raises(DataError) as e:
        alpaca.load_reference_outputs(str(p))
    assert "row 1" in str(e.value)
    t = tmp_path / "t.txt"
    t.write_text("{instruction} {output_1}")
    with pytest.raises(DataError) as e:
        alpaca.load_judge_template(str(t))
    assert "{output_2}" in str(e.value)
