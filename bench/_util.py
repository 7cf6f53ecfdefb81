"""What the benchmarks share: an offline environment for child processes, timing, peak memory, output.

Not a benchmark itself. Every benchmark here runs alone (`python bench/bench_X.py`) and from
`bench/run_all.py`; with ``--json PATH`` it also writes its results for RESULTS.md.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1",
           "CUDA_VISIBLE_DEVICES": "", "ACCELERATE_LOG_LEVEL": "warning"}


def workdir(name: str, given: str | os.PathLike | None = None) -> Path:
    d = Path(given) if given else Path(tempfile.gettempdir()) / f"alignkit-bench-{name}"
    d.mkdir(parents=True, exist_ok=True)
    return d.absolute()


def child_env(work: Path, **extra: str) -> dict[str, str]:
    """Offline, quiet, this checkout importable, caches inside the bench's work dir."""
    env = dict(os.environ)
    env.update(OFFLINE)
    env.setdefault("ALIGNKIT_CACHE", str(work / "alignkit-cache"))
    env.setdefault("HF_HOME", str(work / "hf-home"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def demo_assets(env: dict[str, str]):
    """Build (once) the demo model/tokenizer/data where the children will look for them."""
    old = os.environ.get("ALIGNKIT_CACHE")
    os.environ["ALIGNKIT_CACHE"] = env["ALIGNKIT_CACHE"]
    try:
        from alignkit.demo.assets import ensure_demo_assets

        return ensure_demo_assets()
    finally:
        if old is None:
            os.environ.pop("ALIGNKIT_CACHE", None)
        else:
            os.environ["ALIGNKIT_CACHE"] = old


class PeakRSS:
    """Polls /proc for processes whose command line contains `needle` (children included) and keeps each
    one's VmHWM — the kernel's own high-water mark of resident memory, so a short poll interval only
    risks missing a process that lives less than one interval."""

    def __init__(self, needle: str, interval: float = 0.2) -> None:
        self.needle = needle
        self.interval = interval
        self.peaks: dict[int, int] = {}  # pid -> bytes
        self.cmdlines: dict[int, str] = {}
        self.parents: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)

    def poll(self) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if self.needle not in cmd:
                    continue
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("PPid:"):
                        self.parents[pid] = int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        kb = int(line.split()[1])
                        self.peaks[pid] = max(self.peaks.get(pid, 0), kb * 1024)
                        self.cmdlines[pid] = cmd
            except (OSError, ValueError):
                continue

    def matching(self, text: str, exclude: str | None = None) -> list[int]:
        """Peaks (bytes) of the processes whose command line also contains `text` (and not `exclude`). A process
        forked by one of them (same command line: a helper, not another worker) is left out."""
        def hit(pid: int) -> bool:
            cmd = self.cmdlines.get(pid, "")
            return text in cmd and not (exclude and exclude in cmd)

        return [v for pid, v in sorted(self.peaks.items()) if hit(pid) and not hit(self.parents.get(pid, -1))]


def run(cmd: list[str], env: dict[str, str], *, timeout: float = 1800, cwd: str | None = None,
        check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    """Run a command, return (wall seconds, completed process); raise with its stderr tail on failure.
    ``proc.cpu_seconds``: user + system CPU time of the command and all its descendants."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc.cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)  # type: ignore[attr-defined]
    if check and proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-4000:]}")
    return wall, proc


def trainer_summary(output_dir: Path) -> dict[str, Any]:
    """The Trainer's final summary (train_runtime, ...) and the last logged num_tokens, from trainer_state.json."""
    state = json.loads((Path(output_dir) / "trainer_state.json").read_text())
    history = state["log_history"]
    summary = dict(next(h for h in reversed(history) if "train_runtime" in h))
    tokens = [h["num_tokens"] for h in history if "num_tokens" in h]
    summary["num_tokens"] = tokens[-1] if tokens else None
    summary["losses"] = [h["loss"] for h in history if "loss" in h]
    summary["global_step"] = state.get("global_step")
    return summary


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cpu_count": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gib"] = round(int(line.split()[1]) / 1024**2, 1)
        info["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    from importlib import metadata

    info["packages"] = {}
    for pkg in ("torch", "transformers", "trl", "peft", "accelerate", "deepspeed", "datasets"):
        try:
            info["packages"][pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info["packages"][pkg] = None
    return info


def write_json(path: str | os.PathLike | None, data: dict[str, Any]) -> None:
    if not path:
        return
    from alignkit.fsutil import write_json_atomic

    write_json_atomic(path, data)


def gib(x: float) -> float:
    return x / 1024**3


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
