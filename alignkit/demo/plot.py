"""The demo's picture: the Trainer's loss of each stage (``loss_curves.png``), each curve named for what it is.

SFT's Trainer loss is the mean over all tokens; the demo's table measures the held-out loss on assistant
tokens only, and the plot shows those measurements too, under the table's name. A DPO stage's Trainer loss is
the sum of its ``loss_type`` terms (the tiny recipe: DPO + SFT), and says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignkit.fsutil import write_bytes_atomic
from alignkit.launch.run import RunDir

#: the demo's own SFT measurement, in the table and on the plot under the same name
HELDOUT_LOSS = "held-out loss, assistant tokens only"


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


def loss_name(stage: str, stage_dir: Path) -> str:
    """What the Trainer's ``loss`` of a stage is: SFT's is the mean over all tokens (the demo's table measures
    assistant tokens only); a DPO run's is the sum of its ``loss_type`` terms (the tiny recipe: DPO + SFT)."""
    import yaml

    try:
        train = yaml.safe_load(RunDir.of(stage_dir).run_file.read_text(encoding="utf-8"))
        train = train["config"]["train"]
        assert isinstance(train, dict)
    except (OSError, TypeError, KeyError, AssertionError, yaml.YAMLError):
        train = {}
    if stage != "dpo":
        return "assistant tokens only" if train.get("assistant_only_loss") else "all tokens"
    kinds = train.get("loss_type") or ["sigmoid"]
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    names = {"sigmoid": "DPO", "sft": "SFT"}
    text = " + ".join(names.get(str(k), f"DPO ({k})") for k in kinds)
    weights = train.get("loss_weights")
    if isinstance(weights, list) and len(weights) == len(kinds) > 1 and len(set(weights)) > 1:
        text += " (weights " + ":".join(f"{w:g}" for w in weights) + ")"
    return text


def plot_loss_curves(stage_dirs: dict[str, Path], out_png: Path,
                     heldout: dict[str, list[tuple[float, float]]] | None = None) -> Path:
    """``loss_figure`` written as a PNG, atomically."""
    import io

    fig = loss_figure(stage_dirs, heldout)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_bytes_atomic(Path(out_png), buf.getvalue())
    return Path(out_png)


def loss_figure(stage_dirs: dict[str, Path], heldout: dict[str, list[tuple[float, float]]] | None = None):
    """One subplot per stage: the Trainer's train and eval loss against the step, each labelled with what it
    is (``loss_name``), and the reward accuracy of a DPO stage on a right axis. ``heldout`` adds the demo's
    own held-out measurements (stage -> [(step, loss)]), labelled as the table labels them. The legend sits
    under the axes, so that it never hides a curve."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    heldout = heldout or {}
    n = max(1, len(stage_dirs))
    fig = Figure(figsize=(5.5 * n, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (name, d) in zip(axes, stage_dirs.items()):
        history = load_log_history(d)
        what = loss_name(name, d)
        xs, ys = _series(history, "loss")
        ax.set_title(f"{name.upper()}")
        ax.set_xlabel("step")
        ax.set_ylabel(f"loss ({what})" if name == "dpo" else "loss")
        ax.grid(True, alpha=0.3)
        if xs:
            ax.plot(xs, ys, marker="o", markersize=3, color="tab:blue", label=f"train loss ({what})")
        ex, ey = _series(history, "eval_loss")
        if ex:
            ax.plot(ex, ey, marker="s", linestyle="--", color="tab:orange", label=f"eval loss ({what})")
        points = heldout.get(name) or []
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], linestyle="none", marker="D", markersize=6,
                    color="tab:red", label=HELDOUT_LOSS)
        ax2 = None
        ax_x, ax_y = _series(history, "rewards/accuracies")
        if ax_x:
            ax2 = ax.twinx()
            ax2.plot(ax_x, ax_y, color="tab:green", alpha=0.8, label="reward accuracy (train)")
            ax2.set_ylim(-0.05, 1.05)
            ax2.set_ylabel("reward accuracy")
        if not xs and not ex:
            ax.text(0.5, 0.5, "no trainer_state.json log", ha="center", va="center", transform=ax.transAxes)
        else:
            handles, labels = ax.get_legend_handles_labels()
            if ax2 is not None:
                h2, l2 = ax2.get_legend_handles_labels()
                handles, labels = handles + h2, labels + l2
            ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize="small",
                      frameon=False)
    fig.suptitle("alignkit demo: training loss")
    fig.tight_layout()
    return fig
