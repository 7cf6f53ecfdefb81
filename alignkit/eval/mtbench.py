"""MT-Bench the way FastChat's ``llm_judge`` runs it (single-answer grading).

Answers (``gen_model_answer.py``): every question's turns are asked in order in one conversation
(turn 2's prompt holds turn 1 and the model's own turn-1 answer), rendered with the model's chat
template, at the category's temperature (``temperature_config``; unknown categories 0.7;
below 1e-4 = greedy), up to 1024 new tokens.

Judgments (``gen_judgment.py --mode single``): one per question per turn; prompts ``single-v1`` and
``single-v1-multi-turn``, and for math/reasoning/coding the reference-guided ``single-math-v1`` and
``single-math-v1-multi-turn`` filled with the reference answers; the judge gets the prompt's
system message and the filled template, at temperature 0 with max_tokens 2048. Turn 2 is judged
only for questions with exactly two turns.

Scores (``common.py``/``show_result.py``): the first ``[[x]]`` in the judgment, else the first
``[x]``, read with ``ast.literal_eval``; no match → -1. Rows with -1 are dropped; turn 1 and turn 2
are the means of their turn's scores and the overall score is the mean of all remaining scores
pooled (not the mean of the two turn means).

The question, reference-answer and judge-prompt files keep FastChat's JSONL schemas and are read
from the given paths or URLs at run time; no benchmark text is part of alignkit.
"""

from __future__ import annotations

import ast
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from alignkit.client import ChatClient, JsonlLog
from alignkit.errors import DataError, Problem, RuntimeFailure
from alignkit.eval import sources
from alignkit.eval.bench import collect_answers
from alignkit.eval.bench import generate_missing, progress_step, write_results
from alignkit.eval.judge import ask_missing, unscorable
from alignkit.eval.scoring import score_judgments  # noqa: F401 (re-exported)

from alignkit.eval.defaults import FASTCHAT_RAW  # noqa: F401 (re-exported)
from alignkit.eval.defaults import MTBENCH_JUDGE_MODEL as DEFAULT_JUDGE_MODEL  # noqa: F401 (re-exported)
from alignkit.eval.defaults import MTBENCH_JUDGE_PROMPTS as DEFAULT_JUDGE_PROMPTS
from alignkit.eval.defaults import MTBENCH_QUESTIONS as DEFAULT_QUESTIONS
from alignkit.eval.defaults import MTBENCH_REFERENCES as DEFAULT_REFERENCES

TEMPERATURE_CONFIG = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}
DEFAULT_TEMPERATURE = 0.7
NEED_REF_CATS = ("math", "reasoning", "coding")
MAX_NEW_TOKENS = 1024
JUDGE_TEMPERATURE = 0.0
JUDGE_MAX_TOKENS = 2048

PROMPT_SINGLE = "single-v1"
PROMPT_MATH = "single-math-v1"
PROMPT_SINGLE_MT = "single-v1-multi-turn"
PROMPT_MATH_MT = "single-math-v1-multi-turn"
PROMPT_NAMES = (PROMPT_SINGLE, PROMPT_MATH, PROMPT_SINGLE_MT, PROMPT_MATH_MT)

ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


# ---------------------------------------------------------------------------------------------
# files


def load_questions(spec: str, *, refresh: bool = False, option: str = "--questions") -> list[dict]:
    rows = sources.load_jsonl(spec, option=option, refresh=refresh)
    seen: set = set()
    for i, q in enumerate(rows, start=1):
        where = f"{spec} row {i}"
        missing = [k for k in ("question_id", "category", "turns") if k not in q]
        if missing:
            raise DataError(
                Problem(where=where, message=f"missing {', '.join(missing)}", fix="use FastChat's question.jsonl schema: question_id, category, turns")
            )
        turns = q["turns"]
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise DataError(Problem(where=where, message="'turns' must be a non-empty list of strings"))
        if q["question_id"] in seen:
            raise DataError(Problem(where=where, message=f"duplicate question_id {q['question_id']!r}"))
        seen.add(q["question_id"])
    if not rows:
        raise DataError(Problem(where=option, message=f"{spec}: no questions"))
    return rows


