"""``aif distill``: the dSFT step alone — a teacher's answer to every prompt as ``messages`` rows.

The answers are generated exactly as ``aif generate`` does (one sample per prompt, into a work
directory, resumable), then written as a DatasetDict with ``train_sft``/``test_sft`` in
ultrachat_200k's columns (``prompt``, ``prompt_id``, ``messages`` = [user, assistant]), sorted by
``prompt_id``; ``test_sft`` is a seeded sample of ``--test-size`` rows. Empty answers are left out
and counted; answers cut off at ``max_new_tokens`` are kept and counted (``--drop-truncated`` leaves
them out).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from alignkit.aif.generate import EndpointOptions, LocalOptions, generate_completions
from alignkit.aif.manifest import WorkDir, check_output, load_log, sft_features, sha256_file, split_test, write_dataset_dir
from alignkit.aif.models import ModelSpec
from alignkit.aif.progress import Reporter
from alignkit.aif.prompts import Prompt
from alignkit.errors import DataError, Problem


def distill(
    prompts: list[Prompt],
    prompts_info: dict,
    teacher: ModelSpec,
    work: WorkDir,
    out: str | Path,
    *,
    test_size: float | int = 0.05,
    seed: int = 42,
    drop_truncated: bool = False,
    local: LocalOptions | None = None,
    endpoint: EndpointOptions | None = None,
    reporter: Reporter | None = None,
    overwrite: bool = False,
    sleep=None,
) -> tuple[dict, dict]:
    """Teacher answers → ``out``; returns (dataset manifest, generation summary)."""
    from alignkit.aif.generate import completion_key

    out = Path(out)
    check_output(out, overwrite=overwrite)
    teacher = replace(teacher, sampling=replace(teacher.sampling, n=1))
    summary = generate_completions(prompts, prompts_info, [teacher], work, local=local, endpoint=endpoint, reporter=reporter, sleep=sleep)
    log = load_log(work.completions, completion_key)
    rows, empty, truncated = [], 0, 0
    for p in sorted(prompts, key=lambda p: p.id):
        rec = log.get((p.id, teacher.id, 0))
        if rec is None:  # cannot happen after a successful generate; be loud if it does
            raise DataError(Problem(where=str(work.completions), message=f"no answer for prompt {p.id}", fix="re-run the command"))
        text = rec["completion"]
        if not text.strip():
            empty += 1
            continue
        if rec.get("finish_reason") == "length":
            truncated += 1
            if drop_truncated:
                continue
        rows.append(
            {"prompt": p.text, "prompt_id": p.id, "messages": [{"role": "user", "content": p.text}, {"role": "assistant", "content": text}]}
        )
    if not rows:
        raise DataError(
            Problem(where=teacher.origin, message="the teacher gave no usable answer", fix="check the teacher model and --max-new-tokens")
        )
    test_ids = split_test([r["prompt_id"] for r in rows], test_size, seed)
    manifest = {
        "kind": "sft",
        "input": {"work_dir": str(work.path.resolve()), "completions_sha256": sha256_file(work.completions)},
        "prompts": prompts_info,
        "teacher": teacher.record(),
        "settings": {"test_size": test_size, "seed": seed, "drop_truncated": drop_truncated},
        "counts": {
            "prompts": len(prompts),
            "rows": len(rows),
            "empty_answers_dropped": empty,
            "truncated_answers": truncated,
            "truncated_dropped": truncated if drop_truncated else 0,
        },
    }
    splits = {
        "train_sft": [r for r in rows if r["prompt_id"] not in test_ids],
        "test_sft": [r for r in rows if r["prompt_id"] in test_ids],
    }
    return write_dataset_dir(out, splits, sft_features(), manifest), summary
