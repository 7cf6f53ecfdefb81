#!/usr/bin/env python
"""The GPU acceptance check behind scripts/gpu-check.sh (see docs/gpu.md): one CUDA GPU, no network, the
machine's own torch.

Steps, each with a time budget (an H100-class GPU; the whole check <= 8 minutes), each recorded:

1. install   build alignkit's wheel from this checkout and pip-install it (not editable) with the wheels
             handed in --wheels (`pip install --no-index --find-links DIR`), keeping the machine's torch
2. cuda      the CUDA-marked tests (tests/gpu), from this checkout
3. sft-dpo   a tiny full SFT then DPO from it, bf16, one GPU, through the installed `alignkit`
4. qlora     a tiny QLoRA SFT (4-bit NF4 base: bitsandbytes Linear4bit layers)
5. zero3     a one-GPU DeepSpeed ZeRO-3 step
6. tokens    bench/bench_tokens.py: useful tokens/s of the handbook's SFT batching against alignkit's defaults
             on a ~100M-parameter Llama built from a config, bf16

Writes OUT/gpu.json (every step: ok, seconds, budget, what was in effect) and OUT/gpu.md (the tables, for
bench/RESULTS.md). --cpu-dry runs every step's plumbing on this CPU at toy size (a venv of its own that
reuses this interpreter's packages, CPU profiles, a tiny model) in a few minutes: what CI runs.
Exit code 0 when every step passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOTAL_BUDGET_S = 480
# seconds per step on an H100-class GPU (their sum stays inside the 8 minutes)
BUDGETS = {"install": 60, "cuda": 150, "sft-dpo": 50, "qlora": 35, "zero3": 60, "tokens": 120}
CPU_BUDGETS = {"install": 120, "cuda": 120, "sft-dpo": 240, "qlora": 180, "zero3": 300, "tokens": 240}
QUICK = ["--num-gpus", "1", "--eval_strategy=no", "--logging_steps=1", "--report_to=none", "--save_strategy=no"]


class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dry = args.cpu_dry
        self.work = Path(args.work or tempfile.mkdtemp(prefix="alignkit-gpu-check-")).absolute()
        self.work.mkdir(parents=True, exist_ok=True)
        self.out = Path(args.out).absolute()
        self.out.mkdir(parents=True, exist_ok=True)
        self.py = args.python
        self.alignkit = None  # the installed console script
        self.tpy = None  # the interpreter alignkit is installed for
        self.steps: list[dict] = []
        self.budgets = CPU_BUDGETS if self.dry else BUDGETS
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                        ALIGNKIT_CACHE=str(self.work / "alignkit-cache"), HF_HOME=str(self.work / "hf-home"),
                        TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
        if self.dry:
            self.env["CUDA_VISIBLE_DEVICES"] = ""

    # ------------------------------------------------------------------ plumbing

    def sh(self, cmd: list[str], *, timeout: float, cwd: Path | None = None, env: dict | None = None,
           log: str) -> subprocess.CompletedProcess:
        logfile = self.work / f"{log}.log"
        with open(logfile, "a") as fh:
            fh.write(f"$ {' '.join(map(str, cmd))}\n")
            fh.flush()
            proc = subprocess.run(list(map(str, cmd)), cwd=cwd or self.work, env=env or self.env, stdout=fh,
                                  stderr=subprocess.STDOUT, text=True, timeout=timeout)
        if proc.returncode != 0:
            tail = logfile.read_text()[-3000:]
            raise RuntimeError(f"exit {proc.returncode}: {' '.join(map(str, cmd[:6]))} ...\n{tail}")
        return proc

    def step(self, name: str, fn) -> None:
        budget = self.budgets[name]
        t0 = time.monotonic()
        record: dict = {"step": name, "budget_s": budget}
        print(f"[gpu-check] {name} (budget {budget} s) ...", flush=True)
        try:
            record["detail"] = fn(budget) or {}
            record["ok"] = True
        except subprocess.TimeoutExpired:
            record.update(ok=False, error=f"over its budget of {budget} s (stopped)")
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, the next step still runs
            record.update(ok=False, error=f"{type(exc).__name__}: {exc}"[-3000:])
        record["seconds"] = round(time.monotonic() - t0, 1)
        record["within_budget"] = record["seconds"] <= budget
        self.steps.append(record)
        print(f"[gpu-check] {name}: {'ok' if record['ok'] else 'FAILED'} in {record['seconds']} s"
              + ("" if record["ok"] else f"\n{record['error']}"), flush=True)

    def cli(self, args: list[str], budget: float, log: str) -> None:
        if not self.alignkit:
            raise RuntimeError("alignkit is not installed (the install step failed)")
        self.sh([self.alignkit, *args], timeout=budget, log=log)

    # ------------------------------------------------------------------ steps

    def install(self, budget: float) -> dict:
        deadline = time.monotonic() + budget
        src = self.work / "src"
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(REPO / "alignkit", src / "alignkit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(REPO / name, src / name)
        dist = self.work / "dist"
        shutil.rmtree(dist, ignore_errors=True)
        self.sh([self.py, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                 "--disable-pip-version-check", "-w", dist, src], timeout=deadline - time.monotonic(), log="install")
        (wheel,) = dist.glob("alignkit-*.whl")
        find = ["--find-links", str(dist)] + (["--find-links", str(Path(self.args.wheels).absolute())]
                                              if self.args.wheels else [])
        if self.dry:
            # a fresh venv for the wheel; this interpreter's packages (the tested set) through a .pth line
            venv = self.work / "venv"
            shutil.rmtree(venv, ignore_errors=True)
            self.sh([self.py, "-m", "venv", "--without-pip", venv], timeout=deadline - time.monotonic(), log="install")
            self.tpy = str(venv / "bin" / "python")
            self.sh([self.py, "-m", "pip", "--python", self.tpy, "install", "--no-index", "--no-deps", "-q",
                     "--disable-pip-version-check", wheel], timeout=deadline - time.monotonic(), log="install")
            site = subprocess.run([self.tpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip()
            Path(site, "_gpu_check_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        else:
            # the machine's own interpreter: its torch stays (pip keeps what is already in range)
            self.tpy = self.py
            self.sh([self.py, "-m", "pip", "install", "--no-index", "--disable-pip-version-check", *find,
                     "--force-reinstall", "--no-deps", wheel], timeout=deadline - time.monotonic(), log="install")
            self.sh([self.py, "-m", "pip", "install", "--no-index", "--disable-pip-version-check", *find,
                     f"alignkit=={wheel.name.split('-')[1]}"], timeout=deadline - time.monotonic(), log="install")
        self.alignkit = str(Path(self.tpy).parent / "alignkit")
        probe = subprocess.run([self.tpy, "-c", "import alignkit, torch, transformers, trl; print(alignkit.__file__);"
                                "print(torch.__version__, transformers.__version__, trl.__version__, "
                                "torch.cuda.is_available())"],
                               cwd=self.work, env=self.env, capture_output=True, text=True, timeout=120)
        if probe.returncode != 0:
            raise RuntimeError(probe.stderr[-2000:])
        where, versions = probe.stdout.strip().splitlines()[:2]
        if Path(where).resolve().is_relative_to(REPO.resolve()):
            raise RuntimeError(f"alignkit is imported from the checkout ({where}), not the installed wheel")
        self.sh([self.alignkit, "--version"], timeout=60, log="install")
        torch_v, tf_v, trl_v, cuda = versions.split()
        return {"wheel": wheel.name, "alignkit": where, "torch": torch_v, "transformers": tf_v, "trl": trl_v,
                "cuda_available": cuda == "True"}

    def cuda_tests(self, budget: float) -> dict:
        junit = self.work / "cuda-tests.xml"
        env = {**self.env, "PYTHONPATH": str(REPO)}
        try:
            self.sh([self.tpy, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "cuda", "tests/gpu",
                     f"--junitxml={junit}"], timeout=budget, cwd=REPO, env=env, log="cuda-tests")
        finally:
            counts = _junit_counts(junit)
        if not self.dry and (counts["skipped"] or not counts["passed"]):
            raise RuntimeError(f"on a GPU every CUDA test runs: {counts}")
        if self.dry and counts["passed"]:
            raise RuntimeError(f"CUDA tests passed without a GPU: {counts}")
        return counts

    def sft_dpo(self, budget: float) -> dict:
        deadline = time.monotonic() + budget
        sft, dpo = self.work / "runs" / "sft-bf16", self.work / "runs" / "dpo-bf16"
        profile = ["--profile", "cpu"] if self.dry else ["--profile", "lora", "--lora.enabled=false"]
        steps = 2 if self.dry else 30
        self.cli(["sft", "--recipe", "tiny", *profile, f"--output_dir={sft}", f"--max_steps={steps}", "--overwrite",
                  *QUICK], deadline - time.monotonic(), "sft-dpo")
        self.cli(["dpo", "--recipe", "tiny", *profile, f"--model_name_or_path={sft}", f"--output_dir={dpo}",
                  f"--max_steps={steps // 2 or 1}", "--overwrite", *QUICK], deadline - time.monotonic(), "sft-dpo")
        out = {"sft": _run_record(sft), "dpo": _run_record(dpo)}
        if not self.dry and out["sft"]["model"]["dtype"] != "torch.bfloat16":
            raise RuntimeError(f"SFT did not train in bf16: {out['sft']['model']['dtype']}")
        return out

    def _tiny_sft(self, name: str, profile: str, steps: int, budget: float) -> dict:
        """`alignkit sft --recipe tiny` under `profile` (its CPU form in the dry mode); the run's record."""
        out = self.work / "runs" / f"sft-{name}"
        self.cli(["sft", "--recipe", "tiny", "--profile", f"{profile},cpu" if self.dry else profile,
                  f"--output_dir={out}", f"--max_steps={min(steps, 2) if self.dry else steps}", "--overwrite",
                  *QUICK], budget, name)
        return _run_record(out)

    def qlora(self, budget: float) -> dict:
        rec = self._tiny_sft("qlora", "qlora", 10, budget)
        if not rec["model"]["quantized_linear"].get("Linear4bit"):
            raise RuntimeError(f"no bitsandbytes Linear4bit layers: {rec['model']['quantized_linear']}")
        return rec

    def zero3(self, budget: float) -> dict:
        rec = self._tiny_sft("zero3", "full", 3, budget)
        if not rec["model"]["zero3_partitioned"]:
            raise RuntimeError("the model was not partitioned by ZeRO-3")
        return rec

    def tokens(self, budget: float) -> dict:
        size = (["--device", "cpu", "--hidden", "64", "--layers", "2", "--max-length", "128", "--steps", "2",
                 "--batch", "4"] if self.dry else
                ["--device", "cuda", "--hidden", "768", "--layers", "14", "--max-length", "1024", "--steps", "64",
                 "--batch", "8"])
        result = self.work / "tokens.json"
        env = {**self.env, "ALIGNKIT_CACHE": str(self.work / "bench-cache")}
        self.sh([self.tpy, REPO / "bench" / "bench_tokens.py", *size, "--settings", "handbook,alignkit_default",
                 "--no-dpo", "--workdir", self.work / "bench-tokens", "--json", result], timeout=budget, env=env,
                log="tokens")
        data = json.loads(result.read_text())
        return {"params": data["data"]["params"], "device": data.get("device"), "gpu": data.get("gpu"),
                "dtype": data.get("dtype"), "attn_implementation": data.get("attn_implementation"),
                "max_length": data["max_length"], "batch": data["batch"],
                "rows": data["data"]["rows"], "median_length": data["data"]["median_length"],
                "results": {k: {f: v[f] for f in ("settings", "steps", "useful_tokens_per_s", "speedup_vs_handbook",
                                                  "eval_loss", "eval_loss_vs_handbook", "train_runtime_s")}
                            for k, v in data["results"].items()}}

    # ------------------------------------------------------------------ report

    def run(self) -> int:
        t0 = time.monotonic()
        self.step("install", self.install)
        self.step("cuda", self.cuda_tests)
        self.step("sft-dpo", self.sft_dpo)
        self.step("qlora", self.qlora)
        self.step("zero3", self.zero3)
        self.step("tokens", self.tokens)
        total = round(time.monotonic() - t0, 1)
        ok = all(s["ok"] for s in self.steps) and (self.dry or total <= TOTAL_BUDGET_S)
        report = {"check": "gpu", "mode": "cpu-dry" if self.dry else "gpu", "ok": ok, "total_s": total,
                  "total_budget_s": None if self.dry else TOTAL_BUDGET_S, "steps": self.steps,
                  "machine": _machine(self.tpy or self.py, self.env), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                             time.gmtime())}
        name = "gpu-cpu-dry" if self.dry else "gpu"
        (self.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
        (self.out / f"{name}.md").write_text(markdown(report))
        print(markdown(report))
        print(f"[gpu-check] {'passed' if ok else 'FAILED'} in {total} s; {self.out / (name + '.json')}; logs in "
              f"{self.work}")
        return 0 if ok else 1


def _junit_counts(path: Path) -> dict:
    counts = {"passed": 0, "failed": 0, "skipped": 0, "skip_reasons": []}
    if not path.is_file():
        return counts
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            counts["skipped"] += 1
            counts["skip_reasons"].append(case.find("skipped").get("message", ""))
        elif case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
        else:
            counts["passed"] += 1
    counts["skip_reasons"] = sorted(set(counts["skip_reasons"]))
    return counts


def _run_record(out: Path) -> dict:
    state = json.loads((out / "trainer_state.json").read_text())
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    summary = next((h for h in reversed(state["log_history"]) if "train_runtime" in h), {})
    return {"model": json.loads((out / "alignkit" / "model.json").read_text()), "steps": state["global_step"],
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "train_runtime_s": summary.get("train_runtime")}


def _machine(py: str, env: dict) -> dict:
    code = ("import json, platform, torch; print(json.dumps({'python': platform.python_version(), "
            "'torch': torch.__version__, 'cuda': torch.version.cuda, 'gpu': torch.cuda.get_device_name(0) "
            "if torch.cuda.is_available() else None}))")
    try:
        return json.loads(subprocess.run([py, "-c", code], env=env, capture_output=True, text=True,
                                         timeout=120).stdout)
    except (ValueError, OSError, subprocess.TimeoutExpired):
        return {}


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"### GPU check ({report['mode']}): {'passed' if report['ok'] else 'FAILED'} in {report['total_s']} s",
             "", f"{m.get('gpu') or 'no GPU'}; Python {m.get('python')}, torch {m.get('torch')} (CUDA "
             f"{m.get('cuda')}); {report['time']}", "", "| step | result | seconds | budget | in effect |",
             "|---|---|---|---|---|"]
    for s in report["steps"]:
        lines.append(f"| {s['step']} | {'ok' if s['ok'] else 'FAILED'} | {s['seconds']} | {s['budget_s']} | "
                     f"{_in_effect(s)} |")
    tokens = next((s for s in report["steps"] if s["step"] == "tokens" and s["ok"]), None)
    if tokens:
        d = tokens["detail"]
        lines += ["", f"Useful tokens/s, SFT, {d['params'] / 1e6:.0f}M-parameter Llama from a config, {d['dtype']}, "
                  f"{d['attn_implementation']}, {d['rows']} rows (median {d['median_length']} tokens), batch "
                  f"{d['batch']}, max_length {d['max_length']}, one epoch each:", "",
                  "| setting | steps | useful tokens/s | vs handbook | held-out loss | Δ loss |", "|---|---|---|---|---|---|"]
        for name, r in d["results"].items():
            lines.append(f"| {name} | {r['steps']} | {r['useful_tokens_per_s']:.0f} | {r['speedup_vs_handbook']:.2f}x | "
                         f"{r['eval_loss']:.4f} | {r['eval_loss_vs_handbook']:+.1%} |")
    return "\n".join(lines) + "\n"


