"""Fixtures for tests against the real local Slurm cluster of scripts/local-slurm.sh.

The cluster is started outside the tests (CI: `scripts/local-slurm.sh start --nodes 2` before pytest).
``slurm_cluster`` skips, with the reason, when no cluster answers; ``two_nodes`` also when it has one node.

Jobs here run a plan whose `accelerate launch` starts a small Python worker instead of a trainer, so
the Slurm mechanics (ranks, rendezvous, signals, requeue, quoting) are tested in seconds; training
through Slurm is one more test with ``cli("submit", "--recipe", "tiny", ...)``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.helpers import flat, run_cli  # noqa: F401  (flat: the Slurm tests import it from here)

REPO = Path(__file__).resolve().parents[2]
STATE_DIR = Path(os.environ.get("ALIGNKIT_SLURM_DIR", "/tmp/alignkit-slurm"))


@dataclass
class Cluster:
    conf: str
    nodes: list[str]


def _skip(reason: str):
    pytest.skip(f"no local Slurm cluster: {reason} (start one: scripts/local-slurm.sh start --nodes 2)")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Cluster:
    conf = os.environ.get("SLURM_CONF") or str(STATE_DIR / "slurm.conf")
    if shutil.which("sinfo") is None:
        _skip("sinfo is not installed")
    if not Path(conf).is_file():
        _skip(f"{conf} does not exist")
    env = {**os.environ, "SLURM_CONF": conf}
    try:
        res = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], env=env, capture_output=True, text=True,
                             timeout=20)
    except subprocess.TimeoutExpired:
        _skip("sinfo did not answer in 20 s")
    if res.returncode != 0:
        _skip(f"sinfo failed: {res.stderr.strip()}")
    nodes = sorted({ln.split()[0] for ln in res.stdout.splitlines() if ln.strip()})
    usable = [ln for ln in res.stdout.splitlines() if ln.split()[1].rstrip("*~#") in ("idle", "mixed", "allocated")]
    if not usable:
        _skip(f"no usable node: {res.stdout.strip()}")
    mp = pytest.MonkeyPatch()
    mp.setenv("SLURM_CONF", conf)
    # ALIGNKIT_CACHE (the job registry, the demo assets) is already a session temp dir (tests/conftest.py)
    mp.setenv("HF_HUB_OFFLINE", "1")
    try:
        yield Cluster(conf, nodes)
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def two_nodes(slurm_cluster) -> Cluster:
    if len(slurm_cluster.nodes) < 2:
        pytest.skip(f"the local cluster has {len(slurm_cluster.nodes)} node(s); the 2-node tests need "
                    "scripts/local-slurm.sh start --nodes 2")
    return slurm_cluster


# --------------------------------------------------------------------------- jobs with a small worker


WORKER_PRELUDE = r'''
import json, os, signal, socket, sys, time
from pathlib import Path
RUN = Path(sys.argv[sys.argv.index("--run") + 1])
OUT = RUN.parent.parent
def say(*a):
    print(*a, flush=True)
def status(state):  # as the trainer: <output_dir>/alignkit/status.json, written atomically
    if os.environ.get("RANK", "0") != "0":
        return
    tmp = RUN.parent / f".status.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"state": state}, indent=2))
    os.replace(tmp, RUN.parent / "status.json")
'''


@dataclass
class Job:
    plan: object
    out: Path
    script: Path
    log_dir: Path


def make_job(base: Path, worker: str, *, nodes: int = 1, per_node: int = 1, name: str = "run",
             env: dict | None = None, profile: str = "cpu") -> Job:
    """A plan whose accelerate launch runs ``worker`` (Python source, after WORKER_PRELUDE). With a
    profile other than cpu the job asks Slurm for ``per_node`` GPUs per node (the local cluster has
    stand-in GPUs; the processes still run on the CPU)."""
    from alignkit.launch.spec import BatchMath, LaunchPlan

    out = base / name
    rdir = out / "alignkit"
    rdir.mkdir(parents=True)
    world = nodes * per_node
    (rdir / "run.yaml").write_text("task: sft\n")
    acc = {"compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_GPU" if world > 1 else "NO",
           "mixed_precision": "no", "num_machines": nodes, "num_processes": world, "machine_rank": 0,
           "rdzv_backend": "static", "same_network": True, "use_cpu": world == 1, "debug": False}
    (rdir / "accelerate.yaml").write_text(json.dumps(acc))  # JSON is YAML
    (out / "worker.py").write_text(WORKER_PRELUDE + worker)
    accelerate = str(Path(sys.executable).parent / "accelerate")
    command = [accelerate, "launch", "--config_file", str(rdir / "accelerate.yaml"), "--num_processes", str(world),
               "--num_machines", str(nodes), "--machine_rank", "0", str(out / "worker.py"), "--run",
               str(rdir / "run.yaml")]
    plan = LaunchPlan(task="sft", profile=profile, num_nodes=nodes, gpus_per_node=per_node, num_gpus_note=None,
                      world_size=world, batch=BatchMath(1, 1, world, world, None, False), accelerate_config=acc,
                      deepspeed_config=None, config={}, output_dir=str(out), command=command,
                      env={**({"CUDA_VISIBLE_DEVICES": ""} if profile == "cpu" else {}), **(env or {})})
    return Job(plan, out, rdir / "job.sbatch", rdir)


def submit_job(job: Job, *, job_name: str = "alignkit-test", **kw) -> str:
    from alignkit.launch import slurm

    text = slurm.render_sbatch(job.plan, job_name=job_name, nodes=job.plan.num_nodes,
                               gpus_per_node=job.plan.gpus_per_node, log_dir=job.log_dir,
                               run_file=job.log_dir / "run.yaml", workdir=job.out, **kw)
    slurm.write_script(job.script, text)
    return slurm.submit(job.script, record={"output_dir": str(job.out), "log": slurm.log_pattern(job.log_dir)})


def wait_for(job_id: str, done: Callable[[object], bool], timeout: float = 60, what: str = "") -> object:
    from alignkit.launch import slurm

    deadline = time.monotonic() + timeout
    info = None
    while time.monotonic() < deadline:
        info = slurm.job_info(job_id, with_progress=False)
        if done(info):
            return info
        time.sleep(0.25)
    log = read_log(job_id)
    raise AssertionError(f"job {job_id}: waited {timeout} s for {what or done}; last state "
                         f"{getattr(info, 'state', None)}\n--- log ---\n{log}")


def wait_state(job_id: str, *states: str, timeout: float = 60) -> object:
    finished = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"}
    info = wait_for(job_id, lambda i: i.state in states or (i.state in finished and i.state not in states),
                    timeout, what=" or ".join(states))
    assert info.state in states, f"job {job_id} is {info.state}, expected {states}\n{read_log(job_id)}"
    return info


def wait_log(job_id: str, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = read_log(job_id)
        if text in log:
            return log
        time.sleep(0.25)
    raise AssertionError(f"job {job_id}: {text!r} not in the log after {timeout} s\n{read_log(job_id)}")


def read_log(job_id: str) -> str:
    from alignkit.launch import slurm

    try:
        path = slurm.log_path(job_id)
        return path.read_text(errors="replace") if path and path.exists() else ""
    except Exception as exc:  # only for failure messages
        return f"(no log: {exc})"


# --------------------------------------------------------------------------- the CLI




@pytest.fixture(scope="session")
def cli(slurm_cluster) -> Callable[..., subprocess.CompletedProcess]:
    """``alignkit slurm ARGS`` (tests/helpers.run_cli); ``env`` adds to the environment. The GPU
    variables are left as they are: sbatch passes the environment on to the jobs."""

    def run(*args: str, timeout: float = 120, cwd: str | os.PathLike | None = None, env: dict | None = None):
        return run_cli("slurm", *args, env_extra=env, timeout=timeout, cwd=cwd, no_gpu=False)

    return run
