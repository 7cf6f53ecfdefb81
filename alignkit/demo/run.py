"""`alignkit demo`: SFT then DPO on the embedded tiny model, through the real CLI, with before/after numbers.

``run_demo(out)`` builds the demo assets, then runs, as child processes::

    python -m alignkit sft --recipe tiny --profile cpu --output_dir OUT/sft
    python -m alignkit dpo --recipe tiny --profile cpu --model_name_or_path OUT/sft --output_dir OUT/dpo

and measures on held-out demo data:

* the SFT eval loss (mean NLL of assistant tokens) of the untrained model and of the SFT model;
* the preference accuracy (log p(chosen) > log p(rejected)) of the SFT model (= before DPO) and of
  the DPO model, plus the DPO model's implicit-reward accuracy against the SFT model.

It writes into OUT: ``sft.log`` / ``dpo.log`` (each child's whole output; the screen gets one progress
line per stage), ``demo.log`` (library warnings of its own measurements), ``loss_curves.png`` (the
Trainer's losses of both stages, each named for what it measures) and ``summary.json``; and prints a table
and the next steps. Run again, a stage an earlier run completed is kept (and said so, with its real time)
unless ``overwrite``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Sequence

from alignkit.demo.plot import (  # noqa: F401 - the plot's pieces, also reachable from here
    HELDOUT_LOSS, find_trainer_state, load_log_history, loss_figure, plot_loss_curves)
from alignkit.errors import Problem, RuntimeFailure
from alignkit.fsutil import write_bytes_atomic
from alignkit.launch.run import RunDir

SUMMARY_FILE = "summary.json"
PLOT_FILE = "loss_curves.png"
STAGES = ("sft", "dpo")


# ---------------------------------------------------------------------------------------------
# small pieces (unit-tested on their own)


def write_summary(summary: dict[str, Any], path: Path) -> Path:
    """Write ``summary`` as indented JSON, atomically."""
    write_bytes_atomic(Path(path), (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return Path(path)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.1f} %"


def metrics_table(summary: dict[str, Any]):
    """A rich Table of the demo's before/after numbers."""
    from rich.table import Table

    t = Table(title="alignkit demo: held-out metrics", show_lines=False)
    t.add_column("metric")
    t.add_column("before", justify="right")
    t.add_column("after", justify="right")
    t.add_column("stage")
    t.add_row(
        HELDOUT_LOSS,
        _fmt(summary.get("sft_eval_loss_before")),
        _fmt(summary.get("sft_eval_loss_after")),
        "SFT",
    )
    t.add_row(
        "preference accuracy (log p)",
        _pct(summary.get("pref_accuracy_before_dpo")),
        _pct(summary.get("pref_accuracy_after_dpo")),
        "DPO",
    )
    t.add_row(
        "mean log p margin (chosen - rejected)",
        _fmt(summary.get("logp_margin_before_dpo")),
        _fmt(summary.get("logp_margin_after_dpo")),
        "DPO",
    )
    t.add_row("implicit reward accuracy vs SFT", "-", _pct(summary.get("reward_accuracy_after_dpo")), "DPO")
    t.add_row(
        "wall time (s)",
        "",
        f"SFT {_fmt(summary.get('sft_seconds'), 1)} / DPO {_fmt(summary.get('dpo_seconds'), 1)}",
        "",
    )
    return t


def run_stage(
    name: str,
    cmd: Sequence[str],
    log_path: Path,
    *,
    console=None,
    env: dict[str, str] | None = None,
    interval: float = 15.0,
) -> float:
    """Run one child process, its whole output into ``log_path``; seconds taken.

    The screen gets one line about the stage (``sft: step 40/100, loss 1.23``), never the child's raw
    output (library warnings stay in the log): a spinner on a terminal, else the line every ``interval``
    seconds. A non-zero exit is a RuntimeFailure that quotes the last lines of the log.
    """
    import select

    from rich.console import Console
    from rich.markup import escape

    from alignkit.demo.progress import StageProgress

    console = console or Console(stderr=True)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=15)
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    progress = StageProgress(name, interval=interval)
    start = time.monotonic()
    tty = console.is_terminal
    spinner = console.status(f"[bold]{name}[/]: starting") if tty else contextlib.nullcontext()
    if not tty:
        console.print(f"{name}: started, output in {log_path}", markup=False, highlight=False, soft_wrap=True)
    with open(log_path, "w", encoding="utf-8") as log, spinner as status:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        try:
            proc = subprocess.Popen(
                list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env
            )
        except OSError as e:
            raise RuntimeFailure(
                Problem(where=cmd[0], message=f"cannot start {name}: {e}", fix="check the python executable")
            ) from e
        assert proc.stdout is not None
        pending = ""
        try:
            while True:
                ready, _, _ = select.select([proc.stdout], [], [], 1.0)
                if ready:
                    chunk = proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else proc.stdout.read(4096)
                    if not chunk:
                        break
                    text = chunk.decode("utf-8", errors="replace")
                    log.write(text)
                    log.flush()
                    progress.feed(text)
                    pending += text
                    *done, pending = pending.replace("\r", "\n").split("\n")
                    for line in done:
                        if line.strip():
                            tail.append(line.rstrip())
                if tty:
                    status.update(f"[bold]{name}[/] {escape(progress.line()[len(name) + 1:])}")
                else:
                    due = progress.due()
                    if due:
                        console.print(due, markup=False, highlight=False, soft_wrap=True)
            rc = proc.wait()
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        if pending.strip():
            tail.append(pending.rstrip())
    seconds = time.monotonic() - start
    if rc != 0:
        raise RuntimeFailure(
            Problem(
                where=f"alignkit {name} (exit code {rc})",
                message=f"the {name} stage failed. Last lines of its output:\n      " + "\n      ".join(tail),
                fix=f"read the full output in {log_path}",
            )
        )
    return seconds


