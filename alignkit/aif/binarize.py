"""``aif binarize``: one (chosen, rejected) pair per prompt from rated completions.

The rules, for one prompt (everything exact and seeded; ``EPS`` = 1e-9 absorbs float rounding in
margins only):

1. Its *rated* completions (every aspect has a valid rating; score = mean of the ratings), in the
   order (model id, sample). Fewer than two → skipped: ``fewer_than_two_rated``.
2. ``best`` = the highest score; ``top`` = those with it; ``lower`` = those strictly below it.
   No ``lower`` (every rated completion has the best score) → skipped: ``tie``.
3. ``eligible`` = ``lower`` with ``best - score >= min_margin``. None → skipped: ``below_min_margin``.
4. ``rng = random.Random(derive_seed(seed, "pair", prompt_id))`` (one stream per prompt, so a
   prompt's pair does not depend on the other prompts).
5. chosen = ``top[rng.randrange(len(top))]`` when several share the best score, else ``top[0]``.
6. Completions whose text equals the chosen one's are dropped from ``eligible``; none left →
   skipped: ``identical``.
7. ``best-vs-random`` (Zephyr, ultrafeedback_binarized): rejected =
   ``eligible[rng.randrange(len(eligible))]`` when more than one, else ``eligible[0]``.
   ``best-vs-worst``: the eligible completions with the lowest score, one of them drawn the same way.

Rows (every split has ultrafeedback_binarized's columns): ``prompt`` (str), ``prompt_id``,
``chosen``/``rejected`` (``[user, assistant]`` message lists), ``messages`` (= chosen),
``score_chosen``, ``score_rejected``; sorted by ``prompt_id``. ``test_prefs`` is a seeded sample of
``--test-size`` pairs (``manifest.split_test``); ``train_sft``/``test_sft`` hold the same rows as
``train_prefs``/``test_prefs`` (the best completion as SFT data), so no test prompt is trained on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.aif.generate import completion_key, load_completions
from alignkit.aif.judge import completion_scores, judges_in, rating_key
from alignkit.aif.manifest import (
    PAIRS,
    WorkDir,
    check_output,
    derive_seed,
    load_log,
    preference_features,
    sha256_file,
    split_test,
    write_dataset_dir,
)
from alignkit.errors import DataError, Problem, UsageError

STRATEGIES = ("best-vs-random", "best-vs-worst")
EPS = 1e-9
SKIP_REASONS = ("fewer_than_two_rated", "tie", "below_min_margin", "identical")
SKIPPED = "skipped.jsonl"
PLOT = "scores.png"


@dataclass(frozen=True)
class Candidate:
    model: str
    sample: int
    text: str
    score: float


def choose_pair(
    candidates: list[Candidate], *, prompt_id: str, strategy: str = "best-vs-random", seed: int = 42, min_margin: float = 0.0
) -> tuple[Candidate | None, Candidate | None, str | None]:
    """(chosen, rejected, None) or (None, None, skip reason), by the rules in the module docstring."""
    if strategy not in STRATEGIES:
        raise UsageError(Problem(where="--strategy", message=f"unknown strategy {strategy!r}", fix=" or ".join(STRATEGIES)))
    cands = sorted(candidates, key=lambda c: (c.model, c.sample))
    if len(cands) < 2:
        return None, None, "fewer_than_two_rated"
    best = max(c.score for c in cands)
    top = [c for c in cands if c.score == best]
    lower = [c for c in cands if c.score < best]
    if not lower:
        return None, None, "tie"
    eligible = [c for c in lower if best - c.score >= min_margin - EPS]
    if not eligible:
        return None, None, "below_min_margin"
    rng = random.Random(derive_seed(seed, "pair", prompt_id))
    chosen = top[rng.randrange(len(top))] if len(top) > 1 else top[0]
    eligible = [c for c in eligible if c.text.strip() != chosen.text.strip()]
    if not eligible:
        return None, None, "identical"
    if strategy == "best-vs-worst":
        worst = min(c.score for c in eligible)
        eligible = [c for c in eligible if c.score == worst]
    rejected = eligible[rng.randrange(len(eligible))] if len(eligible) > 1 else eligible[0]
    return chosen, rejected, None


def _row(prompt: str, pid: str, chosen: Candidate, rejected: Candidate) -> dict[str, Any]:
    user = {"role": "user", "content": prompt}
    c = [user, {"role": "assistant", "content": chosen.text}]
    r = [user, {"role": "assistant", "content": rejected.text}]
    return {
        "prompt": prompt,
        "prompt_id": pid,
        "chosen": c,
        "rejected": r,
        "messages": c,
        "score_chosen": float(chosen.score),
        "score_rejected": float(rejected.score),
    }


def pick_judge(work: WorkDir, judge: str | None) -> str:
    names = judges_in(work)
    if judge is not None:
        if judge not in names:
            raise UsageError(
                Problem(
                    where=f"--judge-model {judge}",
                    message=f"no ratings by this judge in {work.path}" + (f" (there are: {', '.join(names)})" if names else ""),
                    fix="run `alignkit aif judge` with it first" if not names else "pick one of those",
                )
            )
        return judge
    if not names:
        raise DataError(
            Problem(where=f"--input {work.path}", message="no ratings yet", fix=f"run `alignkit aif judge --input {work.path} ...` first")
        )
    if len(names) > 1:
        raise UsageError(
            Problem(where="--judge-model", message=f"{work.path} has ratings by several judges: {', '.join(names)}", fix="choose one with --judge-model")
        )
    return names[0]


def binarize(
    work: WorkDir,
    out: str | Path,
    *,
    strategy: str = "best-vs-random",
    seed: int = 42,
    min_margin: float = 0.0,
    test_size: float | int = 0.05,
    judge: str | None = None,
    aspects: list[str] | None = None,
    overwrite: bool = False,
    plot: bool = True,
) -> dict:
    """Pairs from ``work``'s rated completions, written to ``out`` as a DatasetDict; returns its manifest."""
    if strategy not in STRATEGIES:
        raise UsageError(Problem(where="--strategy", message=f"unknown strategy {strategy!r}", fix=" or ".join(STRATEGIES)))
    if min_margin < 0:
        raise UsageError(Problem(where="--min-margin", message="must be >= 0"))
    out = Path(out)
    if out.resolve() == work.path.resolve():
        raise UsageError(Problem(where=f"--output {out}", message="is the work directory", fix="write the dataset elsewhere"))
    check_output(out, overwrite=overwrite)
    work.require_completions()
    judge = pick_judge(work, judge)
    manifest_w = work.read_manifest()
    jentry = (manifest_w.get("judges") or {}).get(judge) or {}
    known = list(jentry.get("aspects") or [])
    ratings = list(load_log(work.ratings, rating_key).values())
    if not known:
        known = sorted({r["aspect"] for r in ratings if r.get("judge") == judge})
    if aspects is None:
        aspects = known
    else:
        missing = [a for a in aspects if a not in known]
        if missing:
            raise UsageError(
                Problem(where="--aspects", message=f"{judge} has not rated {', '.join(missing)}", fix=f"use some of: {', '.join(known)}")
            )
    completions = load_completions(work)
    scores = completion_scores(completions, ratings, judge, aspects)

    by_prompt: dict[str, list[dict]] = {}
    prompt_text: dict[str, str] = {}
    for c in completions:
        by_prompt.setdefault(c["prompt_id"], []).append(c)
        prompt_text[c["prompt_id"]] = c["prompt"]
    status_counts = {"rated": 0, "unrated": 0, "invalid": 0}
    per_model: dict[str, dict[str, Any]] = {}
    for c in completions:
        s = scores[completion_key(c)]
        status_counts[s["status"]] += 1
        pm = per_model.setdefault(c["model"], {"completions": 0, "rated": 0, "score_sum": 0.0, "chosen": 0, "rejected": 0})
        pm["completions"] += 1
        if s["score"] is not None:
            pm["rated"] += 1
            pm["score_sum"] += s["score"]

    rows: list[dict] = []
    provenance: list[dict] = []
    skipped: list[dict] = []
    for pid in sorted(by_prompt):
        cands = [
            Candidate(c["model"], int(c["sample"]), c["completion"], scores[completion_key(c)]["score"])
            for c in by_prompt[pid]
            if scores[completion_key(c)]["score"] is not None
        ]
        chosen, rejected, reason = choose_pair(cands, prompt_id=pid, strategy=strategy, seed=seed, min_margin=min_margin)
        if reason is not None:
            skipped.append({"prompt_id": pid, "reason": reason, "rated": len(cands), "completions": len(by_prompt[pid])})
            continue
        assert chosen is not None and rejected is not None
        rows.append(_row(prompt_text[pid], pid, chosen, rejected))
        per_model[chosen.model]["chosen"] += 1
        per_model[rejected.model]["rejected"] += 1
        provenance.append(
            {
                "prompt_id": pid,
                "chosen": {"model": chosen.model, "sample": chosen.sample, "score": chosen.score},
                "rejected": {"model": rejected.model, "sample": rejected.sample, "score": rejected.score},
                "margin": chosen.score - rejected.score,
            }
        )
    if not rows:
        reasons = _count(skipped)
        raise DataError(
            Problem(
                where=f"--input {work.path}",
                message="no preference pair: every prompt was skipped ("
                + ", ".join(f"{k}: {v}" for k, v in reasons.items())
                + ")",
                fix="generate more (or more diverse) completions per prompt, lower --min-margin, or judge the rest",
            )
        )
    test_ids = split_test([r["prompt_id"] for r in rows], test_size, seed)
    train = [r for r in rows if r["prompt_id"] not in test_ids]
    test = [r for r in rows if r["prompt_id"] in test_ids]
    for p in provenance:
        p["split"] = "test" if p["prompt_id"] in test_ids else "train"
    for pm in per_model.values():
        pm["mean_score"] = pm.pop("score_sum") / pm["rated"] if pm["rated"] else None

    manifest = {
        "kind": "preferences",
        "input": {
            "work_dir": str(work.path.resolve()),
            "completions_sha256": sha256_file(work.completions),
            "ratings_sha256": sha256_file(work.ratings),
        },
        "prompts": manifest_w.get("prompts", []),
        "models": manifest_w.get("models", {}),
        "judge": {"model": judge, **{k: v for k, v in jentry.items() if k != "counts"}, "aspects_used": aspects},
        "settings": {
            "strategy": strategy,
            "seed": seed,
            "min_margin": min_margin,
            "test_size": test_size,
            "score": "mean of the aspect ratings; a completion counts only when every aspect has a valid 1-5 rating",
        },
        "counts": {
            "prompts": len(by_prompt),
            "completions": len(completions),
            "completions_rated": status_counts["rated"],
            "completions_unrated": status_counts["unrated"],
            "completions_invalid_rating": status_counts["invalid"],
            "pairs": len(rows),
            "skipped": _count(skipped),
        },
        "per_model": per_model,
    }

    def extra(tmp: Path) -> None:
        import json

        with open(tmp / PAIRS, "w", encoding="utf-8") as f:
            for p in provenance:
                f.write(json.dumps(p, ensure_ascii=False) + "\n")
        with open(tmp / SKIPPED, "w", encoding="utf-8") as f:
            for s in skipped:
                f.write(json.dumps(s, ensure_ascii=False) + "\n")
        if plot:
            try:
                plot_scores(tmp / PLOT, per_model, provenance)
                manifest["plot"] = PLOT
            except Exception as e:  # noqa: BLE001 - a plot must never sink the dataset
                manifest["plot"] = f"not drawn: {type(e).__name__}: {e}"

    splits = {"train_prefs": train, "test_prefs": test, "train_sft": train, "test_sft": test}
    return write_dataset_dir(out, splits, preference_features(), manifest, extra=extra)


