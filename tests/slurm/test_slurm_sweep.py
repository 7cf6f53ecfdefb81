"""A sweep as one job array on the local cluster: the tiny recipe's 2x2 grid, at most 2 points at once;
`alignkit slurm status` shows one row per task; a task signalled as before its time limit checkpoints, is
requeued and resumes; `alignkit sweep status` then shows every point completed."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import run_cli

from .conftest import flat, read_log, wait_for

pytestmark = pytest.mark.slurm

GRID = ["--grid", "learning_rate=1e-3,5e-4", "--grid", "train.seed=1,2"]
QUICK = ["--per_device_train_batch_size=8", "--logging_steps=1", "--eval_strategy=no", "--save_strategy=no",
         "--report_to=none", "--max_steps=16"]


def _alignkit(*args: str, cwd=None, timeout: float = 300) -> subprocess.CompletedProcess:
    # sbatch passes this environment on to the jobs: keep the GPU variables as they are
    return run_cli(*args, cwd=cwd, timeout=timeout, no_gpu=False)


def _running(array_id: str) -> int:
    res = subprocess.run(["squeue", "-h", "-r", "-j", array_id, "-t", "RUNNING", "-o", "%i"], capture_output=True,
                         text=True)
    return len([ln for ln in res.stdout.splitlines() if ln.strip()])


def test_a_sweep_runs_as_one_capped_job_array_and_a_preempted_task_resumes(slurm_cluster, tiny_assets,
                                                                          tmp_path):
    sweep_dir = tmp_path / "sweep"
    res = _alignkit("sweep", "sft", "--recipe", "tiny", "--profile", "cpu", "--output", str(sweep_dir), *GRID,
                    "--slurm", "--gpus-per-node", "1", "--max-concurrent", "2", "--job-name", "alignkit-test-sweep",
                    *QUICK, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    array_id = res.stdout.strip().splitlines()[-1]
    assert array_id.isdigit(), res.stdout
    assert f"submitted job array {array_id}: 4 points, at most 2 at once" in flat(res.stderr)
    script = (sweep_dir / "slurm" / "alignkit-test-sweep.sbatch").read_text()
    assert "#SBATCH --array=0-3%2" in script
    manifest = (sweep_dir / "sweep.yaml").read_text()
    assert f"job_id: '{array_id}'" in manifest or f"job_id: {array_id}" in manifest

    # one row per task, each with its own id
    st = _alignkit("slurm", "status", array_id, "--json")
    assert st.returncode == 0, st.stderr
    rows = json.loads(st.stdout)
    assert [r["job_id"] for r in rows] == [f"{array_id}_{i}" for i in range(4)]
    assert all(r["output_dir"].startswith(str(sweep_dir)) for r in rows)

    # task 0, signalled as Slurm does before its time limit, checkpoints and is requeued
    task0 = f"{array_id}_0"
    wait_for(task0, lambda i: "{'loss'" in read_log(task0), timeout=300, what="task 0's first loss")
    peak = _running(array_id)
    sig = subprocess.run(["scancel", "--batch", "--signal=USR1", task0], capture_output=True, text=True)
    assert sig.returncode == 0, sig.stderr

    finished = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}
    deadline = time.monotonic() + 900
    while True:
        peak = max(peak, _running(array_id))
        infos = json.loads(_alignkit("slurm", "status", array_id, "--json").stdout)
        if all(i["state"] in finished for i in infos):
            break
        assert time.monotonic() < deadline, infos
        time.sleep(1)
    assert peak <= 2, f"{peak} tasks ran at once with --max-concurrent 2"
    assert [i["state"] for i in infos] == ["COMPLETED"] * 4, infos
    log0 = read_log(task0)
    assert "requeueing job" in log0 and "resuming from" in log0, log0[-4000:]

    text = _alignkit("slurm", "status", array_id)
    assert text.returncode == 0
    lines = [ln.split("\t") for ln in text.stdout.splitlines()]
    assert [ln[0] for ln in lines[1:]] == [f"{array_id}_{i}" for i in range(4)]

    sw = _alignkit("sweep", "status", str(sweep_dir))
    assert sw.returncode == 0, sw.stderr
    states = [ln.split("\t")[3] for ln in sw.stdout.splitlines()[1:]]
    assert states == ["completed"] * 4
    for p in sorted(Path(sweep_dir).glob("p0*")):
        assert json.loads((p / "trainer_state.json").read_text())["global_step"] == 16
