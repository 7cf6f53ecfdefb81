#!/usr/bin/env python
"""Start-up benchmark of the alignkit CLI (a benchmark, not a test).

Times, as real processes from this venv, the median wall time of several runs of:

    alignkit --help                                                          target <= 0.25 s
    alignkit sft --recipe zephyr-7b-beta --profile full --num-gpus 8 --dry-run   target <= 1 s
    alignkit recipes list                                                    target <= 1 s
    alignkit mix preview --task sft --recipe tiny --profile cpu              target <= 5 s
    alignkit env                                                             target <= 1.5 s
    trl sft --help                                                           the reference

and prints each median with its ratio to its target, plus `alignkit --help` relative to `trl sft --help`
(target <= 0.2x). The two rows issue 16 found slow (`mix preview` of the tiny recipe, 384 rows: 14 s;
`alignkit env`: 5 s, both on a quiet 2-core machine) also get their ratio against "before": the same
commands timed from another checkout given with --baseline (e.g. a worktree of the commit before the fix),
else those recorded figures. The first, untimed run of each command warms the file cache and alignkit's
tokenizer-class cache; the `mix preview` row's "first" column is that cold run. Exit code 0 always, unless a
command fails (then 1): read the numbers.

    python bench/bench_cli.py [--runs 7] [--trl-runs 3] [--baseline DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HELP_TARGET = 0.25
DRY_RUN_TARGET = 1.0
LIST_TARGET = 1.0
TRL_RATIO_TARGET = 0.2
PREVIEW_TARGET = 5.0
ENV_TARGET = 1.5
#: issue 16's figures (quiet 2-core machine) for the two commands it found slow, before the fix
BEFORE = {"preview": 14.0, "env": 5.0}
PREVIEW_ARGS = ["mix", "preview", "--task", "sft", "--recipe", "tiny", "--profile", "cpu"]


def _exe(name: str, module_fallback: list[str]) -> list[str]:
    local = Path(sys.executable).parent / name
    if local.exists():
        return [str(local)]
    found = shutil.which(name)
    return [found] if found else [sys.executable, *module_fallback]


def _time(argv: list[str], runs: int, env: dict[str, str], cwd: str | None = None) -> dict:
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, env=env, timeout=600, cwd=cwd)  # warm the file cache, not counted
    first = time.perf_counter() - start
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, env=env, timeout=600, cwd=cwd)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr.decode()[-2000:]}")
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "runs": runs, "first": first}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per alignkit command (default 7)")
    parser.add_argument("--trl-runs", type=int, default=3, help="timed runs of `trl sft --help` (default 3)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--baseline", type=Path, help="an alignkit checkout to time the slow rows with, as 'before'")
    args = parser.parse_args()

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    # the tiny recipe reads the demo assets: build them once, untimed
    subprocess.run([sys.executable, "-c", "from alignkit.demo.assets import ensure_demo_assets as e; e()"],
                   env=env, check=True, timeout=600)
    alignkit = _exe("alignkit", ["-m", "alignkit"])
    trl = _exe("trl", ["-m", "trl.cli"])
    cases = [
        ("alignkit --help", alignkit + ["--help"], args.runs, HELP_TARGET),
        ("alignkit sft --recipe zephyr-7b-beta --profile full --num-gpus 8 --dry-run",
         alignkit + ["sft", "--recipe", "zephyr-7b-beta", "--profile", "full", "--num-gpus", "8", "--dry-run"],
         args.runs, DRY_RUN_TARGET),
        ("alignkit recipes list", alignkit + ["recipes", "list"], args.runs, LIST_TARGET),
        ("alignkit mix preview --task sft --recipe tiny --profile cpu", alignkit + PREVIEW_ARGS,
         max(3, args.runs // 2), PREVIEW_TARGET),
        ("alignkit env", alignkit + ["env"], args.runs, ENV_TARGET),
        ("trl sft --help", trl + ["sft", "--help"], args.trl_runs, None),
    ]
    results = []
    for label, argv, runs, target in cases:
        r = _time(argv, runs, env)
        r.update(command=label, target=target, ratio=(r["median"] / target) if target else None)
        results.append(r)
    before = {}
    for key, label, tail in (("preview", cases[3][0], PREVIEW_ARGS), ("env", cases[4][0], ["env"])):
        if args.baseline:
            base = str(args.baseline.resolve())
            # run from the baseline checkout: `python -m` puts the current directory first on sys.path
            b = _time([sys.executable, "-m", "alignkit", *tail], max(3, args.runs // 2), {**env, "PYTHONPATH": base},
                      cwd=base)["median"]
            source = f"--baseline {args.baseline}"
        else:
            b, source = BEFORE[key], "issue 16 (quiet 2-core machine)"
        now = next(r["median"] for r in results if r["command"] == label)
        before[label] = {"before": b, "source": source, "now": now, "speedup": b / now}
    trl_median = results[-1]["median"]
    help_vs_trl = results[0]["median"] / trl_median
    summary = {"results": results, "help_vs_trl": help_vs_trl, "help_vs_trl_target": TRL_RATIO_TARGET,
               "before": before}

    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    width = max(len(r["command"]) for r in results)
    print(f"{'command':<{width}}  {'median':>8}  {'min':>7}  {'max':>7}  {'target':>7}  {'ratio':>6}")
    for r in results:
        target = f"{r['target']:.2f}s" if r["target"] else "-"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        flag = "" if r["ratio"] is None else ("  ok" if r["ratio"] <= 1 else "  OVER")
        print(f"{r['command']:<{width}}  {r['median']:>7.3f}s  {r['min']:>6.3f}s  {r['max']:>6.3f}s  {target:>7}  "
              f"{ratio:>6}{flag}")
    flag = "ok" if help_vs_trl <= TRL_RATIO_TARGET else "OVER"
    print(f"\nalignkit --help / trl sft --help = {help_vs_trl:.3f}  (target <= {TRL_RATIO_TARGET}x)  {flag}")
    first = next(r["first"] for r in results if r["command"] == cases[3][0])
    print(f"{cases[3][0]}: first (cold) run {first:.2f}s")
    for label, b in before.items():
        print(f"{label}: {b['now']:.2f}s now, {b['before']:.2f}s before ({b['source']}): {b['speedup']:.1f}x faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
