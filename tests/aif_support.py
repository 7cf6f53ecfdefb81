"""Helpers for the AI-feedback tests: hand-made work directories, a rating judge, the CLI root.

The fake OpenAI-compatible server itself is ``tests.eval_support.FakeJudge`` (reused, not copied).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

from alignkit.aif.judge import ASPECTS, parse_rating
from alignkit.aif.manifest import COMPLETIONS, RATINGS, WORK_MANIFEST, prompt_id
from tests.eval_support import user_text

PROMPTS = ["Name something.", "Say a word.", "Give me one word.", "Tell me a word.", "Pick a word.", "Name a thing."]


def write_prompts(path: Path, prompts: list[str] | None = None, extra: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for p in prompts or PROMPTS:
            f.write(json.dumps({"prompt": p, **(extra or {})}) + "\n")
    return path


def write_work(d: Path, table: dict[str, dict[tuple[str, int], tuple[str, list]]], *, judge: str | None = "j",
               aspects: tuple[str, ...] = ASPECTS) -> Path:
    """A work directory by hand: ``table[prompt][(model, sample)] = (completion text, ratings)``; a
    rating is a number (written as ``[[N]]``), a judgment string, or None (not rated yet).
    ``judge=None``: completions only (no ratings, no judge in aif.json)."""
    d.mkdir(parents=True, exist_ok=True)
    comps, rats = [], []
    for prompt, entries in table.items():
        pid = prompt_id(prompt)
        for (model, sample), (text, ratings) in entries.items():
            comps.append({"prompt_id": pid, "model": model, "sample": sample, "prompt": prompt, "completion": text,
                          "finish_reason": "stop", "completion_tokens": 3, "backend": "test", "tstamp": time.time()})  # fmt: skip
            for aspect, r in zip(aspects, ratings):
                if r is None:
                    continue
                judgment = r if isinstance(r, str) else f"Because. Rating: [[{r}]]"
                rating, status, raw = parse_rating(judgment)
                rats.append({"prompt_id": pid, "model": model, "sample": sample, "aspect": aspect, "judge": judge,
                             "rating": rating, "status": status, "raw_rating": raw, "judgment": judgment})  # fmt: skip
    (d / COMPLETIONS).write_text("".join(json.dumps(c) + "\n" for c in comps), encoding="utf-8")
    if judge is None:
        (d / WORK_MANIFEST).write_text(json.dumps({"models": {}}), encoding="utf-8")
        return d
    (d / RATINGS).write_text("".join(json.dumps(r) + "\n" for r in rats), encoding="utf-8")
    (d / WORK_MANIFEST).write_text(json.dumps({"models": {}, "judges": {judge: {"aspects": list(aspects)}}}), encoding="utf-8")
    return d


def hashed_rating(body: dict) -> str:
    """A judge that rates by a hash of its request (deterministic, spread over 1-5)."""
    h = int(hashlib.sha256(user_text(body).encode()).hexdigest(), 16)
    return f"The response is what it is. Rating: [[{h % 5 + 1}]]"


RESPONSE = re.compile(r"\[Response\]\n(.*)\n\[End of response\]", re.S)


def response_of(body: dict) -> str:
    m = RESPONSE.search(user_text(body))
    return m.group(1) if m else ""


def root():
    """The real CLI app (``alignkit aif`` is registered in alignkit.cli)."""
    from alignkit import cli

    return cli.app
