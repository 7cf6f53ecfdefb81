"""``alignkit report RUN_DIR...``: training curves and eval results of several runs, side by side.

For each run directory it reads
* ``trainer_state.json`` (the run dir's own, else the newest ``checkpoint-*/``): ``log_history``;
* TensorBoard event files anywhere below the run dir (``train/loss``, ``eval/rewards/margins``...),
  used for every metric the trainer state does not have;
* eval results: every ``results.json`` below the run dir written by ``alignkit eval``
  (``benchmark`` = ``mt-bench``, ``alpaca-eval``, ``prefs``, ``loss``, ``lm-eval``).

A directory that is not a run itself but holds runs (``runs/demo`` with ``sft/`` and ``dpo/``) stands for
those runs, one column each: runs are never merged. It writes PNG plots (matplotlib, Agg) and ``report.md``
(tables) into the output directory: ``<first run>/report`` unless one is given.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.errors import DataError, Problem, UsageError
from alignkit.fsutil import write_atomic

Series = list[tuple[int, float]]

#: (metric, label) headline numbers per benchmark, in table order
HEADLINES: dict[str, list[tuple[str, str]]] = {
    "mt-bench": [("overall", "MT-Bench overall"), ("turn_1", "MT-Bench turn 1"), ("turn_2", "MT-Bench turn 2")],
    "alpaca-eval": [
        ("win_rate", "AlpacaEval win rate"),
        ("standard_error", "AlpacaEval std. error"),
        ("discrete_win_rate", "AlpacaEval discrete win rate"),
        ("length_controlled_win_rate", "AlpacaEval LC win rate"),
    ],
    "prefs": [
        ("accuracy_reward", "preference accuracy (implicit reward)"),
        ("mean_reward_margin", "mean reward margin"),
        ("accuracy_logp", "preference accuracy (log p)"),
        ("mean_logp_margin", "mean log p margin"),
    ],
    "loss": [("loss", "eval loss"), ("perplexity", "perplexity")],
}
CURVE_GROUPS = {
    "loss": ["loss", "eval_loss"],
    "rewards_margins": ["rewards/margins", "eval_rewards/margins"],
    "rewards_accuracies": ["rewards/accuracies", "eval_rewards/accuracies"],
    "rewards_chosen_rejected": ["rewards/chosen", "rewards/rejected", "eval_rewards/chosen", "eval_rewards/rejected"],
    "learning_rate": ["learning_rate"],
}
_SKIP_KEYS = {"step", "epoch", "total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second",
              "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "train_loss"}  # fmt: skip


@dataclass
class RunData:
    path: Path
    label: str
    curves: dict[str, Series] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)


def _step_of(p: Path) -> int:
    m = re.search(r"checkpoint-(\d+)$", p.name)
    return int(m.group(1)) if m else -1


def find_trainer_state(run_dir: Path) -> Path | None:
    own = run_dir / "trainer_state.json"
    if own.is_file():
        return own
    ckpts = sorted((p for p in run_dir.glob("checkpoint-*") if (p / "trainer_state.json").is_file()), key=_step_of)
    return ckpts[-1] / "trainer_state.json" if ckpts else None


def trainer_state_curves(path: Path) -> dict[str, Series]:
    fix = "it is written by the Trainer at each save: delete the damaged file, or point at the run's checkpoint-* dir"
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(Problem(where=str(path), message=f"unreadable trainer state: {e}", fix=fix)) from None
    if not isinstance(state, dict) or not isinstance(state.get("log_history", []), list):
        raise DataError(Problem(where=str(path), message="is not a trainer state (expected an object with a "
                                "'log_history' list)", fix=fix))
    curves: dict[str, Series] = {}
    for entry in state.get("log_history", []):
        if not isinstance(entry, dict) or "step" not in entry:
            continue
        step = int(entry["step"])
        for k, v in entry.items():
            if k in _SKIP_KEYS or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if math.isfinite(float(v)):
                curves.setdefault(k, []).append((step, float(v)))
    return curves


def _tb_name(tag: str) -> str:
    if tag.startswith("train/"):
        return tag[len("train/") :]
    if tag.startswith("eval/"):
        return "eval_" + tag[len("eval/") :]
    return tag


def tensorboard_curves(run_dir: Path) -> dict[str, Series]:
    files = sorted(run_dir.rglob("events.out.tfevents.*"))
    if not files:
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: dict[str, Series] = {}
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        try:
            acc.Reload()
        except Exception as e:  # noqa: BLE001 - a corrupt event file is reported, not a crash
            raise DataError(Problem(where=str(f), message=f"unreadable TensorBoard event file: {type(e).__name__}")) from None
        for tag in acc.Tags().get("scalars", []):
            name = _tb_name(tag)
            if name in _SKIP_KEYS:
                continue
            curves.setdefault(name, []).extend((int(ev.step), float(ev.value)) for ev in acc.Scalars(tag))
    for name, pts in curves.items():  # several files (restarts): keep the last value per step
        curves[name] = sorted(dict(pts).items())
    return curves


def find_eval_results(run_dir: Path) -> list[dict]:
    found = []
    for p in sorted(run_dir.rglob("results.json")):
        if "checkpoint-" in str(p.relative_to(run_dir)):
            continue
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("benchmark"), str):
            data["_path"] = str(p)
            found.append(data)
    return found


def collect_run(run_dir: Path, label: str | None = None) -> RunData:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(Problem(where=str(run_dir), message="not a directory", fix="give run output directories"))
    run = RunData(path=run_dir, label=label or run_dir.name)
    state = find_trainer_state(run_dir)
    if state is not None:
        run.curves.update(trainer_state_curves(state))
        run.sources.append(str(state))
    tb = tensorboard_curves(run_dir)
    if tb:
        run.sources.append("tensorboard")
        for k, v in tb.items():
            run.curves.setdefault(k, v)
    run.evals = find_eval_results(run_dir)
    return run


def is_run(d: Path) -> bool:
    """A training run's output dir: alignkit's run record, or the Trainer's state (own or a checkpoint's)."""
    d = Path(d)
    from alignkit.launch.run import RunDir

    return RunDir.of(d).run_file.is_file() or find_trainer_state(d) is not None


def _started(d: Path) -> float:
    from alignkit.launch.run import RunDir

    for marker in (RunDir.of(d).run_file, find_trainer_state(d)):
        if marker is not None and marker.is_file():
            return marker.stat().st_mtime
    return d.stat().st_mtime


def runs_under(d: Path) -> list[Path]:
    """The runs a directory of runs holds (its subdirs that are runs), oldest first; [] for anything else."""
    d = Path(d)
    if not d.is_dir() or is_run(d):
        return []
    subs = [c for c in d.iterdir() if c.is_dir() and is_run(c)]
    return sorted(subs, key=lambda c: (_started(c), c.name))


def expand_run_dirs(run_dirs: list[Path]) -> list[Path]:
    """Each directory of runs replaced by its runs; a directory that holds runs and loose results of its own
    (TensorBoard logs, eval results beside the runs) is refused: which column would they belong to?"""
    out: list[Path] = []
    for p in map(Path, run_dirs):
        subs = runs_under(p)
        if not subs:
            out.append(p)
            continue
        loose = [f for f in p.iterdir() if f.is_file() and (f.name == "results.json" or
                                                            f.name.startswith("events.out.tfevents."))]
        if loose:
            raise UsageError(Problem(
                where=str(p), message="holds the runs " + ", ".join(s.name for s in subs) + " and results of its "
                "own (" + ", ".join(f.name for f in loose[:3]) + ")",
                fix="name the runs to compare: " + " ".join(str(s) for s in subs)))
        out.extend(subs)
    return out


def _labels(run_dirs: list[Path]) -> list[str]:
    names = [p.resolve().name for p in run_dirs]
    out = []
    for p, n in zip(run_dirs, names):
        out.append(f"{p.resolve().parent.name}/{n}" if names.count(n) > 1 else n)
    return out


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.4g}" if abs(x) < 1e4 else f"{x:.3e}"
    return str(x)


def _save_png(fig, path: Path) -> None:
    """savefig into memory, then a temp file + rename: a killed report never leaves half a PNG."""
    import io

    from alignkit.fsutil import write_bytes_atomic

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_bytes_atomic(path, buf.getvalue())


_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "v", "D", "x")


def curve_styles(runs: list[RunData], metrics: list[str]) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(run label, metric) -> (colour, line style, marker) for every curve drawn in one plot. Every curve of
    a plot looks different: one run, a colour per metric (train solid, eval dashed); several runs, a colour
    per run and a line style and marker per metric."""
    drawn = [(r.label, m) for r in runs for m in metrics if r.curves.get(m)]
    out: dict[tuple[str, str], tuple[str, str, str]] = {}
    if len({label for label, _ in drawn}) <= 1:
        for i, (label, m) in enumerate(drawn):
            out[(label, m)] = (f"C{i % 10}", "--" if m.startswith("eval_") else "-", _MARKERS[i % len(_MARKERS)])
        return out
    run_index = {r.label: i for i, r in enumerate(runs)}
    for label, m in drawn:
        j = metrics.index(m)
        out[(label, m)] = (f"C{run_index[label] % 10}", _STYLES[j % len(_STYLES)], _MARKERS[j % len(_MARKERS)])
    return out


