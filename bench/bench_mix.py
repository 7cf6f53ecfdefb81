"""Benchmark: `alignkit mix build` against a handbook-style data pipeline, side by side.

    python bench/bench_mix.py [--rows 200000] [--workers 2] [--repeat 3] [--workdir /tmp/alignkit-bench-mix]

Generates an ultrachat_200k-shaped SFT set in local JSONL shards (prompt, prompt_id, messages with
1-4 user/assistant exchanges, log-normal message lengths with a long tail) and a local word-level
tokenizer carrying the Zephyr template, then times, on the same files, in the same process:

* handbook: ``datasets.load_dataset("json")`` per shard (fresh cache each round),
  ``concatenate_datasets``, shuffle, and a single-process ``map`` of
  ``tokenizer.apply_chat_template(..., tokenize=False)`` into a ``text`` column, as the handbook's
  run_sft.py did (no validation; the datasets cache is all it writes);
* alignkit: ``build_mixture`` (read, validate every row, mix, render every row with the template,
  write parquet shards, hash, manifest) into a fresh directory;
* alignkit cached: the same build again, in-process and as a fresh CLI process (what a user waits).

datasets and transformers (which imports torch) are imported before anything is timed, so neither
side pays for imports. Prints each round, the median speed-up (target >= 3x) and the cached re-run
(target <= 2 s). Not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WORDS = (
    "the of and to in is that for it as with was on be by this are or from at which an have not but "
    "they more one can all their has been were if will there would so about what when up out into "
    "model data train chat answer question help explain code write story list reason step result "
    "value first second because however example python function table summary important consider"
).split()


def _text(rng: random.Random, nwords: int) -> str:
    return " ".join(rng.choices(WORDS, k=nwords)).capitalize() + "."


def _length(rng: random.Random, median: float, cap: int) -> int:
    # log-normal: most messages short, a long tail of very long ones (like ultrachat replies)
    return max(1, min(cap, int(rng.lognormvariate(0, 1.0) * median)))


def generate(workdir: Path, rows: int, shards: int, seed: int = 0) -> list[Path]:
    """Ultrachat-shaped JSONL shards (train_sft-*), reused when already there."""
    d = workdir / "data"
    marker = d / f".done-{rows}-{shards}-{seed}"
    files = [d / f"train_sft-{i:05d}-of-{shards:05d}.jsonl" for i in range(shards)]
    if marker.exists():
        return files
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    rng = random.Random(seed)
    per = [rows // shards + (1 if i < rows % shards else 0) for i in range(shards)]
    t0 = time.perf_counter()
    for f, n in zip(files, per):
        with open(f, "w", encoding="utf-8") as fh:
            for _ in range(n):
                turns = min(4, 1 + int(rng.expovariate(0.9)))
                msgs = []
                for _t in range(turns):
                    msgs.append({"role": "user", "content": _text(rng, _length(rng, 25, 600))})
                    msgs.append({"role": "assistant", "content": _text(rng, _length(rng, 90, 2500))})
                prompt = msgs[0]["content"]
                fh.write(json.dumps({
                    "prompt": prompt,
                    "prompt_id": hashlib.sha256(prompt.encode()).hexdigest(),
                    "messages": msgs,
                }) + "\n")
    marker.write_text("ok")
    mib = sum(f.stat().st_size for f in files) / 2**20
    print(f"generated {rows:,} rows in {shards} shards ({mib:,.0f} MiB) in {time.perf_counter() - t0:.1f} s")
    return files


def make_tokenizer(workdir: Path) -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from alignkit.data.chat import builtin_template

    out = workdir / "tokenizer"
    if (out / "tokenizer_config.json").exists():
        return str(out)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    tok.chat_template = builtin_template("zephyr")
    tok.save_pretrained(str(out))
    return str(out)


def handbook_pipeline(files: list[Path], tokenizer_dir: str, cache_dir: Path) -> tuple[float, float, int]:
    """The handbook's get_datasets + apply_chat_template, single process. (wall s, CPU s, rows)"""
    import datasets
    from transformers import AutoTokenizer

    t0, c0 = time.perf_counter(), time.process_time()
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    parts = [datasets.load_dataset("json", data_files=str(f), split="train", cache_dir=str(cache_dir)) for f in files]
    ds = datasets.concatenate_datasets(parts).shuffle(seed=42)
    columns = ds.column_names

    def apply_chat_template(example, tokenizer):
        example["text"] = tokenizer.apply_chat_template(example["messages"], tokenize=False)
        return example

    ds = ds.map(apply_chat_template, fn_kwargs={"tokenizer": tok}, remove_columns=columns, desc="Applying chat template")
    return time.perf_counter() - t0, time.process_time() - c0, ds.num_rows