def _count(skipped: list[dict]) -> dict[str, int]:
    out = {r: 0 for r in SKIP_REASONS}
    for s in skipped:
        out[s["reason"]] = out.get(s["reason"], 0) + 1
    return out


def plot_scores(path: Path, per_model: dict[str, dict], provenance: list[dict]) -> None:
    """Mean score per model (with how often it was chosen/rejected) and the pairs' score margins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = sorted(per_model)
    means = [per_model[m]["mean_score"] or 0.0 for m in names]
    bars = ax1.bar(range(len(names)), means, color="#4c72b0")
    for b, m in zip(bars, names):
        pm = per_model[m]
        ax1.annotate(f"chosen {pm['chosen']}\nrejected {pm['rejected']}", (b.get_x() + b.get_width() / 2, b.get_height()),
                     ha="center", va="bottom", fontsize=8)  # fmt: skip
    ax1.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax1.set_ylim(0, 5.9)
    ax1.set_ylabel("mean score (1-5)")
    ax1.set_title("completions by model")
    margins = [p["margin"] for p in provenance]
    ax2.hist(margins, bins=min(20, max(1, len(set(margins)))), color="#55a868")
    ax2.set_xlabel("score_chosen - score_rejected")
    ax2.set_ylabel("pairs")
    ax2.set_title(f"{len(margins)} preference pairs")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