def load_references(spec: str, *, refresh: bool = False, option: str = "--references") -> dict[Any, dict]:
    refs: dict[Any, dict] = {}
    for i, r in enumerate(sources.load_jsonl(spec, option=option, refresh=refresh), start=1):
        try:
            turns = r["choices"][0]["turns"]
            qid = r["question_id"]
        except (KeyError, IndexError, TypeError):
            raise DataError(
                Problem(
                    where=f"{spec} row {i}",
                    message="not a FastChat answer record",
                    fix="each line needs question_id and choices[0].turns",
                )
            ) from None
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise DataError(Problem(where=f"{spec} row {i}", message="choices[0].turns must be a list of strings"))
        refs[qid] = r
    return refs


def load_judge_prompts(spec: str, *, refresh: bool = False, option: str = "--judge-prompts") -> dict[str, dict]:
    prompts: dict[str, dict] = {}
    for i, p in enumerate(sources.load_jsonl(spec, option=option, refresh=refresh), start=1):
        if "name" not in p:
            raise DataError(Problem(where=f"{spec} row {i}", message="missing 'name'"))
        prompts[p["name"]] = p
    problems = []
    for name in PROMPT_NAMES:
        p = prompts.get(name)
        if p is None:
            problems.append(Problem(where=f"{spec}", message=f"no judge prompt named {name!r}", fix="use FastChat's judge_prompts.jsonl"))
            continue
        for key in ("system_prompt", "prompt_template", "output_format", "type"):
            if not isinstance(p.get(key), str):
                problems.append(Problem(where=f"{spec} prompt {name}", message=f"missing string field {key!r}"))
        if p.get("type") != "single" or p.get("output_format") != "[[rating]]":
            problems.append(
                Problem(
                    where=f"{spec} prompt {name}",
                    message="single-answer grading needs type 'single' and output_format '[[rating]]'",
                )
            )
    if problems:
        raise DataError(problems)
    return prompts


# ---------------------------------------------------------------------------------------------
# the rules


def question_temperature(category: str) -> float:
    return TEMPERATURE_CONFIG.get(category, DEFAULT_TEMPERATURE)


def parse_score(judgment: str) -> float:
    """FastChat's rating parser: ``[[x]]`` first, then ``[x]``; -1 when neither is found."""
    match = ONE_SCORE.search(judgment)
    if not match:
        match = ONE_SCORE_BACKUP.search(judgment)
    if not match:
        return -1
    try:
        return ast.literal_eval(match.groups()[0])
    except (ValueError, SyntaxError):
        return -1


def _reference_turns(question: dict, references: dict[Any, dict]) -> list[str] | None:
    ref = references.get(question["question_id"])
    if ref is not None:
        return ref["choices"][0]["turns"]
    inline = question.get("reference")
    if isinstance(inline, list) and inline and all(isinstance(t, str) for t in inline):
        return inline
    return None


@dataclass(frozen=True)
class Match:
    """One judgment to make."""

    question_id: Any
    category: str
    turn: int
    prompt_name: str
    system_prompt: str
    user_prompt: str

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": self.user_prompt}]


def make_matches(
    questions: list[dict], answers: dict[Any, dict], references: dict[Any, dict], prompts: dict[str, dict]
) -> list[Match]:
    """Every (question, turn) judgment with FastChat's prompt choice and template variables."""
    matches: list[Match] = []
    problems: list[Problem] = []
    for q in questions:
        qid, cat = q["question_id"], q["category"]
        answer = answers.get(qid)
        if answer is None:
            problems.append(Problem(where=f"question {qid}", message="no answer"))
            continue
        a_turns = answer["choices"][0]["turns"]
        ref_kwargs: dict[str, str] = {}
        ref_based = cat in NEED_REF_CATS
        if ref_based:
            ref = _reference_turns(q, references)
            if ref is None or len(ref) < len(q["turns"]):
                problems.append(
                    Problem(
                        where=f"question {qid} ({cat})",
                        message="no reference answer for a reference-guided category",
                        fix="give --references with FastChat's reference_answer/gpt-4.jsonl",
                    )
                )
                continue
            ref_kwargs["ref_answer_1"] = ref[0]
            if len(ref) > 1:
                ref_kwargs["ref_answer_2"] = ref[1]
        p1 = prompts[PROMPT_MATH if ref_based else PROMPT_SINGLE]
        try:
            user = p1["prompt_template"].format(question=q["turns"][0], answer=a_turns[0], **ref_kwargs)
        except (KeyError, IndexError) as e:
            raise DataError(Problem(where=f"judge prompt {p1['name']}", message=f"unknown template variable {e}")) from None
        matches.append(Match(qid, cat, 1, p1["name"], p1["system_prompt"], user))
        if len(q["turns"]) == 2:
            p2 = prompts[PROMPT_MATH_MT if ref_based else PROMPT_SINGLE_MT]
            try:
                user = p2["prompt_template"].format(
                    question_1=q["turns"][0],
                    question_2=q["turns"][1],
                    answer_1=a_turns[0],
                    answer_2=a_turns[1],
                    **ref_kwargs,
                )
            except (KeyError, IndexError) as e:
                raise DataError(Problem(where=f"judge prompt {p2['name']}", message=f"unknown template variable {e}")) from None
            matches.append(Match(qid, cat, 2, p2["name"], p2["system_prompt"], user))
    if problems:
        raise DataError(problems)
    return matches


