"""Each point's offline eval, on the held-out (test) split of the point's own data: eval loss on the assistant
tokens for SFT (``alignkit eval loss``), preference accuracy and DPO's implicit reward against the point's
starting model for DPO (``alignkit eval prefs``). The results land where those commands put them,
``<point>/eval/<loss|prefs>/results.json``, so ``sweep status``/``report`` show them.

One point is evaluated in its own process (``python -m alignkit.sweep.evaluate --run RUN_FILE``): a model is
never loaded into the sweep's process, and its memory is given back when the eval ends.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from alignkit.sweep import runs

BENCH = {"sft": "loss", "dpo": "prefs"}


def results_path(output_dir: str | Path, task: str) -> Path:
    return Path(output_dir) / "eval" / BENCH[task] / "results.json"


def evaluate_point(output_dir: str | Path, task: str, env: dict[str, str] | None = None,
                   limit: int | None = None) -> int:
    """Evaluate one completed point in a child process; its exit code (0: results written or nothing to do)."""
    cmd = [sys.executable, "-m", "alignkit.sweep.evaluate", "--run", str(runs.run_file(output_dir))]
    if limit:
        cmd += ["--limit", str(limit)]
    return subprocess.run(cmd, env={**os.environ, **(env or {})}).returncode


def _evaluate(run_file: Path, limit: int | None) -> dict[str, Any] | None:
    from alignkit.config.data import DataConfig
    from alignkit.config.yamlio import read_yaml
    from alignkit.data.mixer import load_mixture
    from alignkit.eval import prefs

    run = read_yaml(run_file)
    task, cfg = run["task"], run["config"]
    out = cfg["train"]["output_dir"]
    splits = load_mixture(DataConfig.model_validate(cfg["data"]), task)
    if "test" not in splits or len(splits["test"]) == 0:
        print(f"alignkit sweep: {out}: the data has no test split; nothing to evaluate", file=sys.stderr)
        return None
    test = splits["test"]
    if limit:
        test = test.select(range(min(limit, len(test))))
    rows = test.to_list()
    train = cfg.get("train") or {}
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if task == "sft":
        res = prefs.eval_loss(out, rows, batch_size=int(train.get("per_device_eval_batch_size") or 8),
                              max_length=train.get("max_length"), device=device)
    else:
        ref = cfg["model"].get("model_name_or_path")
        ref = ref if ref and Path(ref).is_dir() else None  # a Hub id would be downloaded: the log-p accuracy only
        res = prefs.preference_metrics(out, rows, ref_model_dir=ref, beta=float(train.get("beta") or 0.1),
                                       batch_size=int(train.get("per_device_eval_batch_size") or 16), device=device)
        res["ref_model_path"] = ref
    return {"benchmark": BENCH[task], "model_path": out, "data": f"{run_file} (the run's test split)", **res}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alignkit.sweep.evaluate")
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    from alignkit import ui
    from alignkit.errors import AlignkitError

    try:
        result = _evaluate(args.run, args.limit)
    except AlignkitError as exc:
        ui.print_error(exc)
        return exc.exit_code
    if result is None:
        return 0
    from alignkit.eval.bench import write_results

    path = results_path(result["model_path"], "sft" if result["benchmark"] == "loss" else "dpo")
    write_results(path, result)
    shown = {k: result[k] for k in ("loss", "perplexity", "accuracy_logp", "accuracy_reward") if k in result}
    print(f"alignkit sweep: eval {result['benchmark']} of {result['model_path']}: {shown} -> {path}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
