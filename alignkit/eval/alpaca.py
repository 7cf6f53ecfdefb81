"""AlpacaEval: pairwise judgments against reference outputs, scored with AlpacaEval's own rules.

Pairs (``PairwiseAnnotator``): ``output_1`` is the reference (baseline) output, ``output_2`` the
model's. Before judging, the two are swapped when
``random.Random("is_switched_outputs" + instruction + str(seed)).choices([False, True])`` says so
(AlpacaEval's ``RandomSwitchTwoColumnsProcessor``, seed 0 by default); a preference given on a
swapped pair is mapped back as ``3 - x``. Identical outputs get 1.5 without a judge call.

Judge prompt: AlpacaEval's annotator template (a ChatML-style text with ``{instruction}``,
``{output_1}``, ``{output_2}``), loaded at run time and split into chat messages the way
``prompt_to_chatml`` does. Parsers:

* ``weighted`` (weighted_alpaca_eval_gpt4_turbo, the AlpacaEval 2.0 default): one token with
  top-5 log-probabilities; preference = 2 - P("m") / (P("m") + P("M")).
* ``clf`` (alpaca_eval_clf_gpt4_turbo): the same request, preference 1 if "m" is likelier, else 2.
* ``ranking`` (alpaca_eval_gpt4): ``[{'model': 'model_1', 'rank': r}, ...]``; preference = rank of model_1.
* ``token``: the answer text itself is "m" (1) or "M" (2) — for endpoints without log-probabilities.

Unparsable judgments are kept as NaN and dropped from the metrics.

Metrics (``metrics/helpers.py``): preferences with 0 read as 1.5, only values in [1, 2] count;
``win_rate`` = mean(preference - 1) × 100 and ``standard_error`` its standard error of the mean
(ddof 1) × 100; ``discrete_win_rate`` rounds each preference to 1 or 2 first (exact 1.5 = tie,
worth half). The length-controlled win rate needs AlpacaEval's GLM (the ``alpaca_eval`` package,
its per-instruction difficulty file from the Hub, all 805 instructions in order); without those
inputs it is reported as unavailable with the reason.
"""

from __future__ import annotations

import ast
import hashlib
import math
import random
import re
import time
from pathlib import Path
from typing import Any, Callable

from alignkit.client import ChatClient, ChatResponse, JsonlLog
from alignkit.errors import DataError, Problem, RuntimeFailure, UsageError
from alignkit.eval import sources
from alignkit.eval.bench import collect_answers
from alignkit.eval.bench import finite_or_none, generate_missing, write_results
from alignkit.eval.judge import ask_missing, unscorable
from alignkit.eval.scoring import N_ALPACA_EVAL, in_range, length_controlled_win_rate, score_preferences  # noqa: F401 (re-exported)

from alignkit.eval.defaults import AE_RAW  # noqa: F401 (re-exported)
from alignkit.eval.defaults import ALPACA_JUDGE_MODEL as DEFAULT_JUDGE_MODEL  # noqa: F401 (re-exported)
from alignkit.eval.defaults import ALPACA_JUDGE_PROMPT as DEFAULT_JUDGE_PROMPT
DEFAULT_SEED = 0
SWITCH_COLUMN = "is_switched_outputs"

PARSERS = ("weighted", "clf", "ranking", "token")
#: request parameters of AlpacaEval's annotator configs, per parser
JUDGE_REQUEST = {
    "weighted": {"temperature": 1.0, "max_tokens": 1, "logprobs": True, "top_logprobs": 5},
    "clf": {"temperature": 1.0, "max_tokens": 1, "logprobs": True, "top_logprobs": 5},
    "ranking": {"temperature": 0.0, "max_tokens": 100},
    "token": {"temperature": 0.0, "max_tokens": 1},
}
NUMERATOR, DENOMINATOR = "m", ("m", "M")
# AlpacaEval's generation settings for Zephyr-7B-beta (models_configs/zephyr-7b-beta)
DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_NEW_TOKENS = 2048

_PLACEHOLDER = re.compile(r"\{(instruction|output_1|output_2)\}")


# ---------------------------------------------------------------------------------------------
# inputs


def load_reference_outputs(spec: str, *, refresh: bool = False, option: str = "--reference") -> list[dict]:
    rows = sources.load_records(spec, option=option, refresh=refresh)
    for i, r in enumerate(rows, start=1):
        if not isinstance(r.get("instruction"), str) or not isinstance(r.get("output"), str):
            raise DataError(
                Problem(
                    where=f"{spec} row {i}",
                    message="needs string fields 'instruction' and 'output'",
                    fix="use AlpacaEval's model_outputs.json format: [{instruction, output, generator}, ...]",
                )
            )
    if not rows:
        raise DataError(Problem(where=option, message=f"{spec}: no reference outputs"))
    return rows