# ---------------------------------------------------------------------------------------------
# running


def answer_key(rec: dict) -> tuple:
    return (rec["question_id"], rec["model_id"])


def judgment_key(rec: dict) -> tuple:
    judge = rec["judge"]
    return (rec["question_id"], rec["model"], judge[0], judge[1], rec["turn"])


def generate_answers(
    questions: list[dict],
    generator,
    log: JsonlLog,
    *,
    model_id: str,
    max_new_tokens: int = MAX_NEW_TOKENS,
    batch_size: int = 8,
    on_progress: Callable[[int], None] | None = None,
) -> dict[Any, dict]:
    """Answer every question not yet in ``log``; each finished question is appended at once."""
    def record(q: dict, turns: list[str], temperature: float) -> dict:
        return {
            "question_id": q["question_id"],
            "answer_id": uuid.uuid4().hex,
            "model_id": model_id,
            "choices": [{"index": 0, "turns": turns}],
            "tstamp": time.time(),
            "generate_params": {
                "backend": getattr(generator, "backend", "?"),
                "temperature": temperature,
                "do_sample": temperature >= 1e-4,
                "max_new_token": max_new_tokens,
            },
        }

    generate_missing(
        questions, generator, log, key=lambda q: (q["question_id"], model_id), turns=lambda q: q["turns"],
        temperature=lambda q: question_temperature(q["category"]), record=record, max_new_tokens=max_new_tokens,
        batch_size=batch_size, on_progress=on_progress,
    )  # fmt: skip
    return {qid: rec for (qid, mid), rec in log.records.items() if mid == model_id}


def judge_answers(
    matches: list[Match],
    client: ChatClient,
    log: JsonlLog,
    *,
    model_id: str,
    on_progress: Callable[[], None] | None = None,
) -> list[dict]:
    """Judge every match not yet in ``log``; each judgment is appended as it arrives."""
    judge_model = client.model

    def key(m: Match) -> tuple:
        return (m.question_id, model_id, judge_model, m.prompt_name, m.turn)

    def record(m: Match, resp) -> dict:
        return {
            "question_id": m.question_id,
            "model": model_id,
            "judge": [judge_model, m.prompt_name],
            "user_prompt": m.user_prompt,
            "judgment": resp.content,
            "score": parse_score(resp.content),
            "turn": m.turn,
            "tstamp": time.time(),
        }

    ask_missing(
        client, log, matches, key=key, record=record, on_progress=on_progress,
        request=lambda m: {"messages": m.messages(), "temperature": JUDGE_TEMPERATURE, "max_tokens": JUDGE_MAX_TOKENS},
    )  # fmt: skip
    wanted = {key(m) for m in matches}
    return [rec for k, rec in log.records.items() if k in wanted]


def no_rating_failure(records: list[dict], judge: ChatClient, path: Path) -> RuntimeFailure:
    """The error for a run in which not one judgment had a rating FastChat's parser can read."""
    sample = " ".join(str(records[0].get("judgment") or "").split())[:120] if records else ""
    return unscorable(
        "MT-Bench", judge, path,
        unreadable=f"none of the {len(records)} judgments has a parsable rating (FastChat reads the first "
        "'[[N]]', else '[N]'), so there is no score",
        seen=f"the first begins: {sample!r}" if sample else "",
        fix="use a judge model that follows the MT-Bench judge prompts and ends its judgment with "
        "'Rating: [[N]]' (FastChat used gpt-4)",
        options="--judge-model",
    )  # fmt: skip


