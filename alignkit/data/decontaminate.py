"""Finding training rows that share long n-grams with evaluation prompts.

Text is normalized (Unicode NFKC, lower case, words = runs of letters/digits) and compared as word
n-grams (13 by default). An evaluation prompt with fewer than ``n`` words is matched as a whole
word sequence when it has at least ``MIN_SHORT_WORDS`` words; shorter prompts are too generic to
match and are counted as unchecked. Every message of a training row is scanned separately (SFT:
``messages``; DPO: prompt, chosen and rejected), so an n-gram never spans two turns.

Evaluation prompt files are local JSONL: MT-Bench ``question.jsonl`` (``turns``: every turn is a
prompt), AlpacaEval (``instruction``), or any file with a ``prompt`` or ``text`` field.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from alignkit.errors import DataError, Problem

DEFAULT_NGRAM = 13
MIN_SHORT_WORDS = 8
_WORD = re.compile(r"\w+")


def normalize_words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


@dataclass
class EvalPrompt:
    file: str
    line: int  # 1-based line in the file
    ident: str  # question_id / id / line number, plus turn for MT-Bench
    text: str


def load_eval_prompts(path: str | Path) -> list[EvalPrompt]:
    path = Path(path)
    if not path.is_file():
        raise DataError(Problem(where=str(path), message="no such evaluation prompt file", fix="check the path"))
    out: list[EvalPrompt] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise DataError(Problem(where=f"{path}:{lineno}", message=f"invalid JSON: {exc}", fix="fix the line")) from None
            if not isinstance(obj, dict):
                raise DataError(Problem(where=f"{path}:{lineno}", message="expected a JSON object"))
            ident = str(obj.get("question_id", obj.get("id", lineno)))
            if isinstance(obj.get("turns"), list):
                for t, turn in enumerate(obj["turns"]):
                    if isinstance(turn, str):
                        out.append(EvalPrompt(str(path), lineno, f"{ident}/turn{t + 1}", turn))
                continue
            for key in ("instruction", "prompt", "text"):
                if isinstance(obj.get(key), str):
                    text = obj[key]
                    if key == "instruction" and isinstance(obj.get("input"), str) and obj["input"].strip():
                        text = text + "\n" + obj["input"]
                    out.append(EvalPrompt(str(path), lineno, ident, text))
                    break
            else:
                raise DataError(
                    Problem(
                        where=f"{path}:{lineno}",
                        message="no prompt field (expected 'turns' (MT-Bench), 'instruction' (AlpacaEval), 'prompt' or 'text')",
                        fix="use one of those fields",
                    )
                )
    if not out:
        raise DataError(Problem(where=str(path), message="no prompts in this file"))
    return out


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class NgramIndex:
    """Word n-grams of evaluation prompts, keyed for a fast scan of training text."""

    def __init__(self, prompts: list[EvalPrompt], n: int = DEFAULT_NGRAM):
        if n < 1:
            raise ValueError("n must be >= 1")
        self.n = n
        self.prompts = prompts
        self.grams: dict[tuple, int] = {}  # gram -> index of the first prompt that has it
        self.starts: dict[str, set[int]] = {}  # first word -> gram lengths starting with it
        self.unchecked = 0
        short_min = min(n, MIN_SHORT_WORDS)
        for pi, p in enumerate(prompts):
            words = normalize_words(p.text)
            if len(words) >= n:
                grams = (tuple(words[i : i + n]) for i in range(len(words) - n + 1))
            elif len(words) >= short_min:
                grams = iter([tuple(words)])
            else:
                self.unchecked += 1
                continue
            for g in grams:
                self.grams.setdefault(g, pi)
                self.starts.setdefault(g[0], set()).add(len(g))

    def find(self, text: str) -> tuple[int, str] | None:
        """(prompt index, matched n-gram) of the first match in ``text``, or None."""
        if not self.grams or not text:
            return None
        words = normalize_words(text)
        starts, grams = self.starts, self.grams
        for i, w in enumerate(words):
            lengths = starts.get(w)
            if lengths:
                for L in lengths:
                    g = tuple(words[i : i + L])
                    if len(g) == L and g in grams:
                        return grams[g], " ".join(g)
        return None


def row_texts(task: str, row: dict) -> list[str]:
    from alignkit.data.validate import task_columns

    cols = task_columns(task)
    out = []
    for c in cols:
        value = row.get(c)
        if isinstance(value, str):  # CPT: plain text
            out.append(value)
            continue
        for m in value or []:
            if isinstance(m, dict) and isinstance(m.get("content"), str):
                out.append(m["content"])
    return out


_WORK: dict = {}


def _scan_range(args):
    start, stop = args
    return _scan(_WORK["table"], _WORK["task"], _WORK["index"], start, stop)


def _scan(table, task, index: NgramIndex, start: int, stop: int):
    from alignkit.data.validate import task_columns

    cols = list(task_columns(task))
    part = table.select(cols).slice(start, stop - start)
    data = {c: part.column(c).to_pylist() for c in cols}
    hits = []
    for j in range(stop - start):
        row = {c: data[c][j] for c in cols}
        for text in row_texts(task, row):
            found = index.find(text)
            if found:
                hits.append((start + j, found[0], found[1]))
                break
    return start, hits


@dataclass
class Contamination:
    """Which rows of a mixed split match evaluation prompts."""

    ngram: int
    eval_files: list[dict]  # {"path", "sha256", "prompts", "unchecked_short"}
    positions: list[int]  # positions in the mixed split with a match
    matches: list[dict]  # one per flagged (source, row): source, row, eval, gram, copies
    per_source: dict[str, dict] = field(default_factory=dict)  # label -> {"rows_flagged", "copies"}

    def as_json(self, *, dropped: bool, cap: int = 50) -> dict:
        return {
            "ngram": self.ngram,
            "eval_files": self.eval_files,
            "rows_flagged": len(self.matches),
            "copies_flagged": len(self.positions),
            "dropped": dropped,
            "per_source": self.per_source,
            "matches": self.matches[:cap],
            "matches_not_shown": max(0, len(self.matches) - cap),
        }


def find_contamination(
    table,
    task: str,
    indices,
    sources: list,
    eval_paths: list[str],
    *,
    ngram: int = DEFAULT_NGRAM,
    workers: int | None = None,
    progress=None,
    batch: int = 2000,
) -> Contamination:
    """Scan a mixed split (``table`` with provenance ``indices``: SplitIndices) for eval n-grams.

    ``sources`` are the DataSource entries of the mixture (for naming)."""
    from alignkit.data.sources import source_label

    prompts: list[EvalPrompt] = []
    files = []
    for p in eval_paths:
        ps = load_eval_prompts(p)
        prompts.extend(ps)
        files.append({"path": str(p), "sha256": file_sha256(p), "prompts": len(ps)})
    index = NgramIndex(prompts, ngram)
    # per-file unchecked counts
    for f in files:
        f["unchecked_short"] = sum(
            1 for p in prompts if p.file == f["path"] and len(normalize_words(p.text)) < min(ngram, MIN_SHORT_WORDS)
        )
    n = table.num_rows
    ranges = [(s, min(s + batch, n)) for s in range(0, n, batch)]
    bar = progress.task("decontaminating", n) if progress is not None else None
    hits: list = []
    if (workers or 1) > 1 and len(ranges) > 1:
        import multiprocessing as mp

        if "fork" in mp.get_all_start_methods():
            _WORK.update(table=table, task=task, index=index)
            try:
                with mp.get_context("fork").Pool(workers) as pool:
                    for start, h in pool.imap(_scan_range, ranges):
                        hits.extend(h)
                        if bar:
                            bar.advance(min(batch, n - start))
            finally:
                _WORK.clear()
            ranges = []
    for s, e in ranges:
        hits.extend(_scan(table, task, index, s, e)[1])
        if bar:
            bar.advance(e - s)
    hits.sort()
    # group copies of the same (source, row)
    flagged: dict[tuple, dict] = {}
    positions = []
    for pos, pi, gram in hits:
        positions.append(pos)
        key = (int(indices.src[pos]), int(indices.row[pos]))
        if key in flagged:
            flagged[key]["copies"] += 1
            continue
        p = prompts[pi]
        flagged[key] = {
            "source": source_label(sources[key[0]]),
            "row": key[1],
            "eval": f"{Path(p.file).name}:{p.line} ({p.ident})",
            "ngram": gram,
            "copies": 1,
        }
    per_source: dict[str, dict] = {}
    for (si, _row), m in flagged.items():
        d = per_source.setdefault(m["source"], {"rows_flagged": 0, "copies": 0})
        d["rows_flagged"] += 1
        d["copies"] += m["copies"]
    return Contamination(ngram, files, positions, list(flagged.values()), per_source)


def contamination_report(data, task: str, eval_files: list[str], *, ngram: int = DEFAULT_NGRAM, console=None) -> dict:
    """Mix ``data`` and report (as JSON) the train rows that overlap ``eval_files``, without dropping them
    (``alignkit mix decontaminate`` without --drop; ``build_mixture`` drops them)."""
    from alignkit.data.mixer import mix
    from alignkit.data.progress import progress_for

    res = mix(data, task, console=console)
    with progress_for(console) as prog:
        cont = find_contamination(
            res.tables["train"], task, res.indices["train"], list(data.mixture),
            eval_files, ngram=ngram, workers=data.preprocessing_num_workers, progress=prog,
        )
    report = cont.as_json(dropped=False)
    report["train_rows"] = res.tables["train"].num_rows
    return report
