"""Job arrays without Slurm: the array script run by bash with fake srun/scontrol/accelerate (each task runs
its own run, a completed run's task does nothing, USR1 requeues the task), and status/cancel/logs of an array
from fake scontrol answers (one row per task)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from alignkit.errors import UsageError
from alignkit.launch import slurm
from alignkit.launch.slurm import query

from test_slurm_render import _env, _fake_slurm_bin, fakes, make_plan  # noqa: F401 - fakes is a fixture


def _runs(tmp_path: Path, n: int) -> list[Path]:
    outs = []
    for i in range(n):
        out = tmp_path / "sweep" / f"p{i:02d}-beta={i}"
        (out / "alignkit").mkdir(parents=True)
        (out / "alignkit" / "run.yaml").write_text("task: sft\n")
        outs.append(out)
    return outs


def _script(tmp_path, bin_dir, outs, **kw) -> Path:
    plan = make_plan(str(bin_dir / "accelerate"), nodes=1, per_node=1, out=outs[0])
    text = slurm.render_array_sbatch(plan, run_dirs=[o / "alignkit" for o in outs], job_name="sweep",
                                     nodes=1, gpus_per_node=1, log_dir=tmp_path / "sweep" / "slurm", **kw)
    path = tmp_path / "array.sbatch"
    path.write_text(text)
    return path


def test_array_directives_and_log_names(fakes, tmp_path):
    bin_dir, _ = fakes
    outs = _runs(tmp_path, 4)
    text = _script(tmp_path, bin_dir, outs, indices=[0, 1, 3], max_concurrent=2).read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("#SBATCH")]
    assert "#SBATCH --array=0-1,3%2" in lines
    assert f"#SBATCH --output={tmp_path}/sweep/slurm/slurm-%A_%a.out" in lines
    assert "#SBATCH --requeue" in lines
    assert str(outs[0] / "alignkit" / "accelerate.yaml") not in text  # every path is the task's own
    assert subprocess.run(["bash", "-n", "-c", text]).returncode == 0
    assert slurm.array_spec([2], None) == "2"
    with pytest.raises(UsageError, match="--max-concurrent"):
        slurm.array_spec([0, 1], 0)
    with pytest.raises(UsageError, match="set by the job array"):
        _script(tmp_path, bin_dir, outs, indices=[0], extra_sbatch_args=["--array=0-9"])


def test_each_task_runs_its_own_run_and_a_completed_one_nothing(fakes, tmp_path):
    bin_dir, fout = fakes
    outs = _runs(tmp_path, 3)
    script = _script(tmp_path, bin_dir, outs, indices=[0, 1, 2])
    res = subprocess.run(["bash", str(script)], env=_env(bin_dir, fout, 1, SLURM_ARRAY_TASK_ID="2"), cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    argv = json.loads((fout / "node-0.json").read_text())["argv"]
    assert argv[argv.index("--config_file") + 1] == str(outs[2] / "alignkit" / "accelerate.yaml")
    assert argv[-2:] == ["--run", str(outs[2] / "alignkit" / "run.yaml")]
    assert f"array task 2: run dir {outs[2] / 'alignkit'}" in res.stdout
    (fout / "node-0.json").unlink()
    (outs[1] / "alignkit" / "status.json").write_text(json.dumps({"state": "completed"}, indent=2))
    res = subprocess.run(["bash", str(script)], env=_env(bin_dir, fout, 1, SLURM_ARRAY_TASK_ID="1"), cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "already completed" in res.stdout
    assert not (fout / "node-0.json").exists()
    res = subprocess.run(["bash", str(script)], env=_env(bin_dir, fout, 1, SLURM_ARRAY_TASK_ID="7"), cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "not a task of this array" in res.stdout


def test_usr1_checkpoints_and_requeues_the_task(fakes, tmp_path):
    bin_dir, fout = fakes
    outs = _runs(tmp_path, 2)
    script = _script(tmp_path, bin_dir, outs, indices=[0, 1])
    env = {**_env(bin_dir, fout, 1, SLURM_ARRAY_TASK_ID="1", FAKE_SLEEP="60", FAKE_STATUS="preempted",
                  FAKE_EXIT="0"), "SLURM_JOB_ID": "1301"}
    proc = subprocess.Popen(["bash", str(script)], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 30
    while not (fout / "started-0").exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    log, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, log
    # the task's own run saved its state; the task's own job id was requeued
    assert json.loads((outs[1] / "alignkit" / "status.json").read_text())["state"] == "preempted"
    assert not (outs[0] / "alignkit" / "status.json").exists()
    assert (fout / "requeued").read_text().split() == ["1301"]


# --------------------------------------------------------------------------- status, logs, cancel of an array

SCONTROL_ARRAY = r'''case "$*" in
  "show config") printf 'ClusterName = c\n' ;;
  "-o show job 50"|"-o show job 50_1"|"-o show job 50_3")
    echo "JobId=51 ArrayJobId=50 ArrayTaskId=0 ArrayTaskThrottle=2 JobName=sweep JobState=COMPLETED Reason=None Restarts=0 ExitCode=0:0 RunTime=00:01:00 TimeLimit=UNLIMITED NumNodes=1 NodeList=node1 StdOut=LOGDIR/slurm-50_0.out"
    echo "JobId=52 ArrayJobId=50 ArrayTaskId=1 JobName=sweep JobState=RUNNING Reason=None Restarts=1 ExitCode=0:0 RunTime=00:00:10 TimeLimit=UNLIMITED NumNodes=1 NodeList=node2 StdOut=LOGDIR/slurm-50_1.out"
    echo "JobId=50 ArrayJobId=50 ArrayTaskId=2-3%2 ArrayTaskThrottle=2 JobName=sweep JobState=PENDING Reason=JobArrayTaskLimit Restarts=0 ExitCode=0:0 RunTime=00:00:00 TimeLimit=UNLIMITED NumNodes=1 NodeList= StdOut=LOGDIR/slurm-50_4294967294.out" ;;
  *) echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1 ;;
esac'''


def test_status_and_logs_of_an_array_one_row_per_task(tmp_path, monkeypatch):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    (logdir / "slurm-50_0.out").write_text("task zero\n")
    (logdir / "slurm-50_1.out").write_text("task one\n{'loss': '1.5', 'epoch': '0.5'}\n")
    bin_dir = _fake_slurm_bin(tmp_path, {"scontrol": SCONTROL_ARRAY.replace("LOGDIR", str(logdir))})
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "cache"))
    query.forget_cluster_name()
    from alignkit.launch.slurm import jobs

    outs = {str(i): str(tmp_path / f"p{i}") for i in range(4)}
    jobs._record_job({"job_id": "50", "cluster": "c", "array": True, "output_dir": str(tmp_path), "tasks": [0, 1, 2, 3],
                      "output_dirs": outs, "log": slurm.array_log_pattern(logdir)})
    rows = slurm.status("50")
    assert [(r.job_id, r.state) for r in rows] == [("50_0", "COMPLETED"), ("50_1", "RUNNING"), ("50_2", "PENDING"),
                                                   ("50_3", "PENDING")]
    assert rows[1].restarts == 1 and rows[1].output_dir == outs["1"]
    assert rows[1].progress["loss"] == 1.5
    assert rows[2].reason == "JobArrayTaskLimit" and rows[3].stdout == str(logdir / "slurm-50_3.out")
    # one task by its own id, with its run dir and log
    (task,) = slurm.status("50_1")
    assert (task.job_id, task.state, task.output_dir) == ("50_1", "RUNNING", outs["1"])
    assert slurm.log_path("50_1") == logdir / "slurm-50_1.out"
    text = "".join(slurm.job_logs("50"))
    assert "==> 50_0 (COMPLETED) <==\ntask zero" in text and "==> 50_1 (RUNNING) <==\ntask one" in text
    with pytest.raises(UsageError, match="one task"):
        slurm.job_logs("50", follow=True)
    assert slurm.busy_jobs(str(tmp_path)) == ["50 (3 tasks RUNNING)"]
    # the command: one tab-separated row per task
    from tests.helpers import run_cli

    res = run_cli("slurm", "status", "50", timeout=120)
    assert res.returncode == 0, res.stderr
    rows = [ln.split("\t") for ln in res.stdout.splitlines()]
    assert [r[0] for r in rows] == ["JOBID", "50_0", "50_1", "50_2", "50_3"]
    assert rows[2][2] == "RUNNING (restarts 1)" and "loss 1.5" in rows[2][6]
    assert rows[3][5] == "(JobArrayTaskLimit)"
    query.forget_cluster_name()


def test_a_forgotten_task_shows_what_its_run_says(tmp_path, monkeypatch):
    bin_dir = _fake_slurm_bin(tmp_path, {"scontrol": 'case "$*" in "show config") echo "ClusterName = c";; '
                                                    '*) exit 1;; esac'})
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "cache"))
    query.forget_cluster_name()
    from alignkit.launch.slurm import jobs

    out = tmp_path / "p0"
    (out / "alignkit").mkdir(parents=True)
    (out / "alignkit" / "status.json").write_text(json.dumps({"state": "completed"}))
    jobs._record_job({"job_id": "60", "cluster": "c", "array": True, "output_dir": str(tmp_path), "tasks": [0, 1],
                      "output_dirs": {"0": str(out), "1": str(tmp_path / "p1")}, "log": "/l/slurm-%A_%a.out"})
    rows = slurm.status("60")
    assert [(r.job_id, r.state, r.source) for r in rows] == [("60_0", "COMPLETED", "run"),
                                                             ("60_1", "UNKNOWN", "registry")]
    assert rows[1].stdout == "/l/slurm-60_1.out"
    query.forget_cluster_name()


def test_a_pending_task_by_its_own_id(tmp_path, monkeypatch):
    logdir = tmp_path / "logs"
    bin_dir = _fake_slurm_bin(tmp_path, {"scontrol": SCONTROL_ARRAY.replace("LOGDIR", str(logdir))})
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "cache"))
    query.forget_cluster_name()
    from alignkit.launch.slurm import jobs

    jobs._record_job({"job_id": "50", "cluster": "c", "array": True, "output_dir": str(tmp_path), "tasks": [0, 1, 2, 3],
                      "output_dirs": {"3": str(tmp_path / "p3")}, "log": slurm.array_log_pattern(logdir)})
    info = slurm.job_info("50_3")
    assert (info.job_id, info.state, info.output_dir) == ("50_3", "PENDING", str(tmp_path / "p3"))
    assert info.stdout == str(logdir / "slurm-50_3.out")
    query.forget_cluster_name()