def load_judge_template(spec: str, *, refresh: bool = False, option: str = "--judge-prompt") -> str:
    text = sources.load_text(spec, option=option, refresh=refresh)
    missing = [p for p in ("{instruction}", "{output_1}", "{output_2}") if p not in text]
    if missing:
        raise DataError(
            Problem(
                where=f"{option} {spec}",
                message=f"the template lacks {', '.join(missing)}",
                fix="use an AlpacaEval annotator prompt (e.g. alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt)",
            )
        )
    return text


# ---------------------------------------------------------------------------------------------
# the rules


def is_switched(instruction: str, seed: int = DEFAULT_SEED) -> bool:
    """AlpacaEval's seeded coin: swap output_1 and output_2 for this instruction?"""
    return bool(random.Random(SWITCH_COLUMN + instruction + str(seed)).choices([False, True], k=1)[0])


def fill_template(template: str, *, instruction: str, output_1: str, output_2: str) -> str:
    values = {"instruction": instruction, "output_1": output_1, "output_2": output_2}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def prompt_to_messages(prompt: str) -> list[dict[str, str]]:
    """AlpacaEval's ``prompt_to_chatml``; a template without ``<|im_start|>`` is one user message."""
    start, end = "<|im_start|>", "<|im_end|>"
    text = prompt.strip()
    if not text.startswith(start):
        return [{"role": "user", "content": text}]
    messages: list[dict[str, str]] = []
    for part in text.split(start)[1:]:
        head, _, rest = part.partition("\n")
        role = head.strip()
        content = rest.split(end, 1)[0].strip()
        msg: dict[str, str] = {}
        if role.startswith("system") and role != "system":
            extra = role.split("system", 1)[-1]
            msg.update({k: v for k, v in (s.split("=", 1) for s in extra.split(" ") if "=" in s)})
            role = "system"
        msg["role"] = role
        msg["content"] = content
        messages.append(msg)
    return messages


def _logsumexp(xs: list[float]) -> float:
    m = max(xs)
    if m == -math.inf:
        return -math.inf
    return m + math.log(sum(math.exp(x - m) for x in xs))


def parse_preference(resp: ChatResponse, parser: str) -> float:
    """The preference in the order the judge saw (1: output_1 better, 2: output_2 better), NaN if none."""
    if parser in ("weighted", "clf"):
        if not resp.logprobs:
            return math.nan
        top = resp.logprobs[0].get("top_logprobs") or []
        lp = {t.get("token"): float(t.get("logprob")) for t in top if t.get("token") in DENOMINATOR}
        if not lp:
            return math.nan
        missing = -math.inf
        num = lp.get(NUMERATOR, missing)
        if parser == "clf":
            others = [lp.get(t, missing) for t in DENOMINATOR if t != NUMERATOR]
            return 1.0 if all(num > o for o in others) else 2.0
        p = math.exp(num - _logsumexp([lp.get(t, missing) for t in DENOMINATOR]))
        return 2.0 - p
    if parser == "ranking":
        try:
            ranking = ast.literal_eval(resp.content.strip())
            rank = [c for c in ranking if c["model"] == "model_1"][0]["rank"]
        except (ValueError, SyntaxError, TypeError, KeyError, IndexError, MemoryError, RecursionError):
            return math.nan
        return float(rank) if rank in (1, 2) else math.nan
    if parser == "token":
        return {"m": 1.0, "M": 2.0}.get(resp.content.strip(), math.nan)
    raise UsageError(Problem(where="--judge-parser", message=f"unknown parser {parser!r}", fix="one of " + ", ".join(PARSERS)))


# ---------------------------------------------------------------------------------------------
# running


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def answer_key(rec: dict) -> tuple:
    return (rec["index"], rec["generator"])


def annotation_key(rec: dict) -> tuple:
    return (rec["index"], rec["annotator"], rec["pair_digest"])


def generate_outputs(
    references: list[dict],
    generator,
    log: JsonlLog,
    *,
    model_id: str,
    temperature: float,
    max_new_tokens: int,
    batch_size: int = 8,
    on_progress: Callable[[int], None] | None = None,
) -> dict[int, dict]:
    def record(i: int, texts: list[str], _temperature: float) -> dict:
        return {
            "index": i,
            "instruction": references[i]["instruction"],
            "output": texts[0],
            "generator": model_id,
            "dataset": references[i].get("dataset"),
            "tstamp": time.time(),
        }

    generate_missing(
        range(len(references)), generator, log, key=lambda i: (i, model_id),
        turns=lambda i: [references[i]["instruction"]], temperature=lambda i: temperature, record=record,
        max_new_tokens=max_new_tokens, batch_size=batch_size, on_progress=on_progress,
    )  # fmt: skip
    return {i: rec for (i, gen), rec in log.records.items() if gen == model_id}


