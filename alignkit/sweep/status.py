"""Where each point of a sweep stands, from the files alone (any machine that sees the sweep dir): its
state, steps, final train and eval loss, reward accuracy (DPO) and any offline eval results."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.sweep import runs
from alignkit.sweep.manifest import Manifest

# (column, result benchmark, metric) of `alignkit eval` results found in a point's dir
EVAL_COLUMNS = (("prefs acc (reward)", "prefs", "accuracy_reward"), ("prefs acc (log p)", "prefs", "accuracy_logp"),
                ("offline eval loss", "loss", "loss"))


@dataclass
class PointStatus:
    index: int
    name: str
    output_dir: Path
    values: dict[str, Any]
    state: str
    step: int | None = None
    max_steps: int | None = None
    train_loss: float | None = None
    eval_loss: float | None = None
    reward_acc: float | None = None
    evals: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "output_dir": str(self.output_dir), "values": self.values,
                "state": self.state, "step": self.step, "max_steps": self.max_steps, "train_loss": self.train_loss,
                "eval_loss": self.eval_loss, "reward_accuracy": self.reward_acc, "evals": self.evals}


def _state(out: Path, slurm: bool) -> str:
    status = runs.read_status(out)
    state = status.get("state")
    if state == "running" and not slurm and not runs.is_locked(out):
        return "interrupted"
    if state:
        return str(state)
    if runs.is_locked(out):
        return "starting"
    if runs.has_run(out):
        return "queued" if slurm else "interrupted"
    return "pending"


def _last(pts: list[tuple[int, float]] | None) -> float | None:
    return pts[-1][1] if pts else None


def point_status(sweep_dir: Path, m: Manifest, point: dict[str, Any]) -> PointStatus:
    from alignkit.eval import report as eval_report

    out = m.point_dir(sweep_dir, point)
    ps = PointStatus(int(point["index"]), str(point["name"]), out, dict(point.get("values") or {}),
                     _state(out, bool(m.slurm)))
    if not out.is_dir():
        return ps
    state_file = eval_report.find_trainer_state(out)
    if state_file is not None:
        import json

        try:
            st = json.loads(state_file.read_text(encoding="utf-8"))
            ps.step, ps.max_steps = st.get("global_step"), st.get("max_steps")
            ps.curves = eval_report.trainer_state_curves(state_file)
        except Exception:  # noqa: BLE001 - a damaged trainer state shows as no numbers, not a failed status
            ps.curves = {}
    ps.train_loss = _last(ps.curves.get("loss"))
    ps.eval_loss = _last(ps.curves.get("eval_loss"))
    ps.reward_acc = _last(ps.curves.get("eval_rewards/accuracies")) or _last(ps.curves.get("rewards/accuracies"))
    for res in eval_report.find_eval_results(out):
        for column, bench, metric in EVAL_COLUMNS:
            value = res.get(metric)
            if res.get("benchmark") == bench and isinstance(value, (int, float)):
                ps.evals[column] = float(value)
    return ps


def sweep_status(sweep_dir: str | Path) -> tuple[Manifest, list[PointStatus]]:
    from alignkit.sweep import manifest as manifest_mod

    sweep_dir = Path(sweep_dir)
    m = manifest_mod.read(sweep_dir)
    return m, [point_status(sweep_dir, m, p) for p in m.points]


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def table(m: Manifest, rows: list[PointStatus]) -> tuple[list[str], list[list[str]]]:
    """The status table: header and rows of text."""
    keys = list(m.grid)
    dpo = m.task == "dpo"
    eval_cols = [c for c, _, _ in EVAL_COLUMNS if any(c in r.evals for r in rows)]
    header = ["point", *keys, "state", "steps", "train loss", "eval loss"] + (["reward acc"] if dpo else []) + eval_cols
    out = []
    for r in rows:
        steps = "–" if r.step is None else (f"{r.step}/{r.max_steps}" if r.max_steps else str(r.step))
        row = [f"p{r.index:02d}", *(_fmt(r.values.get(k)) for k in keys), r.state, steps, _fmt(r.train_loss),
               _fmt(r.eval_loss)]
        if dpo:
            row.append(_fmt(r.reward_acc))
        row += [_fmt(r.evals.get(c)) for c in eval_cols]
        out.append(row)
    return header, out


def markdown(header: list[str], rows: list[list[str]]) -> str:
    def cell(v: str) -> str:
        return v.replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