def _in_effect(step: dict) -> str:
    d = step.get("detail") or {}
    if not step["ok"]:
        return step.get("error", "").splitlines()[0][:120]
    if step["step"] == "install":
        return f"{d['wheel']}; torch {d['torch']}, transformers {d['transformers']}, trl {d['trl']}"
    if step["step"] == "cuda":
        return f"{d['passed']} passed, {d['skipped']} skipped" + (f" ({'; '.join(d['skip_reasons'])})"
                                                                  if d["skip_reasons"] else "")
    if step["step"] == "sft-dpo":
        s, p = d["sft"], d["dpo"]
        return (f"SFT {s['model']['dtype']}, {s['model']['speed']['attn_implementation']}, Liger "
                f"{s['model']['speed']['use_liger_kernel']}, loss {s['first_loss']:.2f} → {s['last_loss']:.2f}; "
                f"DPO {p['steps']} steps, loss {p['last_loss']:.3f}")
    if step["step"] == "qlora":
        return f"{d['model']['quantized_linear']}, trainable {d['model']['trainable_params']:,}"
    if step["step"] == "zero3":
        return f"ZeRO-3 partitioned {d['model']['zero3_partitioned']}, {d['steps']} steps"
    if step["step"] == "tokens":
        r = d["results"].get("alignkit_default", {})
        return f"alignkit default {r.get('speedup_vs_handbook', float('nan')):.2f}x the handbook's useful tokens/s"
    return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheels", help="folder of wheels for alignkit's dependencies (scripts/gpu-wheels.sh)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results"), help="where gpu.json and gpu.md go")
    ap.add_argument("--work", help="scratch folder (runs, logs); default a new temp folder")
    ap.add_argument("--python", default=sys.executable, help="the interpreter to install into (the machine's own)")
    ap.add_argument("--cpu-dry", action="store_true", help="every step's plumbing on this CPU at toy size")
    return Check(ap.parse_args()).run()


if __name__ == "__main__":
    sys.exit(main())