def annotate(
    pairs: list[dict],
    client: ChatClient,
    log: JsonlLog,
    *,
    template: str,
    parser: str,
    seed: int = DEFAULT_SEED,
    on_progress: Callable[[], None] | None = None,
) -> list[dict]:
    """Judge every pair (``index, instruction, output_1, output_2, generator_1, generator_2``)."""
    annotator = f"{client.model}:{parser}"
    bases = []
    for pair in pairs:
        digest = _digest(pair["instruction"], pair["output_1"], pair["output_2"], str(seed))
        base = dict(pair, annotator=annotator, pair_digest=digest, seed=seed,
                    **{SWITCH_COLUMN: is_switched(pair["instruction"], seed)})  # fmt: skip
        bases.append(base)
        if annotation_key(base) not in log and pair["output_1"] == pair["output_2"]:
            # AlpacaEval: identical outputs are a draw, no judge call
            log.append(dict(base, preference=1.5, raw_completion=None, tstamp=time.time()))

    def request(base: dict) -> dict:
        first, second = (base["output_2"], base["output_1"]) if base[SWITCH_COLUMN] else (base["output_1"], base["output_2"])
        prompt = fill_template(template, instruction=base["instruction"], output_1=first, output_2=second)
        return {"messages": prompt_to_messages(prompt), **JUDGE_REQUEST[parser]}

    def record(base: dict, resp: ChatResponse) -> dict:
        pref = parse_preference(resp, parser)
        if base[SWITCH_COLUMN] and not math.isnan(pref):
            pref = 3 - pref
        return dict(
            base,
            preference=None if math.isnan(pref) else pref,
            raw_completion=resp.content,
            raw_logprobs=(resp.logprobs[0].get("top_logprobs") if resp.logprobs else None),
            tstamp=time.time(),
        )

    ask_missing(client, log, bases, key=annotation_key, request=request, record=record, on_progress=on_progress)
    return [log.get(annotation_key(b)) for b in bases if annotation_key(b) in log]


#: what each parser needs from the judge, for the error when it never got it
PARSER_NEEDS = {
    "weighted": "the log-probabilities of the tokens 'm' and 'M' among the top 5 (logprobs, top_logprobs)",
    "clf": "the log-probabilities of the tokens 'm' and 'M' among the top 5 (logprobs, top_logprobs)",
    "ranking": "a ranking such as [{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]",
    "token": "the single token 'm' or 'M' as its answer",
}


def no_preference_failure(judged: list[dict], judge: ChatClient, parser: str, path: Path) -> RuntimeFailure:
    """The error for a run in which not one judgment gave a preference the ``parser`` can read."""
    sample = " ".join(str(judged[0].get("raw_completion") or "").split())[:120] if judged else ""
    seen = f"the first answer: {sample!r}" if sample else ""
    if parser in ("weighted", "clf"):
        with_lp = sum(1 for a in judged if a.get("raw_logprobs"))
        seen = (f"{with_lp} came with log-probabilities, none with 'm' or 'M' in the top 5" if with_lp
                else "no answer came with log-probabilities")
        fix = ("use a judge model that follows the AlpacaEval annotator prompt (answers 'm' or 'M') on an endpoint "
               "that returns log-probabilities (logprobs, top_logprobs); for an endpoint without them, "
               "--judge-parser token")
    else:
        fix = f"use a judge model that follows the AlpacaEval annotator prompt and answers with {PARSER_NEEDS[parser]}"
    return unscorable(
        "AlpacaEval", judge, path,
        unreadable=f"none of the {len(judged)} judgments gives a preference the {parser!r} parser can read "
        f"(it needs {PARSER_NEEDS[parser]}), so there is no win rate",
        seen=seen, fix=fix, options="--judge-model and --judge-parser",
    )  # fmt: skip


