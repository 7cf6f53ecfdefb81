#!/usr/bin/env python
"""Useful tokens per second: SFT batching settings on chat-like, long-tailed lengths (and what DPO allows).

    python bench/bench_tokens.py [--steps 16] [--max-length 512] [--batch 8] [--hidden 128] [--json PATH]
    python bench/bench_tokens.py --device cuda --hidden 768 --layers 14 --max-length 1024 --steps 64 --no-dpo
        (one CUDA GPU, bf16, a ~100M-parameter Llama: what scripts/gpu-check.sh runs)

Data: token sequences shaped like UltraChat-200k conversations rendered with a chat template — a
log-normal length distribution (median 0.4 x max_length, sigma 0.8: most rows short, a long tail, ~13 %
longer than max_length and truncated), 1-4 user/assistant turns, learnable content (a sparse Markov chain).
Model: a small Llama (random init, same weights for every setting), fp32 on CPU, one torch thread (--threads).
With --device cuda: bf16 weights and bf16 training on the GPU (what alignkit's GPU profiles and the handbook
use), the attention kernel both would pick (flash_attention_2 when flash-attn is installed, else sdpa), and
for alignkit_default also Liger kernels when liger-kernel is installed (alignkit's rule); the CPU-only
checks (exactness, DPO) are unchanged.

Each setting trains one epoch of the same rows (--steps x --batch rows) through TRL's SFTTrainer:

* handbook         padding to the longest row of each batch, random order (TRL's defaults, the handbook's)
* alignkit_default the batching settings of alignkit's SFT defaults (alignkit/config/defaults/sft.yaml), read
                   from that file: the row the >= 1.5x target is for
* group_by_length  padding, batches drawn from length-sorted mega-batches (train_sampling_strategy)
* padding_free     rows concatenated without padding (max_length=None: rows pre-truncated to max_length)
* packing_bfd      best-fit-decreasing packing into max_length rows (padding-free; more rows per step)

Reported: useful (non-pad) tokens per second — TRL's `num_tokens` over `train_runtime` — and its ratio to
the handbook's (target >= 1.5x), the same per CPU-second of the training loop (steadier on a shared machine), plus the held-out loss after the epoch, measured the same way for every
setting (loss parity), and an exactness check: the loss of one batch padded vs padding-free.
DPO: whether TRL 1.16 honours `padding_free` (it does not: it warns and pads), whether its trainer accepts
`group_by_length` (only with a `length` column and remove_unused_columns=False), and the useful tokens per
second of padded DPO with and without that grouping on long-tailed preference pairs.
A benchmark, not a test: exits 0 unless a run fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import PY, child_env, demo_assets, log, machine, run, trainer_summary, workdir, write_json  # noqa: E402

TARGET = 1.5
DPO_SETTINGS: dict[str, dict] = {
    "handbook": {},
    # TRL 1.16 drops the `length` column unless remove_unused_columns=False; the column is added by the caller
    "group_by_length": {"train_sampling_strategy": "group_by_length", "remove_unused_columns": False},
}
# the keys of alignkit's SFT defaults that change how batches are formed
BATCHING_KEYS = ("train_sampling_strategy", "padding_free", "packing", "packing_strategy", "max_length",
                 "pad_to_multiple_of", "group_by_length")


def alignkit_default() -> dict:
    """The batching settings alignkit's SFT defaults layer sets, read from the shipped file."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from alignkit.config.yamlio import read_yaml

    train = read_yaml(Path(__file__).resolve().parents[1] / "alignkit" / "config" / "defaults" / "sft.yaml")["train"]
    return {k: v for k, v in train.items() if k in BATCHING_KEYS}


DEFAULT = alignkit_default()
# the alternatives, minus the one alignkit's default already is (measured once, under its name)
SETTINGS: dict[str, dict] = {"handbook": {}, "alignkit_default": DEFAULT, **{
    name: setting for name, setting in (("group_by_length", {"train_sampling_strategy": "group_by_length"}),
                                        ("padding_free", {"padding_free": True, "max_length": None}),
                                        ("packing_bfd", {"packing": True, "packing_strategy": "bfd"}))
    if setting != DEFAULT}}


