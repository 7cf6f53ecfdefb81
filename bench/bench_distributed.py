#!/usr/bin/env python
"""Distributed scaling on CPU: the tiny recipe on 1 process, 2 processes (DDP over gloo) and ZeRO-3 (2 processes).

    python bench/bench_distributed.py [--steps 40] [--batch 8] [--json PATH]

All three train the same global batch (per-device batch x accumulation x processes = 2 x --batch) for the
same number of steps through `alignkit sft` (parent -> accelerate launch -> workers), one torch thread per
process (--threads), each run on a free rendezvous port:

    1 process     --profile cpu                      gradient accumulation 2
    DDP           --profile cpu --num-gpus 2         accumulation 1, gloo all-reduce
    ZeRO-3        --profile full,cpu --num-gpus 2    DeepSpeed stage 3, parameters sharded

Reported: useful tokens per second (TRL's num_tokens, summed over processes, over train_runtime) and peak
RSS per worker process (VmHWM, polled from /proc), each as a ratio to the single process: with one thread
each, two processes use two cores, so DDP can approach 2x tokens/s — on a model this small the all-reduce
and Python overhead per step keep it below. The ratios are there so that a change that breaks scaling (a
second copy of the model, an extra all-gather per step, processes training alone) shows up. A ZeRO-3 warm-up step runs first: DeepSpeed
compiles a communication op once (~1 min) into ~/.cache/torch_extensions. Exits 0 unless a run fails.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import PY, PeakRSS, child_env, demo_assets, gib, log, machine, run, trainer_summary, workdir, write_json  # noqa: E402

SETUPS = {
    "1 process": (["--profile", "cpu"], 1),
    "DDP x2": (["--profile", "cpu", "--num-gpus", "2"], 2),
    "ZeRO-3 x2": (["--profile", "full,cpu", "--num-gpus", "2"], 2),
}
QUIET = ["--eval_strategy=no", "--save_strategy=no", "--report_to=none", "--logging_steps=5",
         "--launch.global_batch_size=null"]


def free_port() -> int:
    """A port nobody listens on: other runs on a shared machine use accelerate's default 29500."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(out: Path, flags: list[str], procs: int, steps: int, batch: int, env: dict[str, str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    accum = 2 // procs
    cmd = [PY, "-m", "alignkit", "sft", "--recipe", "tiny", *flags, f"--output_dir={out}", f"--max_steps={steps}",
           f"--per_device_train_batch_size={batch}", f"--gradient_accumulation_steps={accum}", *QUIET,
           f"--launch.main_process_port={free_port()}"]
    with PeakRSS(str(out)) as rss:
        wall, _ = run(cmd, env, timeout=3600)
    workers = rss.matching("-m alignkit.train.sft", exclude="accelerate launch")
    s = trainer_summary(out)
    rt = float(s["train_runtime"])
    return {"wall_s": round(wall, 2), "train_runtime_s": rt, "steps": s["global_step"], "useful_tokens": s["num_tokens"],
            "tokens_per_s": s["num_tokens"] / rt, "worker_peak_rss_gib": [round(gib(x), 3) for x in workers],
            "max_worker_peak_rss_gib": round(gib(max(workers)), 3) if workers else None,
            "launcher_peak_rss_gib": [round(gib(x), 3) for x in rss.matching("accelerate launch")]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8, help="per-device batch of the 2-process runs")
    ap.add_argument("--no-warmup", action="store_true", help="skip the ZeRO-3 warm-up run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", dest="json_path", default=None)
    args = ap.parse_args()

    work = workdir("distributed", args.workdir)
    # one thread per process: 1 process uses one core, 2 processes two (the machine has 2); without this each
    # process starts a thread per core and two processes oversubscribe the cores
    env = child_env(work, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    demo_assets(env)
    if not args.no_warmup:
        log("ZeRO-3 warm-up (compiles DeepSpeed's comm op once)...")
        flags, procs = SETUPS["ZeRO-3 x2"]
        train(work / "warmup", flags, procs, 1, args.batch, env)

    results = {}
    for name, (flags, procs) in SETUPS.items():
        r = train(work / name.replace(" ", "-"), flags, procs, args.steps, args.batch, env)
        results[name] = r
        log(f"  {name:10s} {r['tokens_per_s']:8.0f} tok/s  train {r['train_runtime_s']:6.1f} s  "
            f"peak RSS per worker {r['worker_peak_rss_gib']} GiB")
    one = results["1 process"]
    for r in results.values():
        r["tokens_per_s_ratio"] = round(r["tokens_per_s"] / one["tokens_per_s"], 3)
        r["peak_rss_per_process_ratio"] = round(r["max_worker_peak_rss_gib"] / one["max_worker_peak_rss_gib"], 3)
    result = {"benchmark": "distributed", "steps": args.steps, "global_batch": 2 * args.batch,
              "threads_per_process": args.threads, "results": results,
              "machine": machine()}
    write_json(args.json_path, result)

    print(f"distributed (CPU, tiny recipe, {args.steps} steps, global batch {2 * args.batch}, {args.threads} thread(s) "
          "per process): ratios to 1 process")
    print(f"{'setup':12s} {'tok/s':>8s} {'ratio':>6s} {'peak RSS/worker GiB':>20s} {'ratio':>6s}")
    for name, r in results.items():
        print(f"{name:12s} {r['tokens_per_s']:8.0f} {r['tokens_per_s_ratio']:6.2f} "
              f"{r['max_worker_peak_rss_gib']:20.3f} {r['peak_rss_per_process_ratio']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