def run_mt_bench(
    *,
    model: str,
    model_id: str,
    output: Path,
    generator_factory: Callable[[], Any] | None,
    judge: ChatClient | None,
    questions_spec: str = DEFAULT_QUESTIONS,
    references_spec: str = DEFAULT_REFERENCES,
    judge_prompts_spec: str = DEFAULT_JUDGE_PROMPTS,
    max_new_tokens: int = MAX_NEW_TOKENS,
    batch_size: int = 8,
    limit: int | None = None,
    refresh_sources: bool = False,
    progress=None,
) -> dict[str, Any]:
    """Answer, judge, score; writes ``answers.jsonl``, ``judgments.jsonl`` and ``results.json``.

    ``judge=None`` stops after the answers. ``progress`` is a ``rich.progress.Progress`` or None.
    """
    questions = load_questions(questions_spec, refresh=refresh_sources)
    if limit is not None:
        questions = questions[:limit]
    references: dict[Any, dict] = {}
    prompts: dict[str, dict] = {}
    if judge is not None:  # load (and validate) the judge files before paying for generation
        prompts = load_judge_prompts(judge_prompts_spec, refresh=refresh_sources)
        if any(q["category"] in NEED_REF_CATS for q in questions):
            references = load_references(references_spec, refresh=refresh_sources)
    output = Path(output)
    answers = collect_answers(
        output, answer_key, [q["question_id"] for q in questions], model_id=model_id,
        generator_factory=generator_factory, missing="questions have no answer yet", progress=progress,
        answer=lambda generator, log, advance: generate_answers(questions, generator, log, model_id=model_id,
                                                                max_new_tokens=max_new_tokens, batch_size=batch_size,
                                                                on_progress=advance),
    )  # fmt: skip

    result: dict[str, Any] = {
        "benchmark": "mt-bench",
        "model": model_id,
        "model_path": str(model),
        "answers": str(output / "answers.jsonl"),
        "sources": {"questions": questions_spec, "references": references_spec, "judge_prompts": judge_prompts_spec},
        "generation": {"max_new_tokens": max_new_tokens, "temperatures": TEMPERATURE_CONFIG},
        "n_questions": len(questions),
    }
    if judge is None:
        result["judged"] = False
        return result

    matches = make_matches(questions, answers, references, prompts)
    judgments_log = JsonlLog(output / "judgments.jsonl", judgment_key)
    advance = progress_step(progress, "judging", len(matches))
    if advance:
        advance(sum(1 for m in matches if (m.question_id, model_id, judge.model, m.prompt_name, m.turn) in judgments_log))
    records = judge_answers(matches, judge, judgments_log, model_id=model_id, on_progress=advance)
    scores = score_judgments(records, questions)
    if scores["counts"]["judgments"] and not scores["counts"]["scored"]:
        raise no_rating_failure(records, judge, output / "judgments.jsonl")
    result.update(scores)
    result.update(
        {
            "judged": True,
            "judge_model": judge.model,
            "judge_endpoint": judge.endpoint,
            "judge_prompts": list(PROMPT_NAMES),
            "judgments": str(output / "judgments.jsonl"),
        }
    )
    write_results(output / "results.json", result)
    return result


def results_markdown(result: dict[str, Any]) -> str:
    def f(x):
        return "–" if x is None else f"{x:.2f}"

    lines = [
        f"# MT-Bench: {result.get('model')} (judge: {result.get('judge_model')})",
        "",
        "| category | turn 1 | turn 2 | overall | n |",
        "|---|---:|---:|---:|---:|",
    ]
    for cat, s in result.get("categories", {}).items():
        lines.append(f"| {cat} | {f(s['turn_1'])} | {f(s['turn_2'])} | {f(s['overall'])} | {s['n']} |")
    c = result.get("counts", {})
    lines.append(
        f"| **all** | **{f(result.get('turn_1'))}** | **{f(result.get('turn_2'))}** | **{f(result.get('overall'))}** | {c.get('scored', 0)} |"
    )
    lines += ["", f"{c.get('judgments', 0)} judgments, {result.get('dropped', 0)} dropped (no parsable rating)."]
    return "\n".join(lines) + "\n"