# --------------------------------------------------------------------------- data and model (parent)


def make_rows(n: int, max_length: int, vocab: int, special: dict[str, int], seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    lo = max(special.values()) + 1
    span = vocab - lo
    rows = []
    for _ in range(n):
        total = max(8, int(rng.lognormvariate(math.log(0.4 * max_length), 0.8)))
        total = min(total, 4 * max_length)
        turns = rng.randint(1, 4)
        ids = [special["bos"]]
        tok = rng.randrange(span)
        per_turn = max(2, total // turns)
        for _t in range(turns):
            user = max(1, per_turn // 4)
            for k, length in ((special["user"], user), (special["assistant"], per_turn - user)):
                ids.append(k)
                for _ in range(length):
                    tok = (tok * 5 + rng.choice((1, 2, 3, 7))) % span  # learnable: 4 likely successors
                    ids.append(lo + tok)
        ids.append(special["eos"])
        rows.append(ids)
    return rows


def build(work: Path, args, env: dict[str, str]) -> dict:
    """A random-init Llama next to the demo tokenizer, train/eval rows as JSONL; reused when present."""
    assets = demo_assets(env)
    tag = f"h{args.hidden}-l{args.layers}-L{args.max_length}-n{args.steps * args.batch}-s{args.seed}"
    model_dir = work / f"model-{tag}"
    meta = work / f"data-{tag}.json"
    if meta.is_file() and (model_dir / "config.json").is_file():
        return json.loads(meta.read_text())
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(assets.model_dir))
    vocab = len(tok)
    special = {"bos": tok.bos_token_id, "eos": tok.eos_token_id, "pad": tok.pad_token_id,
               "user": tok.convert_tokens_to_ids("<|user|>") if "<|user|>" in tok.get_vocab() else 3,
               "assistant": tok.convert_tokens_to_ids("<|assistant|>") if "<|assistant|>" in tok.get_vocab() else 4}
    torch.manual_seed(args.seed)
    cfg = LlamaConfig(hidden_size=args.hidden, intermediate_size=int(args.hidden * 2.6875) // 8 * 8,
                      num_hidden_layers=args.layers, num_attention_heads=max(1, args.hidden // 32),
                      num_key_value_heads=max(1, args.hidden // 32), vocab_size=vocab,
                      max_position_embeddings=8 * args.max_length, bos_token_id=special["bos"],
                      eos_token_id=special["eos"], pad_token_id=special["pad"], tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    tmp = work / f".tmp-{tag}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    shutil.rmtree(model_dir, ignore_errors=True)
    tmp.rename(model_dir)
    n = args.steps * args.batch
    rows = make_rows(n + 64, args.max_length, vocab, special, args.seed)
    train, held_out = rows[:n], rows[n:]
    for name, data in (("train", train), ("eval", held_out)):
        with open(work / f"{name}-{tag}.jsonl", "w") as fh:
            for ids in data:
                fh.write(json.dumps({"input_ids": ids}) + "\n")
    lengths = sorted(min(len(r), args.max_length) for r in train)
    info = {"tag": tag, "model_dir": str(model_dir), "train": str(work / f"train-{tag}.jsonl"),
            "eval": str(work / f"eval-{tag}.jsonl"), "params": sum(p.numel() for p in model.parameters()),
            "rows": n, "median_length": lengths[len(lengths) // 2], "mean_length": sum(lengths) / len(lengths),
            "p90_length": lengths[int(0.9 * len(lengths))],
            "truncated_share": sum(len(r) > args.max_length for r in train) / n}
    meta.write_text(json.dumps(info))
    return info


def exactness(info: dict, max_length: int, batch: int) -> float:
    """Relative difference between one batch's loss padded and padding-free (same weights, same rows)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(info["model_dir"], dtype=torch.float32, attn_implementation="sdpa")
    rows = [json.loads(x)["input_ids"][:max_length] for x in open(info["train"]).read().splitlines()[:batch]]
    width = max(len(r) for r in rows)
    pad = model.config.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    labels = ids.masked_fill(mask == 0, -100)
    flat = torch.tensor([sum(rows, [])])
    pos = torch.tensor([sum((list(range(len(r))) for r in rows), [])])
    flat_labels = torch.tensor([sum(([-100] + r[1:] for r in rows), [])])
    with torch.no_grad():
        padded = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss.item()
        # use_cache=False as in training: with a cache, transformers does not look for packed sequences
        free = model(input_ids=flat, position_ids=pos, labels=flat_labels, use_cache=False).loss.item()
    return abs(padded - free) / padded


# --------------------------------------------------------------------------- one setting (child process)


def worker(spec: dict) -> None:
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(0)
    torch.set_num_threads(spec.get("threads", 1))
    cuda = spec.get("device", "cpu") == "cuda"
    tok = AutoTokenizer.from_pretrained(spec["model_dir"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.bfloat16 if cuda else torch.float32,
                                                 attn_implementation=spec.get("attn", "sdpa"))
    train = load_dataset("json", data_files=spec["train"], split="train")
    setting = dict(spec["setting"])
    if "max_length" in setting and setting["max_length"] is None:
        limit = spec["max_length"]
        train = train.map(lambda r: {"input_ids": r["input_ids"][:limit]})  # what TRL's truncation would do
    kwargs = dict(output_dir=spec["output_dir"], num_train_epochs=1, per_device_train_batch_size=spec["batch"],
                  learning_rate=2e-3, lr_scheduler_type="linear", warmup_steps=0, logging_steps=1, seed=7,
                  bf16=cuda, use_cpu=not cuda, gradient_checkpointing=False, optim="adamw_torch", report_to="none",
                  save_strategy="no", eval_strategy="no", dataloader_pin_memory=False, max_length=spec["max_length"],
                  disable_tqdm=True)
    kwargs.update(setting)
    trainer = SFTTrainer(model=model, args=SFTConfig(**kwargs), train_dataset=train, processing_class=tok)
    cpu0 = time.process_time()
    trainer.train()
    _write_cpu(spec, time.process_time() - cpu0)
    trainer.save_state()
    # held-out loss, computed the same way for every setting: padded batches, token-weighted mean
    model.eval()
    rows = [json.loads(x)["input_ids"][: spec["max_length"]] for x in open(spec["eval"]).read().splitlines()]
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), 16):
            chunk = rows[i:i + 16]
            width = max(len(r) for r in chunk)
            ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in chunk], device=model.device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in chunk], device=model.device)
            labels = ids.masked_fill(mask == 0, -100)
            n = int((labels[:, 1:] != -100).sum())
            total += model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss.item() * n
            count += n
    Path(spec["output_dir"], "eval_loss.json").write_text(json.dumps({"eval_loss": total / count}))


def dpo_worker(spec: dict) -> None:
    """What TRL 1.16's DPOTrainer does with padding_free=True and with group_by_length (tiny demo model)."""
    import logging

    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    logging.disable(logging.WARNING)
    tok = AutoTokenizer.from_pretrained(spec["model_dir"])
    raw = load_dataset("json", data_files=spec["prefs"], split="train").select(range(32))
    # ultrafeedback's shape (chosen/rejected hold the whole conversation) -> TRL's conversational triplet
    data = raw.map(lambda r: {"prompt": r["chosen"][:-1], "chosen": r["chosen"][-1:], "rejected": r["rejected"][-1:]},
                   remove_columns=raw.column_names)
    out: dict = {}
    base = dict(output_dir=spec["output_dir"], per_device_train_batch_size=8, max_steps=2, bf16=False, use_cpu=True,
                report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True, max_length=64)
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    trainer = DPOTrainer(model=model, args=DPOConfig(**base, padding_free=True), train_dataset=data,
                         processing_class=tok)
    out["padding_free_honoured"] = bool(trainer.padding_free)
    batch = next(iter(trainer.get_train_dataloader()))
    out["padding_free_batch_is_padded"] = "attention_mask" in batch
    with_length = data.map(lambda r: {"length": _pair_length(r)})
    for key, d, extra in (("group_by_length", data, {}),
                          ("group_by_length_with_length_column", with_length, {}),
                          ("group_by_length_with_length_column_and_remove_unused_columns_false", with_length,
                           {"remove_unused_columns": False})):
        try:
            model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
            trainer = DPOTrainer(model=model, train_dataset=d, processing_class=tok,
                                 args=DPOConfig(**base, train_sampling_strategy="group_by_length", **extra))
            trainer.train()
            out[key] = "trains"
        except Exception as exc:  # noqa: BLE001 - the answer is the error
            out[key] = f"fails: {type(exc).__name__}: {str(exc)[:120]}"
    Path(spec["output_dir"]).mkdir(parents=True, exist_ok=True)
    Path(spec["output_dir"], "dpo.json").write_text(json.dumps(out))


def _pair_length(r: dict) -> int:
    """Characters of prompt + the longer answer: enough to sort pairs by padded length."""
    text = lambda msgs: sum(len(m["content"]) for m in msgs)  # noqa: E731
    return text(r["prompt"]) + max(text(r["chosen"]), text(r["rejected"]))


def dpo_rows(n: int, seed: int) -> list[dict]:
    """Preference pairs with long-tailed prompt and answer lengths, in words the demo tokenizer knows."""
    from alignkit.demo.assets import ANIMALS, COLORS, PHRASINGS

    rng = random.Random(seed)
    words = list(COLORS + ANIMALS) + " ".join(PHRASINGS).replace(".", "").replace("?", "").replace(",", "").split()

    def text(median: float) -> str:
        return " ".join(rng.choices(words, k=max(1, int(rng.lognormvariate(math.log(median), 0.8)))))

    rows = []
    for _ in range(n):
        rows.append({"prompt": [{"role": "user", "content": text(30)}],
                     "chosen": [{"role": "assistant", "content": text(60)}],
                     "rejected": [{"role": "assistant", "content": text(60)}]})
    return rows


def dpo_speed_worker(spec: dict) -> None:
    import logging

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    logging.disable(logging.WARNING)
    torch.set_num_threads(spec.get("threads", 1))
    tok = AutoTokenizer.from_pretrained(spec["model_dir"])
    data = Dataset.from_list(dpo_rows(spec["rows"], 0))
    extra = dict(spec["setting"])
    if extra.get("train_sampling_strategy") == "group_by_length":
        data = data.map(lambda r: {"length": _pair_length(r)})
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32, attn_implementation="sdpa")
    args = DPOConfig(output_dir=spec["output_dir"], per_device_train_batch_size=spec["batch"], num_train_epochs=1,
                     bf16=False, use_cpu=True, report_to="none", save_strategy="no", logging_steps=1,
                     disable_tqdm=True, max_length=spec["max_length"], learning_rate=1e-4, seed=7,
                     gradient_checkpointing=False, optim="adamw_torch", **extra)
    trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    cpu0 = time.process_time()
    trainer.train()
    _write_cpu(spec, time.process_time() - cpu0)
    trainer.save_state()


def _gpu_choices(device: str) -> dict:
    """What alignkit would pick on this device: attention kernel, Liger, and the GPU's name."""
    if device != "cuda":
        return {"attn": "sdpa", "liger": False, "name": None}
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU visible")
    return {"attn": "flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa",
            "liger": importlib.util.find_spec("liger_kernel") is not None, "name": torch.cuda.get_device_name(0)}


def _write_cpu(spec: dict, seconds: float) -> None:
    """CPU seconds of the training loop (all threads): less sensitive to other work on a shared machine."""
    Path(spec["output_dir"]).mkdir(parents=True, exist_ok=True)
    Path(spec["output_dir"], "cpu.json").write_text(json.dumps({"train_cpu_s": seconds}))


# --------------------------------------------------------------------------- parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=16, help="optimizer steps of the padded settings (one epoch)")
    ap.add_argument("--batch", type=int, default=8, help="rows per step (per_device_train_batch_size)")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each run (default 1: steadier on a "
                    "shared machine, and CPU time then measures work, not waiting)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated subset of: " + ", ".join(SETTINGS))
    ap.add_argument("--dpo-steps", type=int, default=8, help="DPO steps of the padded setting (one epoch)")
    ap.add_argument("--no-dpo", action="store_true", help="skip the DPO part")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cuda: one GPU, bf16, the attention kernel and Liger as alignkit would pick them")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", dest="json_path", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        {"dpo": dpo_worker, "dpo_speed": dpo_speed_worker}.get(spec.get("kind", ""), worker)(spec)
        return 0

    work = workdir("tokens", args.workdir)
    env = child_env(work)
    gpu = _gpu_choices(args.device)
    if args.device == "cuda":
        env.pop("CUDA_VISIBLE_DEVICES", None)  # child_env hides GPUs for the CPU benchmarks
        if "CUDA_VISIBLE_DEVICES" in os.environ:
            env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
    info = build(work, args, env)
    log(f"data: {info['rows']} rows, median {info['median_length']} / mean {info['mean_length']:.0f} / p90 "
        f"{info['p90_length']} tokens, {info['truncated_share']:.0%} longer than {args.max_length}; model "
        f"{info['params'] / 1e6:.2f}M params")
    results = {}
    for name in [s.strip() for s in args.settings.split(",") if s.strip()]:
        out = work / f"run-{name}"
        shutil.rmtree(out, ignore_errors=True)
        setting = dict(SETTINGS[name])
        if name == "alignkit_default" and gpu["liger"]:
            setting["use_liger_kernel"] = True
        spec = {"model_dir": info["model_dir"], "train": info["train"], "eval": info["eval"], "output_dir": str(out),
                "batch": args.batch, "max_length": args.max_length, "setting": setting, "threads": args.threads,
                "device": args.device, "attn": gpu["attn"]}
        wall, _ = run([PY, __file__, "--worker", json.dumps(spec)], env)
        s = trainer_summary(out)
        rt = float(s["train_runtime"])
        cpu = json.loads((out / "cpu.json").read_text())["train_cpu_s"]
        results[name] = {"settings": setting, "steps": s["global_step"], "train_runtime_s": rt,
                         "useful_tokens": s["num_tokens"], "useful_tokens_per_s": s["num_tokens"] / rt,
                         "train_cpu_s": cpu, "useful_tokens_per_cpu_s": s["num_tokens"] / cpu,
                         "eval_loss": json.loads((out / "eval_loss.json").read_text())["eval_loss"],
                         "final_train_loss": s["losses"][-1] if s["losses"] else None, "wall_s": round(wall, 2)}
        log(f"  {name:16s} {s['global_step']:4d} steps  {rt:7.1f} s  {s['num_tokens'] / rt:8.0f} useful tok/s  "
            f"held-out loss {results[name]['eval_loss']:.4f}")
    base = results.get("handbook")
    for r in results.values():
        r["speedup_vs_handbook"] = r["useful_tokens_per_s"] / base["useful_tokens_per_s"] if base else None
        r["cpu_speedup_vs_handbook"] = r["useful_tokens_per_cpu_s"] / base["useful_tokens_per_cpu_s"] if base else None
        r["eval_loss_vs_handbook"] = (r["eval_loss"] - base["eval_loss"]) / base["eval_loss"] if base else None
    exact = exactness(info, args.max_length, args.batch)

    dpo = None
    if not args.no_dpo:
        assets = demo_assets(env)
        out = work / "run-dpo"
        shutil.rmtree(out, ignore_errors=True)
        spec = {"kind": "dpo", "model_dir": str(assets.model_dir), "prefs": str(assets.prefs_train),
                "output_dir": str(out)}
        run([PY, __file__, "--worker", json.dumps(spec)], env)
        dpo = json.loads((out / "dpo.json").read_text())
        speed = {}
        for name, setting in DPO_SETTINGS.items():
            out = work / f"run-dpo-{name}"
            shutil.rmtree(out, ignore_errors=True)
            spec = {"kind": "dpo_speed", "model_dir": info["model_dir"], "output_dir": str(out), "setting": setting,
                    "rows": args.dpo_steps * args.batch, "batch": args.batch, "max_length": args.max_length,
                    "threads": args.threads}
            run([PY, __file__, "--worker", json.dumps(spec)], env)
            s = trainer_summary(out)
            rt = float(s["train_runtime"])
            cpu = json.loads((out / "cpu.json").read_text())["train_cpu_s"]
            speed[name] = {"settings": setting, "steps": s["global_step"], "train_runtime_s": rt,
                           "useful_tokens_per_s": s["num_tokens"] / rt, "useful_tokens_per_cpu_s": s["num_tokens"] / cpu}
            log(f"  DPO {name:16s} {s['global_step']:4d} steps  {rt:7.1f} s  {s['num_tokens'] / rt:8.0f} useful tok/s")
        for r in speed.values():
            r["speedup_vs_handbook"] = r["useful_tokens_per_s"] / speed["handbook"]["useful_tokens_per_s"]
            r["cpu_speedup_vs_handbook"] = r["useful_tokens_per_cpu_s"] / speed["handbook"]["useful_tokens_per_cpu_s"]
        dpo["speed"] = speed

    result = {"benchmark": "tokens", "data": info, "batch": args.batch, "max_length": args.max_length,
              "threads": args.threads, "device": args.device, "dtype": "bfloat16" if args.device == "cuda" else
              "float32", "attn_implementation": gpu["attn"], "gpu": gpu["name"],
              "results": results, "padded_vs_padding_free_loss_rel_diff": exact, "target_speedup": TARGET,
              "dpo": dpo, "machine": machine()}
    write_json(args.json_path, result)

    print(f"useful tokens/s, SFT, {info['rows']} rows (median {info['median_length']}, p90 {info['p90_length']}, "
          f"{info['truncated_share']:.0%} over {args.max_length}), batch {args.batch}, one epoch each")
    print(f"{'setting':16s} {'steps':>5s} {'tok/s':>8s} {'vs handbook':>11s} {'per CPU-s':>9s} {'held-out loss':>13s} "
          f"{'Δ loss':>7s}")
    for name, r in results.items():
        flag = "" if name == "handbook" else ("  ok" if r["speedup_vs_handbook"] >= TARGET else "  below 1.5x")
        print(f"{name:16s} {r['steps']:5d} {r['useful_tokens_per_s']:8.0f} {r['speedup_vs_handbook']:10.2f}x "
              f"{r['cpu_speedup_vs_handbook']:8.2f}x {r['eval_loss']:13.4f} {r['eval_loss_vs_handbook']:+7.1%}{flag}")
    print(f"padded vs padding-free loss of one batch (same weights): relative difference {exact:.1e}")
    if dpo:
        print(f"DPO (TRL 1.16): padding_free honoured: {dpo['padding_free_honoured']}")
        for key in ("group_by_length", "group_by_length_with_length_column",
                    "group_by_length_with_length_column_and_remove_unused_columns_false"):
            print(f"  {key}: {dpo[key]}")
        for name, r in dpo.get("speed", {}).items():
            print(f"  DPO {name:16s} {r['steps']:4d} steps {r['useful_tokens_per_s']:8.0f} useful tok/s "
                  f"{r['speedup_vs_handbook']:5.2f}x (per CPU-second {r['cpu_speedup_vs_handbook']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