def _data_config(files: list[Path], workers: int):
    from alignkit.config.data import DataConfig

    return DataConfig(
        mixture=[{"path": str(files[0].parent / "train_sft-*.jsonl"), "split": "train_sft"}],
        preprocessing_num_workers=workers,
    )


def alignkit_build(files: list[Path], tokenizer_dir: str, out: Path, workers: int) -> tuple[float, float, bool, int]:
    """(wall s, CPU s of this process and its threads, cached?, rows)"""
    from alignkit.data.build import build_mixture

    data = _data_config(files, workers)
    t0, c0 = time.perf_counter(), time.process_time()
    res = build_mixture(data, "sft", out, tokenizer_name=tokenizer_dir)
    return time.perf_counter() - t0, time.process_time() - c0, res.cached, res.manifest["splits"]["train"]["rows"]


def cli_cached_run(workdir: Path, files: list[Path], tokenizer_dir: str, out: Path, workers: int) -> float:
    cfg = workdir / "data.yaml"
    cfg.write_text(
        "data:\n"
        f"  mixture:\n    - {{path: '{files[0].parent / 'train_sft-*.jsonl'}', split: train_sft}}\n"
        f"  preprocessing_num_workers: {workers}\n"
    )
    args = ["build", "--task", "sft", "--data", str(cfg), "--tokenizer", tokenizer_dir, "--output", str(out), "--json"]
    code = f"from alignkit.commands.mix import app; app({args!r})"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"CLI run failed:\n{proc.stderr}")
    if not json.loads(proc.stdout)["cached"]:
        raise SystemExit("the CLI re-run was not a cache hit")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="preprocessing_num_workers for alignkit")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of both pipelines; medians are reported")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "alignkit-bench-mix")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    # both pipelines need datasets and transformers (which imports torch): import them before
    # timing anything, so neither pays the ~5-10 s of imports inside its measurement
    import datasets
    from transformers import AutoTokenizer  # noqa: F401

    datasets.disable_progress_bars()
    args.workdir.mkdir(parents=True, exist_ok=True)
    files = generate(args.workdir, args.rows, args.shards)
    tok = make_tokenizer(args.workdir)
    for f in files:  # the same page-cache state for both pipelines
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass
    cache = args.workdir / "hf-cache"
    out = args.workdir / "mix"

    rounds = []
    rows = 0
    for r in range(args.repeat):
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        hb_s, hb_cpu, rows = handbook_pipeline(files, tok, cache)
        ak_s, ak_cpu, cached, ak_rows = alignkit_build(files, tok, out, args.workers)
        assert not cached and ak_rows == rows, (cached, ak_rows, rows)
        rounds.append((hb_s, ak_s, hb_cpu, ak_cpu))
        print(f"round {r + 1}: handbook {hb_s:6.1f} s wall {hb_cpu:6.1f} s CPU | alignkit {ak_s:6.1f} s wall "
              f"{ak_cpu:6.1f} s CPU | speed-up {hb_s / ak_s:4.2f}x")
    hb_s, ak_s, hb_cpu, ak_cpu = (sorted(x)[len(x) // 2] for x in zip(*rounds))
    print(f"handbook-style pipeline : {hb_s:7.1f} s  ({rows:,} rows: load_dataset json, concatenate, shuffle, "
          "single-process apply_chat_template map)")
    print(f"alignkit mix build      : {ak_s:7.1f} s  ({rows:,} rows: read, validate every row, mix, render, "
          f"write parquet + manifest, hash; {args.workers} workers)")
    ratio = hb_s / ak_s
    print(f"speed-up (median wall)  : {ratio:7.2f} x  (target >= 3x)  {'OK' if ratio >= 3 else 'BELOW TARGET'}"
          f"   [median CPU time ratio: {hb_cpu / ak_cpu:.2f}x]")
    again_s, _, cached, _ = alignkit_build(files, tok, out, args.workers)
    assert cached
    cli_s = cli_cached_run(args.workdir, files, tok, out, args.workers)
    print(f"cached re-run           : {again_s:7.2f} s in-process, {cli_s:.2f} s as a fresh CLI process "
          f"(target <= 2 s)  {'OK' if cli_s <= 2 else 'ABOVE TARGET'}")
    t0 = time.perf_counter()
    handbook_pipeline(files, tok, cache)
    print(f"(the handbook pipeline re-run with its datasets cache warm: {time.perf_counter() - t0:.1f} s)")
    mib = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"(build: {out}, {mib:,.0f} MiB; machine: {os.cpu_count()} CPUs, load average {load:.1f} — "
          "wall times on a busy machine are noisy)")


if __name__ == "__main__":
    main()
