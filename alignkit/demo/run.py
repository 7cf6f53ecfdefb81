"""`alignkit demo`: SFT then DPO on the embedded tiny model, through the real CLI, with before/after numbers.

``run_demo(out)`` builds the demo assets, then runs, as child processes::

    python -m alignkit sft --recipe tiny --profile cpu --output_dir OUT/sft
    python -m alignkit dpo --recipe tiny --profile cpu --model_name_or_path OUT/sft --output_dir OUT/dpo

and measures on held-out demo data:

* the SFT eval loss (mean NLL of assistant tokens) of the untrained model and of the SFT model;
* the preference accuracy (log p(chosen) > log p(rejected)) of the SFT model (= before DPO) and of
  the DPO model, plus the DPO model's implicit-reward accuracy against the SFT model.

It writes into OUT: ``sft.log`` / ``dpo.log`` (each child's output), ``loss_curves.png`` (train loss
per step of both stages, from their ``trainer_state.json``) and ``summary.json``; and prints a table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Sequence

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


def find_trainer_state(stage_dir: Path) -> Path | None:
    """``stage_dir/trainer_state.json``, else the one in the latest ``checkpoint-N`` directory."""
    stage_dir = Path(stage_dir)
    top = stage_dir / "trainer_state.json"
    if top.is_file():
        return top
    best: tuple[int, Path] | None = None
    for p in stage_dir.glob("checkpoint-*/trainer_state.json"):
        try:
            step = int(p.parent.name.split("-", 1)[1])
        except ValueError:
            continue
        if best is None or step > best[0]:
            best = (step, p)
    return best[1] if best else None


def load_log_history(stage_dir: Path) -> list[dict[str, Any]]:
    """The Trainer's ``log_history`` of a stage's output directory ([] when there is none)."""
    path = find_trainer_state(stage_dir)
    if path is None:
        return []
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    history = state.get("log_history") if isinstance(state, dict) else None
    return [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for h in history:
        if key in h and "step" in h:
            try:
                x, y = float(h["step"]), float(h[key])
            except (TypeError, ValueError):
                continue
            xs.append(x)
            ys.append(y)
    return xs, ys


def plot_loss_curves(stage_dirs: dict[str, Path], out_png: Path) -> Path:
    """One subplot per stage: train loss (and eval loss, if logged) against the step. Atomic PNG."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * max(1, len(stage_dirs)), 4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(1, len(stage_dirs)), squeeze=False)[0]
    for ax, (name, d) in zip(axes, stage_dirs.items()):
        history = load_log_history(d)
        xs, ys = _series(history, "loss")
        ax.set_title(f"{name.upper()}")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(True, alpha=0.3)
        if xs:
            ax.plot(xs, ys, marker="o", markersize=3, label="train loss")
        ex, ey = _series(history, "eval_loss")
        if ex:
            ax.plot(ex, ey, marker="s", linestyle="--", label="eval loss")
        ax2 = None
        ax_x, ax_y = _series(history, "rewards/accuracies")
        if ax_x:
            ax2 = ax.twinx()
            ax2.plot(ax_x, ax_y, color="tab:green", alpha=0.6, label="reward accuracy")
            ax2.set_ylim(-0.05, 1.05)
            ax2.set_ylabel("reward accuracy")
        if not xs and not ex:
            ax.text(0.5, 0.5, "no trainer_state.json log", ha="center", va="center", transform=ax.transAxes)
        else:
            handles, labels = ax.get_legend_handles_labels()
            if ax2 is not None:
                h2, l2 = ax2.get_legend_handles_labels()
                handles, labels = handles + h2, labels + l2
            ax.legend(handles, labels, loc="upper right", fontsize="small")
    fig.suptitle("alignkit demo: training loss")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_bytes_atomic(Path(out_png), buf.getvalue())
    return Path(out_png)


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
        "eval loss (assistant tokens)",
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
) -> float:
    """Run one child process, streaming its output into ``log_path`` with a spinner; seconds taken.

    A non-zero exit is a RuntimeFailure that quotes the last lines of the log.
    """
    from rich.console import Console
    from rich.markup import escape

    console = console or Console(stderr=True)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=15)
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log, console.status(f"[bold]{name}[/]: starting") as status:
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
                chunk = proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else proc.stdout.read(4096)
                if not chunk:
                    break
                text = chunk.decode("utf-8", errors="replace")
                log.write(text)
                log.flush()
                pending += text
                *done, pending = pending.replace("\r", "\n").split("\n")
                for line in done:
                    if line.strip():
                        tail.append(line.rstrip())
                shown = (pending.strip() or (tail[-1] if tail else ""))[-100:]
                status.update(f"[bold]{name}[/] ({time.monotonic() - start:.0f} s): {escape(shown)}")
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


def run_demo(
    output_dir: Path,
    *,
    python: str = sys.executable,
    console=None,
    sft_args: Sequence[str] = (),
    dpo_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the demo into ``output_dir`` and return the summary (also written to summary.json).

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

    with console.status("building the demo model and data"):
        # where the children will look for `demo:` paths
        assets = ensure_demo_assets(demo_root(env) if env is not None else None)
    console.print(f"demo assets: {assets.root}" + (" (built)" if assets.built else " (cached)"))
    sft_test = _load_jsonl(assets.sft_test)
    prefs_test = _load_jsonl(assets.prefs_test)

    with console.status("measuring the untrained model"):
        base_loss = eval_loss(assets.model_dir, sft_test)
        base_pref = preference_metrics(assets.model_dir, prefs_test)

    common = ["--recipe", "tiny", "--profile", "cpu"]
    sft_cmd = [python, "-m", "alignkit", "sft", *common, "--output_dir", str(sft_dir), *sft_args]
    sft_seconds = run_stage("sft", sft_cmd, out / "sft.log", console=console, env=env)
    console.print(f"SFT done in {sft_seconds:.1f} s -> {sft_dir}")

    with console.status("measuring the SFT model"):
        sft_loss = eval_loss(sft_dir, sft_test)
        sft_pref = preference_metrics(sft_dir, prefs_test)

    dpo_cmd = [python, "-m", "alignkit", "dpo", *common, "--model_name_or_path", str(sft_dir),
               "--output_dir", str(dpo_dir), *dpo_args]  # fmt: skip
    dpo_seconds = run_stage("dpo", dpo_cmd, out / "dpo.log", console=console, env=env)
    console.print(f"DPO done in {dpo_seconds:.1f} s -> {dpo_dir}")

    with console.status("measuring the DPO model"):
        dpo_pref = preference_metrics(dpo_dir, prefs_test, ref_model_dir=sft_dir, beta=dpo_beta(dpo_dir))

    plot = plot_loss_curves({"sft": sft_dir, "dpo": dpo_dir}, out / PLOT_FILE)
    summary: dict[str, Any] = {
        "sft_eval_loss_before": base_loss["loss"],
        "sft_eval_loss_after": sft_loss["loss"],
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
        "sft_seconds": sft_seconds,
        "dpo_seconds": dpo_seconds,
        "sft_dir": str(sft_dir),
        "dpo_dir": str(dpo_dir),
        "loss_plot": str(plot),
        "assets": str(assets.root),
    }
    write_summary(summary, out / SUMMARY_FILE)
    console.print(metrics_table(summary))
    console.print(f"loss curves: {plot}\nsummary: {out / SUMMARY_FILE}")
    return summary