def run_alpaca_eval(
    *,
    model: str,
    model_id: str,
    output: Path,
    reference_spec: str,
    generator_factory: Callable[[], Any] | None,
    judge: ChatClient | None,
    judge_prompt_spec: str = DEFAULT_JUDGE_PROMPT,
    parser: str = "weighted",
    seed: int = DEFAULT_SEED,
    temperature: float = DEFAULT_TEMPERATURE,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = 8,
    limit: int | None = None,
    refresh_sources: bool = False,
    progress=None,
) -> dict[str, Any]:
    if parser not in PARSERS:
        raise UsageError(Problem(where="--judge-parser", message=f"unknown parser {parser!r}", fix="one of " + ", ".join(PARSERS)))
    references = load_reference_outputs(reference_spec, refresh=refresh_sources)
    n_all = len(references)
    if limit is not None:
        references = references[:limit]
    template = load_judge_template(judge_prompt_spec, refresh=refresh_sources) if judge is not None else ""
    output = Path(output)
    outputs = collect_answers(
        output, answer_key, list(range(len(references))), model_id=model_id, generator_factory=generator_factory,
        missing="instructions have no output yet", progress=progress,
        answer=lambda generator, log, advance: generate_outputs(references, generator, log, model_id=model_id,
                                                                temperature=temperature, max_new_tokens=max_new_tokens,
                                                                batch_size=batch_size, on_progress=advance),
    )  # fmt: skip
    model_outputs = [
        {"instruction": references[i]["instruction"], "output": outputs[i]["output"], "generator": model_id,
         **({"dataset": references[i]["dataset"]} if "dataset" in references[i] else {})}
        for i in range(len(references))
    ]  # fmt: skip
    write_results(output / "model_outputs.json", model_outputs)  # AlpacaEval's own format, for its CLI

    result: dict[str, Any] = {
        "benchmark": "alpaca-eval",
        "model": model_id,
        "model_path": str(model),
        "reference": reference_spec,
        "n_instructions": len(references),
        "generation": {"temperature": temperature, "max_new_tokens": max_new_tokens},
        "model_outputs": str(output / "model_outputs.json"),
    }
    if judge is None:
        result["judged"] = False
        return result

    ref_generator = str(references[0].get("generator", "reference"))
    pairs = [
        {"index": i, "instruction": references[i]["instruction"], "output_1": references[i]["output"],
         "output_2": outputs[i]["output"], "generator_1": str(references[i].get("generator", ref_generator)),
         "generator_2": model_id}
        for i in range(len(references))
    ]  # fmt: skip
    log = JsonlLog(output / "annotations.jsonl", annotation_key)
    task = progress.add_task("judging", total=len(pairs)) if progress else None
    annotations = annotate(pairs, judge, log, template=template, parser=parser, seed=seed,
                           on_progress=(lambda: progress.advance(task)) if progress else None)  # fmt: skip
    if progress:
        progress.update(task, completed=len(pairs))
    metrics = score_preferences([a.get("preference") for a in annotations])
    judged = [a for a in annotations if a.get("raw_completion") is not None]  # not the identical-output draws
    if judged and not any(in_range(a.get("preference")) for a in judged):
        raise no_preference_failure(judged, judge, parser, output / "annotations.jsonl")
    lc, why = length_controlled_win_rate(annotations, n_instructions=n_all if limit is None else len(references))
    lengths = [len(a["output_2"]) for a in annotations]
    result.update(metrics)
    result.update(
        {
            "judged": True,
            "length_controlled_win_rate": lc,
            "length_controlled_note": why,
            "avg_length": finite_or_none(sum(lengths) / len(lengths)) if lengths else None,
            "judge_model": judge.model,
            "judge_endpoint": judge.endpoint,
            "judge_parser": parser,
            "judge_prompt": judge_prompt_spec,
            "seed": seed,
            "reference_generator": ref_generator,
            "annotations": str(output / "annotations.jsonl"),
        }
    )
    write_results(output / "results.json", result)
    return result


def results_markdown(result: dict[str, Any]) -> str:
    def f(x, d=2):
        return "–" if x is None else f"{x:.{d}f}"

    lc = result.get("length_controlled_win_rate")
    lines = [
        f"# AlpacaEval: {result.get('model')} vs {result.get('reference_generator')} (judge: {result.get('judge_model')}, {result.get('judge_parser')})",
        "",
        "| metric | value |",
        "|---|---:|",
        f"| win rate | {f(result.get('win_rate'))} ± {f(result.get('standard_error'))} |",
        f"| discrete win rate | {f(result.get('discrete_win_rate'))} |",
        f"| length-controlled win rate | {f(lc) if lc is not None else 'unavailable'} |",
        f"| wins / losses / draws | {result.get('n_wins')} / {result.get('n_wins_base')} / {result.get('n_draws')} |",
        f"| judged / dropped | {result.get('n_total')} / {result.get('n_dropped')} |",
        f"| avg length (chars) | {f(result.get('avg_length'), 0)} |",
    ]
    if lc is None and result.get("length_controlled_note"):
        lines += ["", f"Length-controlled win rate unavailable: {result['length_controlled_note']}."]
    return "\n".join(lines) + "\n"
