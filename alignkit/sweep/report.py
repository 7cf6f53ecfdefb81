"""``alignkit sweep report``: the status table as markdown, and two PNGs: every point's training curves
(``curves.png``) and each final metric against each swept value (``metrics_vs_values.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignkit.errors import DataError, Problem
from alignkit.sweep import status as status_mod


def _short(values: dict[str, Any]) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={status_mod._fmt(v)}" for k, v in values.items())


def _save(fig, path: Path) -> None:
    import io

    from alignkit.fsutil import write_bytes_atomic

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    write_bytes_atomic(path, buf.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(task: str, rows: list[status_mod.PointStatus], path: Path) -> bool:
    """One panel per metric (train loss, eval loss, reward accuracy for DPO); one color per point."""
    panels = [("loss", "train loss"), ("eval_loss", "eval loss")]
    if task == "dpo":
        panels.append(("eval_rewards/accuracies", "eval reward accuracy"))
    panels = [(m, t) for m, t in panels if any(r.curves.get(m) for r in rows)]
    if not panels:
        return False
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20")
    for ax, (metric, title) in zip(axes[0], panels):
        for i, r in enumerate(rows):
            pts = r.curves.get(metric) or []
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(xs, ys, color=cmap(i % cmap.N), marker="o" if len(pts) < 12 else None, markersize=3,
                    linewidth=1.6, label=f"p{r.index:02d}  {_short(r.values)}")
        ax.set_title(title)
        ax.set_xlabel("step")
        steps = {s for r in rows for s, _ in r.curves.get(metric) or []}
        if len(steps) == 1:  # one eval at the end: one tick, not a fractional axis around it
            (only,) = steps
            ax.set_xlim(only - 1, only + 1)
            ax.set_xticks([only])
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        h, lab = ax.get_legend_handles_labels()
        for hh, ll in zip(h, lab):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    fig.legend(handles, labels, loc="lower center", ncol=min(3, max(1, len(labels))), fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, -0.02 - 0.045 * ((len(labels) + 2) // 3)))
    fig.suptitle("sweep: training curves per point", fontsize=12)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def plot_metrics(task: str, grid: dict[str, list[Any]], rows: list[status_mod.PointStatus], path: Path) -> bool:
    """Rows: final eval loss (else train loss), reward accuracy (DPO); columns: the swept keys. Each line joins
    the points that share the other keys' values."""
    metrics = []
    if any(r.eval_loss is not None for r in rows):
        metrics.append(("eval_loss", "final eval loss"))
    elif any(r.train_loss is not None for r in rows):
        metrics.append(("train_loss", "final train loss"))
    if task == "dpo" and any(r.reward_acc is not None for r in rows):
        metrics.append(("reward_acc", "final reward accuracy"))
    keys = [k for k, vals in grid.items() if len(vals) > 1] or list(grid)
    if not metrics or not keys:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(len(metrics), len(keys), figsize=(5.0 * len(keys), 3.8 * len(metrics)), squeeze=False)
    for c, key in enumerate(keys):
        values = list(grid[key])
        numeric = _numeric(values)
        log = numeric and all(v > 0 for v in values) and max(values) / min(values) >= 10
        others = [k for k in grid if k != key]
        for r_i, (attr, title) in enumerate(metrics):
            ax = axes[r_i][c]
            lines: dict[tuple, list[tuple[Any, float]]] = {}
            for r in rows:
                y = getattr(r, attr)
                if y is None or key not in r.values:
                    continue
                group = tuple((k, str(r.values.get(k))) for k in others)
                x = r.values[key] if numeric else values.index(r.values[key]) if r.values[key] in values else None
                if x is not None:
                    lines.setdefault(group, []).append((x, y))
            for g_i, (group, pts) in enumerate(sorted(lines.items())):
                pts.sort()
                xs, ys = zip(*pts)
                label = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in group) or None
                ax.plot(xs, ys, marker="o", linewidth=1.6, color=f"C{g_i % 10}", label=label)
            if log:
                ax.set_xscale("log")
            if numeric:
                ax.set_xticks(values)
                ax.set_xticklabels([status_mod._fmt(v) for v in values])
                ax.minorticks_off()
            else:
                ax.set_xticks(range(len(values)))
                ax.set_xticklabels([str(v) for v in values])
            ax.set_xlabel(key)
            ax.set_ylabel(title)
            ax.grid(True, alpha=0.3)
            if any(g for g in lines) and r_i == 0:
                ax.legend(fontsize=8, frameon=False)
    fig.suptitle("sweep: final metrics against each swept value", fontsize=12)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


def make_report(sweep_dir: str | Path, output: str | Path | None = None) -> dict[str, Any]:
    """Write ``report.md`` and the PNGs into ``output`` (default ``SWEEP_DIR/report``)."""
    from alignkit.fsutil import write_atomic

    sweep_dir = Path(sweep_dir)
    m, rows = status_mod.sweep_status(sweep_dir)
    if not any(r.curves for r in rows):
        raise DataError(Problem(str(sweep_dir), "no point has logged anything yet (no trainer_state.json)",
                                "wait for the first checkpoint or the end of a point; `alignkit sweep status` "
                                "shows where they stand"))
    out = Path(output) if output is not None else sweep_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    if plot_curves(m.task, rows, out / "curves.png"):
        plots.append("curves.png")
    if plot_metrics(m.task, m.grid, rows, out / "metrics_vs_values.png"):
        plots.append("metrics_vs_values.png")
    header, table = status_mod.table(m, rows)
    md = [f"# alignkit sweep: {m.task}", "",
          f"Sweep dir: `{sweep_dir}` · recipe `{m.recipe or '-'}` · profile `{m.profile or '-'}` · "
          f"{len(rows)} points", ""]
    md += ["Grid: " + "; ".join(f"`{k}` = {', '.join(status_mod._fmt(v) for v in vals)}"
                                for k, vals in m.grid.items()), ""]
    ranked = _ranked(rows)
    if ranked:
        md += [f"Best by {ranked[0]}: p{ranked[1].index:02d} ({_short(ranked[1].values)}) = "
               f"{status_mod._fmt(ranked[2])}", ""]
    md += [status_mod.markdown(header, table), "## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    report = out / "report.md"
    write_atomic(report, "\n".join(md))
    return {"report": str(report), "plots": [str(out / p) for p in plots], "table": status_mod.markdown(header, table)}


def _ranked(rows: list[status_mod.PointStatus]):
    """(metric, best point, value): the offline eval when there is one (highest preference accuracy, lowest
    loss), else the lowest final eval loss, else the lowest final train loss."""
    for column, higher in (("prefs acc (reward)", True), ("prefs acc (log p)", True), ("offline eval loss", False)):
        done = [r for r in rows if column in r.evals]
        if done:
            best = (max if higher else min)(done, key=lambda r: r.evals[column])
            return f"offline eval, {column}", best, best.evals[column]
    for attr, label in (("eval_loss", "final eval loss"), ("train_loss", "final train loss")):
        done = [r for r in rows if getattr(r, attr) is not None]
        if done:
            best = min(done, key=lambda r: getattr(r, attr))
            return label, best, getattr(best, attr)
    return None