# ---------------------------------------------------------------------------------------------
# the demo


def dpo_beta(dpo_dir: Path, default: float = 0.1) -> float:
    """The beta a DPO run trained with, from the run record alignkit writes (``alignkit/run.yaml``)."""
    import yaml

    try:
        record = yaml.safe_load(RunDir.of(dpo_dir).run_file.read_text(encoding="utf-8"))
        beta = float(record["config"]["train"]["beta"])
    except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError):
        return default
    return beta if beta > 0 else default


def _load_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def completed_stage(stage_dir: Path, previous: dict[str, Any], stage: str) -> dict[str, Any] | None:
    """What a finished earlier run of a stage left: ``{"seconds", "when"}``, or None when the stage must
    train (never run, stopped, or failed). The seconds are those the summary of that run recorded (else the
    Trainer's own train_runtime); ``when`` is when it completed."""
    status = RunDir.of(stage_dir).read_status()
    if status.get("state") != "completed":
        return None
    seconds = previous.get(f"{stage}_seconds") if previous.get(f"{stage}_dir") == str(stage_dir) else None
    if not isinstance(seconds, (int, float)):
        seconds = next((h["train_runtime"] for h in reversed(load_log_history(stage_dir))
                        if isinstance(h.get("train_runtime"), (int, float))), None)
    when = previous.get(f"{stage}_trained_at") if previous.get(f"{stage}_dir") == str(stage_dir) else None
    return {"seconds": seconds, "when": when or str(status.get("time", "")).replace("T", " ")[:16] or None}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def quiet_libraries(log_path: Path):
    """The parent's own measurements load models with transformers: their warnings (FutureWarning and
    friends, warnings.warn or logging) go to ``log_path`` (the demo's ``demo.log``), not between its lines."""
    import logging
    import warnings

    with warnings.catch_warnings(record=True) as caught, open(log_path, "a", encoding="utf-8") as log:
        warnings.simplefilter("always")
        handler = logging.StreamHandler(log)
        libs = [logging.getLogger(n) for n in ("transformers", "torch", "datasets", "accelerate")]
        saved = [(lg.handlers[:], lg.propagate) for lg in libs]
        for lg in libs:
            lg.handlers, lg.propagate = [handler], False
        try:
            yield
        finally:
            for lg, (handlers, propagate) in zip(libs, saved):
                lg.handlers, lg.propagate = handlers, propagate
            for w in caught:
                log.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno))


def next_steps(out: Path) -> str:
    """What to do after the demo: the report, the real recipe's dry run, where the logs are."""
    return "\n".join([
        "next steps:",
        f"  both runs' curves side by side (into {out / 'sft' / 'report'}):",
        f"    alignkit report {out}",
        "  the real recipe's plan, on any machine (nothing starts):",
        "    alignkit sft --recipe zephyr-7b-beta --profile full --dry-run",
        f"  each stage's full output: {out / 'sft.log'}, {out / 'dpo.log'}",
        "  train both stages again from scratch: alignkit demo --overwrite",
    ])


