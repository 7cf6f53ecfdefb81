"""How the benchmarks turn judgments into numbers, with their own rules.

* MT-Bench (FastChat's ``show_result.py``): ``score_judgments``.
* AlpacaEval (``metrics/helpers.py``, ``metrics/glm_winrate.py``): ``score_preferences``,
  ``length_controlled_win_rate``.

``alignkit.eval.mtbench`` and ``alignkit.eval.alpaca`` run the benchmarks and re-export these.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Iterable

from alignkit.eval.bench import finite_or_none

N_ALPACA_EVAL = 805


# ---------------------------------------------------------------------------------------------
# MT-Bench


def _mean(xs: list[float]) -> float | None:
    return finite_or_none(sum(xs) / len(xs)) if xs else None


def _valid(score: Any) -> bool:
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        return False
    return math.isfinite(score) and score != -1


def score_judgments(judgments: Iterable[dict], questions: list[dict]) -> dict[str, Any]:
    """FastChat's ``show_result.py`` arithmetic over single-grading records.

    Rows whose score is -1 (or missing/NaN) are dropped. ``turn_1``/``turn_2`` are per-turn means,
    ``overall`` the mean of all remaining scores pooled; the same per category.
    """
    category = {q["question_id"]: q["category"] for q in questions}
    kept: list[dict] = []
    total = dropped = 0
    for j in judgments:
        total += 1
        if _valid(j.get("score")):
            kept.append(j)
        else:
            dropped += 1

    def summary(rows: list[dict]) -> dict[str, Any]:
        t1 = [float(r["score"]) for r in rows if r["turn"] == 1]
        t2 = [float(r["score"]) for r in rows if r["turn"] == 2]
        return {"turn_1": _mean(t1), "turn_2": _mean(t2), "overall": _mean(t1 + t2), "n": len(rows)}

    overall = summary(kept)
    cats: dict[str, dict[str, Any]] = {}
    order = list(dict.fromkeys(q["category"] for q in questions))
    for cat in order:
        rows = [r for r in kept if category.get(r["question_id"]) == cat]
        cats[cat] = summary(rows)
    return {
        "turn_1": overall["turn_1"],
        "turn_2": overall["turn_2"],
        "overall": overall["overall"],
        "categories": cats,
        "counts": {
            "judgments": total,
            "scored": len(kept),
            "dropped": dropped,
            "turn_1": sum(1 for r in kept if r["turn"] == 1),
            "turn_2": sum(1 for r in kept if r["turn"] == 2),
        },
        "dropped": dropped,
    }


# ---------------------------------------------------------------------------------------------
# AlpacaEval


def _preferences(values: list[Any]) -> list[float]:
    out = []
    for v in values:
        if v is None or isinstance(v, bool):
            out.append(math.nan)
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = math.nan
        out.append(1.5 if x == 0 else x)  # backward compatibility: 0 meant a draw
    return out


def _describe(preds: list[float], n_draws: int) -> dict[str, Any]:
    valid = [p - 1 for p in preds if not math.isnan(p) and 1 <= p <= 2]
    n = len(valid)
    mean = sum(valid) / n if n else math.nan
    sem = statistics.stdev(valid) / math.sqrt(n) if n > 1 else math.nan
    return {
        "win_rate": finite_or_none(mean * 100),
        "standard_error": finite_or_none(sem * 100),
        "n_wins": sum(1 for p in valid if p > 0.5),
        "n_wins_base": sum(1 for p in valid if p < 0.5),
        "n_draws": n_draws,
        "n_total": n,
    }


def score_preferences(values: list[Any]) -> dict[str, Any]:
    """AlpacaEval's ``get_winrate``: the absolute-scoring win rate plus the discrete win rate."""
    preds = _preferences(values)
    out = _describe(preds, n_draws=sum(1 for p in preds if p == 1.5))
    # ZeroOneScoringRule: 1.5 -> 0, round half to even, 0 -> 1.5 (a draw, worth half)
    discrete = []
    for p in preds:
        if math.isnan(p):
            discrete.append(math.nan)
            continue
        r = float(round(0.0 if p == 1.5 else p))
        discrete.append(1.5 if r == 0 else r)
    out["discrete_win_rate"] = _describe(discrete, n_draws=0)["win_rate"]
    out["n_dropped"] = sum(1 for p in preds if math.isnan(p) or not 1 <= p <= 2)
    return out


def length_controlled_win_rate(annotations: list[dict], *, n_instructions: int) -> tuple[float | None, str | None]:
    """AlpacaEval's GLM length-controlled win rate, or (None, why it is not available)."""
    if n_instructions != N_ALPACA_EVAL:
        return None, (
            f"needs all {N_ALPACA_EVAL} AlpacaEval instructions in their original order (the GLM uses each "
            f"instruction's difficulty); this run has {n_instructions}"
        )
    try:
        from alpaca_eval.metrics.glm_winrate import get_length_controlled_winrate
    except ImportError:
        return None, (
            "needs the alpaca_eval package (pip install alpaca-eval), which fits AlpacaEval's GLM with the "
            "per-instruction difficulty it downloads from the Hugging Face Hub"
        )
    import pandas as pd

    rows = [a for a in annotations if a.get("preference") is not None and not math.isnan(float(a["preference"]))]
    df = pd.DataFrame(
        {
            "instruction": [a["instruction"] for a in rows],
            "output_1": [a["output_1"] for a in rows],
            "output_2": [a["output_2"] for a in rows],
            "generator_1": [a["generator_1"] for a in rows],
            "generator_2": [a["generator_2"] for a in rows],
            "annotator": [a["annotator"] for a in rows],
            "preference": [float(a["preference"]) for a in rows],
        },
        index=[a["index"] for a in rows],
    )
    try:
        metrics = get_length_controlled_winrate(df, save_weights_dir=None, is_add_glm_preference_inplace=False)
    except Exception as e:  # noqa: BLE001 - any failure of the optional GLM is reported, not fatal
        return None, f"AlpacaEval's GLM failed: {type(e).__name__}: {str(e)[:200]}"
    return finite_or_none(metrics.get("length_controlled_winrate")), None


def in_range(pref: Any) -> bool:
    p = _preferences([pref])[0]
    return not math.isnan(p) and 1 <= p <= 2