def _plot_curves(runs: list[RunData], metrics: list[str], title: str, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = curve_styles(runs, metrics)
    if not styles:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run in runs:
        for m in metrics:
            if (run.label, m) not in styles:
                continue
            color, style, marker = styles[(run.label, m)]
            xs, ys = zip(*run.curves[m])
            ax.plot(xs, ys, linestyle=style, color=color, marker=marker if len(xs) < 30 else None, markersize=4,
                    label=f"{run.label}: {m}")
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)
    return True


def _plot_evals(runs: list[RunData], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for bench, items in HEADLINES.items():
        for metric, label in items:  # the first headline metric any run has
            vals = [(run.label, _latest_eval(run, bench).get(metric)) for run in runs]
            if any(isinstance(v, (int, float)) for _, v in vals):
                panels.append((label, vals))
                break
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
    for ax, (label, vals) in zip(axes[0], panels):
        names = [n for n, _ in vals]
        ys = [v if isinstance(v, (int, float)) else 0.0 for _, v in vals]
        bars = ax.bar(range(len(names)), ys, color=[f"C{i % 10}" for i in range(len(names))])
        for b, (_, v) in zip(bars, vals):
            ax.annotate(_fmt(v), (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
        ax.set_title(label)
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)
    return True


def plot_mtbench_categories(results: list[tuple[str, dict]], path: Path) -> bool:
    """Grouped bars: per-category MT-Bench score (overall) for each run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats: list[str] = []
    for _, r in results:
        for c in r.get("categories", {}):
            if c not in cats:
                cats.append(c)
    if not cats:
        return False
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(cats)), 4))
    width = 0.8 / max(1, len(results))
    for i, (label, r) in enumerate(results):
        ys = [(r.get("categories", {}).get(c) or {}).get("overall") or 0.0 for c in cats]
        ax.bar([x + i * width for x in range(len(cats))], ys, width, label=label, color=f"C{i % 10}")
    ax.set_xticks([x + width * (len(results) - 1) / 2 for x in range(len(cats))], cats, rotation=20, ha="right")
    ax.set_ylim(0, 10)
    ax.set_ylabel("score (1-10)")
    ax.set_title("MT-Bench by category")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_png(fig, path)
    plt.close(fig)
    return True


def _latest_eval(run: RunData, bench: str) -> dict:
    hits = [e for e in run.evals if e.get("benchmark") == bench]
    if not hits:
        return {}
    return max(hits, key=lambda e: Path(e["_path"]).stat().st_mtime)


def _last(pts: Series | None) -> float | None:
    return pts[-1][1] if pts else None


def default_output(run_dirs: list[Path]) -> Path:
    """Where a report goes unless told: ``report/`` in the first run (never the current directory)."""
    return Path(run_dirs[0]) / "report"


def make_report(run_dirs: list[Path], output: Path | None = None) -> dict[str, Any]:
    """Collect every run (a directory of runs counts as its runs), write PNGs and ``report.md`` into
    ``output`` (default: ``<first run>/report``); returns what was written."""
    if not run_dirs:
        raise UsageError(Problem(where="RUN_DIR", message="no run directories given"))
    for p in map(Path, run_dirs):
        if not p.is_dir():
            raise UsageError(Problem(where=str(p), message="not a directory", fix="give run output directories"))
    given = [Path(p) for p in run_dirs]
    run_dirs = expand_run_dirs(given)
    labels = _labels([Path(p) for p in run_dirs])
    runs = [collect_run(Path(p), label) for p, label in zip(run_dirs, labels)]
    if not any(r.curves or r.evals for r in runs):
        raise DataError(
            Problem(
                where=", ".join(str(p) for p in run_dirs),
                message="no trainer_state.json, TensorBoard logs or eval results found",
                fix="point at the output_dir of a training run (or a dir holding `alignkit eval` results)",
            )
        )
    output = Path(output) if output is not None else default_output(run_dirs)
    output.mkdir(parents=True, exist_ok=True)
    plots: list[str] = []
    for name, metrics in CURVE_GROUPS.items():
        p = output / f"{name}.png"
        if _plot_curves(runs, metrics, name.replace("_", " "), p):
            plots.append(p.name)
    if _plot_evals(runs, output / "eval.png"):
        plots.append("eval.png")
    mt = [(r.label, _latest_eval(r, "mt-bench")) for r in runs if _latest_eval(r, "mt-bench")]
    if mt and plot_mtbench_categories(mt, output / "mt_bench_categories.png"):
        plots.append("mt_bench_categories.png")

    md = ["# alignkit report", "", "Runs: " + ", ".join(f"`{r.label}` ({r.path})" for r in runs), ""]
    md += ["## Training", "", "| metric | " + " | ".join(r.label for r in runs) + " |", "|---|" + "---:|" * len(runs)]
    train_rows = [
        ("steps logged", lambda r: max((s for pts in r.curves.values() for s, _ in pts), default=None)),
        ("final train loss", lambda r: _last(r.curves.get("loss"))),
        ("final eval loss", lambda r: _last(r.curves.get("eval_loss"))),
        ("final rewards/margins", lambda r: _last(r.curves.get("rewards/margins"))),
        ("final rewards/accuracies", lambda r: _last(r.curves.get("rewards/accuracies"))),
        ("final eval rewards/margins", lambda r: _last(r.curves.get("eval_rewards/margins"))),
        ("final eval rewards/accuracies", lambda r: _last(r.curves.get("eval_rewards/accuracies"))),
    ]
    for label, fn in train_rows:
        vals = [fn(r) for r in runs]
        if any(v is not None for v in vals):
            md.append(f"| {label} | " + " | ".join(_fmt(v) for v in vals) + " |")
    md += ["", "## Evaluation", "", "| metric | " + " | ".join(r.label for r in runs) + " |", "|---|" + "---:|" * len(runs)]
    any_eval = False
    notes: list[str] = []
    for bench, items in HEADLINES.items():
        latest = [_latest_eval(r, bench) for r in runs]
        if not any(latest):
            continue
        for metric, label in items:
            vals = [e.get(metric) if e else None for e in latest]
            if metric == "length_controlled_win_rate":
                shown = [_fmt(v) if v is not None else ("unavailable" if e else "–") for v, e in zip(vals, latest)]
                md.append(f"| {label} | " + " | ".join(shown) + " |")
                for r, e in zip(runs, latest):
                    if e and e.get(metric) is None and e.get("length_controlled_note"):
                        notes.append(f"{r.label}: length-controlled win rate unavailable: {e['length_controlled_note']}")
            elif any(v is not None for v in vals):
                md.append(f"| {label} | " + " | ".join(_fmt(v) for v in vals) + " |")
                any_eval = True
        if bench == "mt-bench":
            cats: list[str] = []
            for e in latest:
                for c in (e or {}).get("categories", {}):
                    if c not in cats:
                        cats.append(c)
            for c in cats:
                vals = [((e or {}).get("categories", {}).get(c) or {}).get("overall") for e in latest]
                md.append(f"| MT-Bench {c} | " + " | ".join(_fmt(v) for v in vals) + " |")
    if not any_eval:
        md.append("| (no eval results found) |" + " – |" * len(runs))
    if notes:
        md += [""] + [f"- {n}" for n in notes]
    md += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    report = output / "report.md"
    write_atomic(report, "\n".join(md))
    return {"report": str(report), "plots": [str(output / p) for p in plots], "runs": [r.label for r in runs],
            "run_dirs": [str(r.path) for r in runs],
            "expanded": {str(p): [s.name for s in runs_under(p)] for p in given if runs_under(p)}}
