#!/usr/bin/env python
"""Run every benchmark and write bench/RESULTS.md (machine, medians, ratios against the issue's targets).

    python bench/run_all.py [--quick] [--only cli,mix,overhead,tokens,distributed,plan] [--out bench/RESULTS.md]

`make bench` runs this. Each benchmark runs as its own process, one after the other (they measure time: never
in parallel); their raw results go to bench/results/*.json, a plot to bench/results.png. A benchmark that
fails is reported as failed in RESULTS.md and the others still run; the exit code is then 1. With --only,
the benchmarks left out keep their last successful results in RESULTS.md (marked with when they ran).
--quick uses small settings (a smoke run while developing; its numbers are not the benchmark's).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import PY, REPO, log, machine  # noqa: E402

BENCH = REPO / "bench"

# name -> (script, full-run args, --quick args, writes --json PATH itself)
SUITE: dict[str, tuple[str, list[str], list[str], bool]] = {
    "cli": ("bench_cli.py", [], ["--runs", "3", "--trl-runs", "1"], False),
    "mix": ("bench_mix.py", [], ["--rows", "20000", "--repeat", "1"], False),
    "overhead": ("bench_overhead.py", [], ["--repeats", "1", "--max-steps", "30"], True),
    "tokens": ("bench_tokens.py", [], ["--steps", "6", "--max-length", "256", "--hidden", "64", "--layers", "2"], True),
    "distributed": ("bench_distributed.py", [], ["--steps", "6"], True),
    "plan": ("bench_plan_accuracy.py", [], ["--steps", "2", "--max-length", "128"], True),
}
TITLES = {"cli": "CLI latency", "mix": "Data: `alignkit mix build`", "overhead": "Overhead over plain TRL",
          "tokens": "Useful tokens per second (SFT batching)", "distributed": "Distributed scaling (CPU)",
          "plan": "Memory planner accuracy"}


def run_one(name: str, quick: bool, results_dir: Path) -> dict[str, Any]:
    script, full, small, writes_json = SUITE[name]
    path = BENCH / script
    rec: dict[str, Any] = {"name": name, "script": f"bench/{script}"}
    if not path.is_file():
        rec.update(status="missing", error=f"bench/{script} does not exist")
        return rec
    cmd = [PY, str(path), *(small if quick else full)]
    json_path = results_dir / f"{name}.json"
    if writes_json:
        cmd += ["--json", str(json_path)]
    elif name == "cli":
        cmd += ["--json"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    log(f"[{name}] {' '.join(cmd[1:])}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(REPO))
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    rec["command"] = "python " + " ".join([f"bench/{script}", *cmd[2:]]).replace(str(results_dir), "bench/results")
    rec["stdout"] = proc.stdout
    if proc.returncode != 0:
        rec.update(status="failed", error=proc.stderr[-3000:])
        log(f"[{name}] FAILED after {rec['seconds']} s")
        return rec
    rec["status"] = "ok"
    if writes_json and json_path.is_file():
        rec["data"] = json.loads(json_path.read_text())
    elif name == "cli":
        try:
            rec["data"] = json.loads(proc.stdout)
            json_path.write_text(proc.stdout)
        except ValueError:
            pass
    log(f"[{name}] done in {rec['seconds']} s")
    return rec


def save_record(rec: dict[str, Any], results_dir: Path) -> None:
    """What a run printed and how it went, so that a later `--only` run can keep it in RESULTS.md."""
    from alignkit.fsutil import write_json_atomic

    meta = {k: v for k, v in rec.items() if k != "data"}
    meta["finished"] = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    write_json_atomic(results_dir / f"{rec['name']}.run.json", meta)


def earlier_record(name: str, results_dir: Path) -> dict[str, Any] | None:
    """The last recorded run of a benchmark that this run skipped (`--only`), if it succeeded."""
    meta_path = results_dir / f"{name}.run.json"
    if not meta_path.is_file():
        return None
    rec = json.loads(meta_path.read_text())
    if rec.get("status") != "ok":
        return None
    data_path = results_dir / f"{name}.json"
    if data_path.is_file():
        try:
            rec["data"] = json.loads(data_path.read_text())
        except ValueError:
            pass
    rec["earlier"] = rec.get("finished", "an earlier run")
    return rec


# --------------------------------------------------------------------------- RESULTS.md


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _status(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def summary_rows(recs: dict[str, dict]) -> list[str]:
    out = [_row("benchmark", "measure", "value", "target", "status"), _row(*["---"] * 5)]

    def data(name: str) -> dict | None:
        r = recs.get(name) or {}
        return r.get("data") if r.get("status") == "ok" else None

    cli = data("cli")
    if cli:
        for r in cli.get("results", []):
            t = r.get("target")
            if t:
                out.append(_row("CLI", f"`{r['command']}` median", f"{r['median']:.3f} s", f"<= {t} s",
                                _status(r["median"] <= t)))
        if "help_vs_trl" in cli:
            out.append(_row("CLI", "`alignkit --help` / `trl sft --help`", f"{cli['help_vs_trl']:.3f}x",
                            f"<= {cli.get('help_vs_trl_target', 0.2)}x",
                            _status(cli["help_vs_trl"] <= cli.get("help_vs_trl_target", 0.2))))
        for command, b in (cli.get("before") or {}).items():
            out.append(_row("CLI", f"`{command}`: before / now", f"{b['speedup']:.1f}x", "reported", "-"))
    mix = recs.get("mix") or {}
    if mix.get("status") == "ok":  # bench_mix.py prints text: read its two verdict lines
        m = re.search(r"speed-up \(median wall\)\s*:\s*([\d.]+)\s*x", mix.get("stdout", ""))
        if m:
            out.append(_row("data", "`mix build` vs handbook-style pipeline (median wall)", f"{float(m.group(1)):.2f}x",
                            ">= 3x", _status(float(m.group(1)) >= 3)))
        m = re.search(r"cached re-run\s*:.*?([\d.]+) s as a fresh CLI process", mix.get("stdout", ""))
        if m:
            out.append(_row("data", "cached `mix build`, fresh CLI process", f"{float(m.group(1)):.2f} s", "<= 2 s",
                            _status(float(m.group(1)) <= 2)))
    ov = data("overhead")
    if ov:
        for key, label in (("step_time_ratio", "train step (median of thousands)"), ("train_loop_ratio", "train loop"),
                           ("whole_process_ratio", "whole process")):
            if key not in ov:
                continue
            t = ov["targets"]["train_loop_ratio" if key == "step_time_ratio" else key]
            out.append(_row("overhead", f"{label}, alignkit / plain TRL (median)", f"{ov[key]:.3f}", f"<= {t}",
                            _status(ov[key] <= t)))
    tok = data("tokens")
    if tok:
        # the target is for alignkit's default settings (older records: the best setting measured)
        best = tok["results"].get("alignkit_default") or max(
            (r for n, r in tok["results"].items() if n != "handbook"), key=lambda r: r["speedup_vs_handbook"],
            default=None)
        for name, r in tok["results"].items():
            if name == "handbook":
                continue
            out.append(_row("tokens", f"useful tok/s, {name} / handbook", f"{r['speedup_vs_handbook']:.2f}x",
                            f">= {tok['target_speedup']}x" if r is best else "-",
                            _status(r["speedup_vs_handbook"] >= tok["target_speedup"]) if r is best else "-"))
    dist = data("distributed")
    if dist:
        for name, r in dist["results"].items():
            if name != "1 process":
                out.append(_row("distributed", f"{name}: tok/s, peak RSS per process vs 1 process",
                                f"{r['tokens_per_s_ratio']:.2f}x, {r['peak_rss_per_process_ratio']:.2f}x", "reported",
                                "-"))
    plan = data("plan")
    if plan:
        for name, r in plan["results"].items():
            out.append(_row("planner", f"{name}: predicted vs measured peak", f"{r['error']:+.1%}", "reported", "-"))
    return out


def section(name: str, rec: dict) -> list[str]:
    lines = [f"## {TITLES[name]}", "", f"`{rec.get('command') or rec['script']}`"
             + (f" — {rec['seconds']} s" if rec.get("seconds") is not None else "")
             + (f" (kept from the run of {rec['earlier']})" if rec.get("earlier") else ""), ""]
    if rec["status"] != "ok":
        lines += [f"**{rec['status']}**: {rec.get('error', '').strip()[-1500:]}", ""]
        return lines
    d = rec.get("data")
    if name == "cli" and d and d.get("results"):
        lines += [_row("command", "median s", "min s", "max s", "runs", "target s"), _row(*["---"] * 6)]
        for r in d["results"]:
            lines.append(_row(f"`{r['command']}`", f"{r['median']:.3f}", f"{r['min']:.3f}", f"{r['max']:.3f}",
                              r.get("runs", ""), r.get("target") or "-"))
        if "help_vs_trl" in d:
            lines += ["", f"`alignkit --help` / `trl sft --help` = {d['help_vs_trl']:.3f} "
                      f"(target <= {d.get('help_vs_trl_target', 0.2)})."]
        for command, b in (d.get("before") or {}).items():
            lines.append(f"`{command}`: {b['now']:.2f} s now, {b['before']:.2f} s before ({b['source']}): "
                         f"{b['speedup']:.1f}x faster.")
        lines.append("")
    elif name == "overhead" and d:
        lines += [_row("", "alignkit", "plain TRL", "ratio", "target"), _row(*["---"] * 5)]
        if "median_step_ms" in d:
            m = d["median_step_ms"]
            lines.append(_row("train step, forward + backward (ms, median)", f"{m['alignkit']:.2f}",
                              f"{m['plain_trl']:.2f}", f"{d['step_time_ratio']:.3f}",
                              f"<= {d['targets']['train_loop_ratio']}"))
        for label, key, rk in (("train loop (train_runtime), s", "median_train_runtime_s", "train_loop_ratio"),
                               ("whole process (wall), s", "median_wall_s", "whole_process_ratio")):
            v = d[key]
            lines.append(_row(label, f"{v['alignkit']:.2f}", f"{v['plain_trl']:.2f}", f"{d[rk]:.3f}",
                              f"<= {d['targets'][rk]}"))
        c = d["median_cpu_s"]
        lines.append(_row("whole process CPU time (user+sys), s", f"{c['alignkit']:.2f}", f"{c['plain_trl']:.2f}",
                          f"{d['whole_process_cpu_ratio']:.3f}", "-"))
        via = d.get("via_accelerate_launch")
        if via:
            lines.append(_row("whole process through `accelerate launch` (--launch.launcher=accelerate), s",
                              f"{via['median_wall_s']:.2f}", f"{d['median_wall_s']['plain_trl']:.2f}",
                              f"{via['whole_process_ratio']:.3f}", "-"))
        lines += ["", f"{d['max_steps']} steps x batch {d['settings']['per_device_train_batch_size']}, "
                  f"{d['repeats']} alternating rounds; pairwise median ratios: train loop "
                  f"{d['median_pairwise_train_loop_ratio']:.3f}, whole process "
                  f"{d['median_pairwise_whole_process_ratio']:.3f}; alignkit's extra wall time per run (parent "
                  f"CLI + bookkeeping{'' if via else ' + accelerate launch'}): {d['extra_wall_s']:+.2f} s"
                  + (f"; through `accelerate launch`: {via['extra_wall_s']:+.2f} s" if via else "")
                  + f". Same training: largest per-step loss difference {d['max_loss_difference']:.1e}.", ""]
    elif name == "tokens" and d:
        info = d["data"]
        lines += [f"{info['rows']} chat-like rows: median {info['median_length']}, mean {info['mean_length']:.0f}, "
                  f"p90 {info['p90_length']} tokens, {info['truncated_share']:.0%} longer than max_length "
                  f"{d['max_length']}; batch {d['batch']}; model {info['params'] / 1e6:.2f}M parameters; one epoch "
                  "each.", "",
                  _row("setting", "TRL settings", "steps", "useful tok/s", "vs handbook", "per CPU-second vs handbook",
                       "held-out loss", "Δ loss"),
                  _row(*["---"] * 8)]
        for n, r in d["results"].items():
            lines.append(_row(n, f"`{json.dumps(r['settings'])}`", r["steps"], f"{r['useful_tokens_per_s']:.0f}",
                              f"{r['speedup_vs_handbook']:.2f}x", f"{r['cpu_speedup_vs_handbook']:.2f}x",
                              f"{r['eval_loss']:.4f}", f"{r['eval_loss_vs_handbook']:+.1%}"))
        lines += ["", f"Padded vs padding-free loss of the same batch: relative difference "
                  f"{d['padded_vs_padding_free_loss_rel_diff']:.1e}."]
        if d.get("dpo"):
            dpo = d["dpo"]
            lines += ["", "DPO in TRL 1.16: " + "; ".join(f"`{k}`: {v}" for k, v in dpo.items() if k != "speed") + "."]
            if dpo.get("speed"):
                lines += ["", _row("DPO setting", "TRL settings", "steps", "useful tok/s", "vs handbook",
                                   "per CPU-second vs handbook"), _row(*["---"] * 6)]
                for n, r in dpo["speed"].items():
                    lines.append(_row(n, f"`{json.dumps(r['settings'])}`", r["steps"],
                                      f"{r['useful_tokens_per_s']:.0f}", f"{r['speedup_vs_handbook']:.2f}x",
                                      f"{r['cpu_speedup_vs_handbook']:.2f}x"))
        lines.append("")
    elif name == "distributed" and d:
        lines += [_row("setup", "useful tok/s", "ratio", "peak RSS per worker (GiB)", "ratio", "train s"),
                  _row(*["---"] * 6)]
        for n, r in d["results"].items():
            lines.append(_row(n, f"{r['tokens_per_s']:.0f}", f"{r['tokens_per_s_ratio']:.2f}",
                              ", ".join(f"{x:.3f}" for x in r["worker_peak_rss_gib"]),
                              f"{r['peak_rss_per_process_ratio']:.2f}", f"{r['train_runtime_s']:.1f}"))
        lines += ["", f"{d['steps']} steps, global batch {d['global_batch']}.", ""]
    elif name == "plan" and d:
        lines += [_row("model", "predicted GiB", "of which runtime-free", "measured peak RSS GiB", "error"),
                  _row(*["---"] * 5)]
        for n, r in d["results"].items():
            lines.append(_row(n, f"{r['predicted_gib']:.3f}", f"{r['predicted_without_runtime_gib']:.3f}",
                              f"{r['measured_peak_rss_gib']:.3f}", f"{r['error']:+.1%}"))
        dd = d["difference_50m_minus_tiny"]
        err = f"{dd['error']:+.1%}" if dd["error"] is not None else "n/a"
        lines.append(_row("50M − tiny", f"{dd['predicted_gib']:.3f}", "", f"{dd['measured_gib']:.3f}", err))
        worst = max(abs(r["error"]) for r in d["activation_formula"])
        lines += ["", f"Activation formula vs autograd's saved tensors ({len(d['activation_formula'])} Llama layer "
                  f"shapes, bf16 and fp32, with and without a padding mask): worst error {worst:.1%}.", ""]
    else:
        lines += ["```", rec.get("stdout", "").strip(), "```", ""]
    return lines


def plot(recs: dict[str, dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [n for n in ("overhead", "tokens", "distributed", "plan") if (recs.get(n) or {}).get("data")]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    axes = [axes] if len(panels) == 1 else list(axes)
    for ax, n in zip(axes, panels):
        d = recs[n]["data"]
        if n == "overhead":
            labels = ["train loop", "whole process"]
            ak = [d["median_train_runtime_s"]["alignkit"], d["median_wall_s"]["alignkit"]]
            pl = [d["median_train_runtime_s"]["plain_trl"], d["median_wall_s"]["plain_trl"]]
            x = range(2)
            ax.bar([i - 0.2 for i in x], ak, 0.4, label="alignkit")
            ax.bar([i + 0.2 for i in x], pl, 0.4, label="plain TRL")
            ax.set_xticks(list(x), labels)
            ax.set_ylabel("seconds (median)")
            ax.legend()
        elif n == "tokens":
            names = list(d["results"])
            ax.bar(names, [d["results"][k]["useful_tokens_per_s"] for k in names])
            ax.set_ylabel("useful tokens / s")
            ax.tick_params(axis="x", rotation=25)
        elif n == "distributed":
            names = list(d["results"])
            ax.bar(names, [d["results"][k]["tokens_per_s_ratio"] for k in names])
            ax.set_ylabel("tokens/s vs 1 process")
        else:
            names = list(d["results"])
            x = range(len(names))
            ax.bar([i - 0.2 for i in x], [d["results"][k]["predicted_gib"] for k in names], 0.4, label="predicted")
            ax.bar([i + 0.2 for i in x], [d["results"][k]["measured_peak_rss_gib"] for k in names], 0.4,
                   label="measured")
            ax.set_xticks(list(x), names)
            ax.set_ylabel("GiB")
            ax.legend()
        ax.set_title(TITLES[n], fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return True


def git_commit() -> str:
    if os.environ.get("ALIGNKIT_BENCH_COMMIT"):  # a run from an exported tree (git archive) names its commit
        return os.environ["ALIGNKIT_BENCH_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=REPO, timeout=10).stdout.strip()
        return (head or "unknown") + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def write_results(recs: dict[str, dict], out: Path, quick: bool, started: float, info_before: dict,
                  ran: list[str] | None = None) -> None:
    info = machine()
    kept = [n for n, r in recs.items() if r.get("earlier")]
    how = "--quick: small smoke settings, not the benchmark numbers" if quick else "make bench"
    when = (f"on {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}, commit {git_commit()}, "
            f"{(time.time() - started) / 60:.1f} min in all")
    if kept:
        when += (f"; {', '.join(kept)} kept from earlier runs (each section says when it ran)" if ran else
                 "; nothing re-run: every section is from its last recorded run (it says when)")
    lines = ["# Benchmark results", "",
             f"Written by `bench/run_all.py` ({how}) {when}. Medians throughout; targets are for these ratios, "
             "never for tests.", "", "## Machine", "",
             _row("", ""), _row("---", "---"),
             _row("CPU", f"{info.get('cpu', '?')}, {info.get('cpu_count')} cores"),
             _row("RAM", f"{info.get('ram_gib', '?')} GiB"),
             _row("GPU", "none (CPU-only machine)"),
             _row("load average (1/5/15 min)", f"before {info_before.get('load_avg')}, after {info.get('load_avg')}"
                  if ran else "see each benchmark"),
             *([_row("load average at the end of each benchmark", ", ".join(
                 f"{n} {r['data']['machine']['load_avg']}" for n, r in recs.items()
                 if isinstance(r.get("data"), dict) and (r["data"].get("machine") or {}).get("load_avg")))]
               if any(isinstance(r.get("data"), dict) and r["data"].get("machine") for r in recs.values()) else []),
             _row("OS / Python", f"{info['platform']} / {info['python']}"),
             _row("packages", ", ".join(f"{k} {v}" for k, v in info["packages"].items())), "",
             "The machine is shared: a load average above the core count means other work ran alongside and wall "
             "times carry that noise (the alternating runs and medians are there for it).", "",
             "## Summary", "", *summary_rows(recs), ""]
    if (out.parent / "results.png").is_file() and any((recs.get(n) or {}).get("data") for n in recs):
        lines += ["![results](results.png)", ""]
    for name in SUITE:
        if name in recs:
            lines += section(name, recs[name])
    from alignkit.fsutil import write_atomic

    write_atomic(out, "\n".join(lines).rstrip() + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small settings: a smoke run, not the benchmark")
    ap.add_argument("--only", default=",".join(SUITE), help="comma-separated subset of: " + ", ".join(SUITE))
    ap.add_argument("--out", default=str(BENCH / "RESULTS.md"))
    args = ap.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SUITE]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(SUITE)}")
    out = Path(args.out).absolute()
    results_dir = out.parent / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    before = machine()
    recs: dict[str, dict] = {}
    for name in SUITE:
        if name in names:
            recs[name] = run_one(name, args.quick, results_dir)
            save_record(recs[name], results_dir)
        elif not args.quick:
            kept = earlier_record(name, results_dir)
            if kept is not None:
                recs[name] = kept
    plot(recs, out.parent / "results.png")
    write_results(recs, out, args.quick, started, before, ran=names)
    failed = [n for n in names if recs[n]["status"] != "ok"]
    log(f"wrote {out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
