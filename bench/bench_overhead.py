#!/usr/bin/env python
"""Overhead: `alignkit sft` (parent -> training process) against a plain TRL script, same training.

One process starts the training module directly (launch.launcher=auto); the same run forced through
`accelerate launch` (parent -> accelerate launch -> child, --launch.launcher=accelerate) is measured alongside
and reported as a third column, so what the launcher costs stays visible.

    python bench/bench_overhead.py [--repeats 3] [--target-seconds 50] [--max-steps N] [--json PATH]

Both train the `tiny` recipe's model on the same rows, in the same order, with the same seed and settings
(the golden-loss test of tests/e2e/test_train.py checks their per-step losses are equal; this benchmark
reports the largest difference it saw). The plain script is tests/e2e/plain_trl.py: `python plain_trl.py`,
no accelerate, no alignkit import. Runs alternate (A B, B A, ...) so that a busy machine hurts both alike.

Reported, as medians over the repeats:
* train-loop time: the Trainer's own `train_runtime` (trainer_state.json)      target ratio <= 1.02
  and, steadier on a shared machine, the median time of one training step (forward + backward), taken by
  bench/_steptimer/sitecustomize.py in both processes alike
* whole process: wall time of the command, start to exit                      target ratio <= 1.05
* whole-process CPU time (user + system, every process of the command): steadier on a shared machine
The run length is set by max_steps (calibrated so the plain train loop takes --target-seconds), never by
sleeping. Both run with one torch thread (--threads), which keeps a shared machine's load from swinging the
numbers. A benchmark, not a test: it prints ratios and always exits 0 unless a run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import PY, REPO, child_env, demo_assets, log, machine, median, run, trainer_summary, workdir, write_json  # noqa: E402

TRAIN_LOOP_TARGET = 1.02
WHOLE_TARGET = 1.05
PLAIN = REPO / "tests" / "e2e" / "plain_trl.py"
STEPTIMER = REPO / "bench" / "_steptimer"

SETTINGS = {"learning_rate": 1e-3, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
            "logging_steps": 10, "seed": 7, "bf16": False, "gradient_checkpointing": False, "optim": "adamw_torch",
            "dataloader_pin_memory": False, "report_to": "none", "save_strategy": "no", "max_length": 64,
            "train_sampling_strategy": "group_by_length",  # alignkit's SFT default, given to both
            "lr_scheduler_type": "linear", "warmup_steps": 0}


def training_rows(env: dict[str, str], settings: dict, path: Path) -> None:
    """The rows alignkit trains on, in its order, for the plain script (as the golden-loss test does)."""
    import os

    os.environ["ALIGNKIT_CACHE"] = env["ALIGNKIT_CACHE"]
    from alignkit.config.resolve import resolve_config
    from alignkit.data.chat import to_trl
    from alignkit.data.mixer import load_mixture

    resolved = resolve_config("sft", recipe="tiny", profile="cpu", overrides=alignkit_overrides(settings))
    rows = to_trl(load_mixture(resolved.config.data, "sft"), "sft", resolved.config.data, "")["train"]
    rows.to_json(str(path), lines=True)


def alignkit_overrides(settings: dict) -> list[str]:
    return [f"--{k}={v}" for k, v in settings.items()] + ["--eval_strategy=no", "--launch.global_batch_size=null",
                                                          "--logging_first_step=false"]


def _timed_env(env: dict[str, str], steps_dir: Path) -> dict[str, str]:
    """Time every training step of the training process (bench/_steptimer/sitecustomize.py)."""
    shutil.rmtree(steps_dir, ignore_errors=True)
    return {**env, "ALIGNKIT_BENCH_STEP_LOG": str(steps_dir),
            "PYTHONPATH": os.pathsep.join([str(STEPTIMER), env.get("PYTHONPATH", "")])}


def _step_times(steps_dir: Path) -> list[float]:
    files = sorted(steps_dir.glob("*.json"))
    if len(files) != 1:
        raise RuntimeError(f"expected the step times of one training process in {steps_dir}, found {len(files)}")
    return json.loads(files[0].read_text())


def run_alignkit(out: Path, settings: dict, env: dict[str, str], launcher: str = "auto") -> tuple[float, dict]:
    shutil.rmtree(out, ignore_errors=True)
    steps = out.parent / f"{out.name}.steps"
    wall, proc = run([PY, "-m", "alignkit", "sft", "--recipe", "tiny", "--profile", "cpu", f"--output_dir={out}",
                      *alignkit_overrides(settings), f"--launch.launcher={launcher}"], _timed_env(env, steps))
    return wall, {**trainer_summary(out), "cpu_s": proc.cpu_seconds, "step_s": _step_times(steps)}


def run_plain(out: Path, settings: dict, model: Path, train: Path, env: dict[str, str]) -> tuple[float, dict]:
    shutil.rmtree(out, ignore_errors=True)
    steps = out.parent / f"{out.name}.steps"
    wall, proc = run([PY, str(PLAIN), "sft", str(model), str(train), str(out), json.dumps(settings)],
                     _timed_env(env, steps))
    return wall, {**trainer_summary(out), "cpu_s": proc.cpu_seconds, "step_s": _step_times(steps)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="alternating pairs of runs (default 3)")
    ap.add_argument("--target-seconds", type=float, default=50.0,
                    help="train-loop length to calibrate max_steps for (default 50 s: ~1 min per process)")
    ap.add_argument("--max-steps", type=int, default=None, help="skip calibration and train this many steps")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of both runs (default 1)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", dest="json_path", default=None, help="also write the results here")
    args = ap.parse_args()

    work = workdir("overhead", args.workdir)
    # one torch thread in both: on a shared machine a second thread mostly waits for a busy core, which makes
    # wall and CPU times swing with other people's work; alignkit and TRL get the same setting
    env = child_env(work, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    assets = demo_assets(env)
    train = work / "train.jsonl"
    training_rows(env, {**SETTINGS, "max_steps": 10}, train)

    steps = args.max_steps
    calibration = None
    if steps is None:
        probe = 60
        _, s = run_plain(work / "calibrate", {**SETTINGS, "max_steps": probe}, assets.model_dir, train, env)
        rate = probe / float(s["train_runtime"])
        steps = max(20, int(round(rate * args.target_seconds / 10.0)) * 10)
        calibration = {"probe_steps": probe, "steps_per_second": round(rate, 2)}
        log(f"calibration: {rate:.1f} steps/s -> max_steps={steps} for ~{args.target_seconds:.0f} s")
    settings = {**SETTINGS, "max_steps": steps}

    rows = []
    who_all = ("alignkit", "plain", "alignkit_accelerate")
    for i in range(args.repeats):
        order = who_all[i % 3:] + who_all[:i % 3]  # each goes first once in three repeats
        for who in order:
            out = work / f"{who}-{i}"
            if who == "alignkit":
                wall, s = run_alignkit(out, settings, env)
            elif who == "alignkit_accelerate":
                wall, s = run_alignkit(out, settings, env, launcher="accelerate")
            else:
                wall, s = run_plain(out, settings, assets.model_dir, train, env)
            rows.append({"who": who, "repeat": i, "wall_s": round(wall, 3), "cpu_s": round(s["cpu_s"], 3),
                         "train_runtime_s": float(s["train_runtime"]), "median_step_ms": 1000 * median(s["step_s"]),
                         "steps_timed": len(s["step_s"]), "losses": s["losses"]})
            log(f"  {who:8s} #{i}: train loop {float(s['train_runtime']):7.2f} s   whole process {wall:7.2f} s   "
                f"median step {1000 * median(s['step_s']):.2f} ms")

    ak = [r for r in rows if r["who"] == "alignkit"]
    pl = [r for r in rows if r["who"] == "plain"]
    via = [r for r in rows if r["who"] == "alignkit_accelerate"]
    loss_diff = max(abs(a - b) for x, y in zip(ak + via, pl + pl) for a, b in zip(x["losses"], y["losses"]))
    train_ratio = median([r["train_runtime_s"] for r in ak]) / median([r["train_runtime_s"] for r in pl])
    whole_ratio = median([r["wall_s"] for r in ak]) / median([r["wall_s"] for r in pl])
    pair_train = median([a["train_runtime_s"] / p["train_runtime_s"] for a, p in zip(ak, pl)])
    step_ratio = median([r["median_step_ms"] for r in ak]) / median([r["median_step_ms"] for r in pl])
    pair_whole = median([a["wall_s"] / p["wall_s"] for a, p in zip(ak, pl)])
    result = {
        "benchmark": "overhead",
        "max_steps": steps,
        "repeats": args.repeats,
        "threads": args.threads,
        "calibration": calibration,
        "settings": settings,
        "median_train_runtime_s": {"alignkit": median([r["train_runtime_s"] for r in ak]),
                                   "plain_trl": median([r["train_runtime_s"] for r in pl])},
        "median_wall_s": {"alignkit": median([r["wall_s"] for r in ak]), "plain_trl": median([r["wall_s"] for r in pl])},
        "median_cpu_s": {"alignkit": median([r["cpu_s"] for r in ak]), "plain_trl": median([r["cpu_s"] for r in pl])},
        "whole_process_cpu_ratio": round(median([r["cpu_s"] for r in ak]) / median([r["cpu_s"] for r in pl]), 4),
        "train_loop_ratio": round(train_ratio, 4),
        "median_step_ms": {"alignkit": median([r["median_step_ms"] for r in ak]),
                           "plain_trl": median([r["median_step_ms"] for r in pl])},
        "step_time_ratio": round(step_ratio, 4),
        "whole_process_ratio": round(whole_ratio, 4),
        "extra_wall_s": round(median([r["wall_s"] for r in ak]) - median([r["wall_s"] for r in pl]), 3),
        # the same run forced through `accelerate launch` (--launch.launcher=accelerate): what the direct
        # start of one process saves
        "via_accelerate_launch": {
            "median_wall_s": median([r["wall_s"] for r in via]),
            "whole_process_ratio": round(median([r["wall_s"] for r in via]) / median([r["wall_s"] for r in pl]), 4),
            "train_loop_ratio": round(median([r["train_runtime_s"] for r in via])
                                      / median([r["train_runtime_s"] for r in pl]), 4),
            "extra_wall_s": round(median([r["wall_s"] for r in via]) - median([r["wall_s"] for r in pl]), 3)},
        "median_pairwise_train_loop_ratio": round(pair_train, 4),
        "median_pairwise_whole_process_ratio": round(pair_whole, 4),
        "targets": {"train_loop_ratio": TRAIN_LOOP_TARGET, "whole_process_ratio": WHOLE_TARGET},
        "max_loss_difference": loss_diff,
        "runs": [{k: v for k, v in r.items() if k != "losses"} for r in rows],
        "machine": machine(),
    }
    write_json(args.json_path, result)

    print(f"overhead: tiny recipe, {steps} steps x batch {settings['per_device_train_batch_size']}, "
          f"{args.repeats} alternating pairs (medians)")
    print(f"{'':22s} {'alignkit':>10s} {'plain TRL':>10s} {'ratio':>7s} {'target':>7s}")
    for label, key, ratio, target in (("train step (ms, median)", "median_step_ms", step_ratio, TRAIN_LOOP_TARGET),
                                      ("train loop (s)", "median_train_runtime_s", train_ratio, TRAIN_LOOP_TARGET),
                                      ("whole process (s)", "median_wall_s", whole_ratio, WHOLE_TARGET)):
        m = result[key]
        vals = list(m.values())
        flag = "ok" if ratio <= target else "OVER"
        print(f"{label:22s} {vals[0]:10.2f} {vals[1]:10.2f} {ratio:7.3f} {target:7.2f}  {flag}")
    print(f"whole process CPU time (all processes, user+sys): alignkit {result['median_cpu_s']['alignkit']:.1f} s, "
          f"plain {result['median_cpu_s']['plain_trl']:.1f} s, ratio {result['whole_process_cpu_ratio']:.3f}")
    v = result["via_accelerate_launch"]
    print(f"through `accelerate launch` (--launch.launcher=accelerate): whole process {v['median_wall_s']:.2f} s, "
          f"ratio {v['whole_process_ratio']:.3f} (+{v['extra_wall_s']:.2f} s over plain TRL)")
    print(f"same training: largest per-step loss difference {loss_diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