def run_demo(
    output_dir: Path,
    *,
    python: str = sys.executable,
    console=None,
    sft_args: Sequence[str] = (),
    dpo_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    overwrite: bool = False,
    interval: float = 15.0,
) -> dict[str, Any]:
    """Run the demo into ``output_dir`` and return the summary (also written to summary.json).

    A stage that an earlier run completed is not trained again (its timings are kept) unless ``overwrite``:
    then both train from scratch. When SFT trains, DPO trains again too (its start point changed).
    ``sft_args`` / ``dpo_args`` are appended to the child command lines (e.g. ``--max_steps 5``);
    ``env`` replaces the children's environment (default: this process's).
    """
    from rich.console import Console

    from alignkit.demo.assets import demo_root, ensure_demo_assets
    from alignkit.eval.prefs import eval_loss, preference_metrics

    console = console or Console()
    out = Path(output_dir).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    sft_dir, dpo_dir = out / "sft", out / "dpo"
    previous = _read_json(out / SUMMARY_FILE)
    demo_log = out / "demo.log"

    with console.status("building the demo model and data"), quiet_libraries(demo_log):
        # where the children will look for `demo:` paths
        assets = ensure_demo_assets(demo_root(env) if env is not None else None)
    console.print(f"demo assets: {assets.root}" + (" (built)" if assets.built else " (cached)"))
    sft_test = _load_jsonl(assets.sft_test)
    prefs_test = _load_jsonl(assets.prefs_test)

    with console.status("measuring the untrained model"), quiet_libraries(demo_log):
        base_loss = eval_loss(assets.model_dir, sft_test)
        base_pref = preference_metrics(assets.model_dir, prefs_test)

    common = ["--recipe", "tiny", "--profile", "cpu"]
    timings: dict[str, dict[str, Any]] = {}
    retrain = overwrite
    for stage, stage_dir, extra in (("sft", sft_dir, sft_args), ("dpo", dpo_dir, dpo_args)):
        done = None if retrain else completed_stage(stage_dir, previous, stage)
        if done is not None:
            took = f"trained in {done['seconds']:.0f} s" if isinstance(done["seconds"], (int, float)) else "trained"
            when = f" on {done['when']}" if done["when"] else ""
            console.print(f"{stage.upper()} already complete ({took}{when}), skipped: {stage_dir}  "
                          "(alignkit demo --overwrite trains again)", markup=False, highlight=False, soft_wrap=True)
            timings[stage] = {**done, "skipped": True}
            continue
        cmd = [python, "-m", "alignkit", stage, *common]
        if stage == "dpo":
            cmd += ["--model_name_or_path", str(sft_dir)]
        cmd += ["--output_dir", str(stage_dir), *(["--overwrite"] if retrain else []), *extra]
        seconds = run_stage(stage, cmd, out / f"{stage}.log", console=console, env=env, interval=interval)
        timings[stage] = {"seconds": seconds, "when": time.strftime("%Y-%m-%d %H:%M"), "skipped": False}
        console.print(f"{stage.upper()} trained in {seconds:.1f} s -> {stage_dir}", markup=False, highlight=False, soft_wrap=True)
        retrain = True  # a new SFT model: the DPO on top of the old one is stale

    with console.status("measuring the SFT model"), quiet_libraries(demo_log):
        sft_loss = eval_loss(sft_dir, sft_test)
        sft_pref = preference_metrics(sft_dir, prefs_test)

    with console.status("measuring the DPO model"), quiet_libraries(demo_log):
        dpo_pref = preference_metrics(dpo_dir, prefs_test, ref_model_dir=sft_dir, beta=dpo_beta(dpo_dir))

    last_sft_step = max((h["step"] for h in load_log_history(sft_dir) if isinstance(h.get("step"), (int, float))),
                        default=None)
    heldout = {"sft": [(0, base_loss["loss"])] + ([(last_sft_step, sft_loss["loss"])] if last_sft_step else [])}
    plot = plot_loss_curves({"sft": sft_dir, "dpo": dpo_dir}, out / PLOT_FILE, heldout=heldout)
    summary: dict[str, Any] = {
        "sft_eval_loss_before": base_loss["loss"],
        "sft_eval_loss_after": sft_loss["loss"],
        "sft_eval_loss_tokens": "assistant tokens only",
        "sft_eval_tokens": sft_loss["tokens"],
        "pref_accuracy_untrained": base_pref["accuracy_logp"],
        "pref_accuracy_before_dpo": sft_pref["accuracy_logp"],
        "pref_accuracy_after_dpo": dpo_pref["accuracy_logp"],
        "logp_margin_before_dpo": sft_pref["mean_logp_margin"],
        "logp_margin_after_dpo": dpo_pref["mean_logp_margin"],
        "reward_accuracy_after_dpo": dpo_pref["accuracy_reward"],
        "reward_margin_after_dpo": dpo_pref["mean_reward_margin"],
        "reward_beta": dpo_pref["beta"],
        "n_sft_test": len(sft_test),
        "n_prefs_test": len(prefs_test),
        "sft_seconds": timings["sft"]["seconds"],
        "dpo_seconds": timings["dpo"]["seconds"],
        "sft_trained_at": timings["sft"]["when"],
        "dpo_trained_at": timings["dpo"]["when"],
        "sft_skipped": timings["sft"]["skipped"],
        "dpo_skipped": timings["dpo"]["skipped"],
        "sft_dir": str(sft_dir),
        "dpo_dir": str(dpo_dir),
        "loss_plot": str(plot),
        "assets": str(assets.root),
    }
    write_summary(summary, out / SUMMARY_FILE)
    console.print(metrics_table(summary))
    console.print(f"loss curves: {plot}\nsummary: {out / SUMMARY_FILE}", markup=False, highlight=False, soft_wrap=True)
    console.print(next_steps(out), markup=False, highlight=False, soft_wrap=True)
    return summary
