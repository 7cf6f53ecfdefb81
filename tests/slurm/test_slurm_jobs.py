"""`alignkit slurm` against the real local Slurm cluster (scripts/local-slurm.sh)."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
import yaml

from alignkit.launch import slurm

from .conftest import flat, make_job, read_log, submit_job, wait_log, wait_state
from tests.helpers import popen_cli

pytestmark = pytest.mark.slurm

RANK_WORKER = r'''
info = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
                                         "SLURMD_NODENAME", "SLURM_NODEID", "SLURM_JOB_ID", "SLURM_GPUS_ON_NODE")}
say("RANKINFO " + json.dumps(info))
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    import torch, torch.distributed as dist
    dist.init_process_group("gloo")
    t = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(t)
    say(f"ALLREDUCE rank={dist.get_rank()} sum={t.item():g}")
    dist.destroy_process_group()
status("completed")
'''

SLEEP_WORKER = r'''
def stop(signum, frame):  # like the trainer: a handler for TERM (the launcher ignores it)
    say(f"STOPPING on signal {signum}")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
say("STARTED on", os.environ.get("SLURMD_NODENAME"))
for i in range(240):
    say(f"tick {i}")
    time.sleep(0.5)
'''

# a stand-in for the trainer: on SIGTERM/SIGUSR1 it saves a "checkpoint" and exits 0 (as alignkit's
# trainer does); started again, it resumes from the checkpoint and finishes
RESUME_WORKER = r'''
ckpt = OUT / "checkpoint-1"
restart = os.environ.get("SLURM_RESTART_COUNT", "0")
if ckpt.exists():
    say(f"RESUMED from {ckpt.read_text()} (restart {restart})")
    status("completed")
    sys.exit(0)
def stop(signum, frame):
    ckpt.write_text(f"signal {signum}")
    status("preempted")
    say(f"CHECKPOINTED on signal {signum}")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGUSR1, stop)
status("running")
say(f"STARTED (restart {restart})")
for _ in range(240):
    time.sleep(0.5)
status("completed")
say("FINISHED without a signal")
'''


def test_single_node_job_completes(slurm_cluster, tmp_path, cli):
    job = make_job(tmp_path, RANK_WORKER)
    job_id = submit_job(job)
    info = wait_state(job_id, "COMPLETED")
    log = read_log(job_id)
    assert "RANKINFO" in log and f'"SLURM_JOB_ID": "{job_id}"' in log
    assert info.exit_code in ("0:0", "")
    res = cli("status", job_id)
    assert res.returncode == 0, res.stderr
    assert "COMPLETED" in res.stdout and job_id in res.stdout
    # a finished job cannot be cancelled: exit 1 with a clear message
    res = cli("cancel", job_id)
    assert res.returncode == 1
    assert "already finished (COMPLETED)" in flat(res.stderr)
    res = cli("logs", job_id)
    assert res.returncode == 0 and "RANKINFO" in res.stdout


def test_two_nodes_distinct_ranks_one_rendezvous_and_a_gloo_all_reduce(two_nodes, tmp_path):
    job = make_job(tmp_path, RANK_WORKER, nodes=2, per_node=1)
    job_id = submit_job(job)
    wait_state(job_id, "COMPLETED", timeout=90)
    log = read_log(job_id)
    infos = [json.loads(m) for m in re.findall(r"RANKINFO (\{.*?\})", log)]
    assert len(infos) == 2, log
    assert sorted(i["GROUP_RANK"] for i in infos) == ["0", "1"]  # --machine_rank per node
    assert sorted(i["SLURM_NODEID"] for i in infos) == ["0", "1"]
    assert sorted(i["SLURMD_NODENAME"] for i in infos) == sorted(two_nodes.nodes[:2])
    assert {i["MASTER_ADDR"] for i in infos} == {"127.0.0.1"}  # NodeAddr: node1 does not resolve
    assert {i["WORLD_SIZE"] for i in infos} == {"2"}
    assert len({i["MASTER_PORT"] for i in infos}) == 1
    assert sorted(re.findall(r"ALLREDUCE rank=(\d) sum=(\d+)", log)) == [("0", "3"), ("1", "3")]


def test_gpus_per_node_is_requested_from_slurm(slurm_cluster, tmp_path):
    """A GPU plan asks Slurm for --gpus-per-node and runs that many processes on the node (the local
    cluster's GPUs are stand-ins: the processes run on the CPU over gloo)."""
    job = make_job(tmp_path, RANK_WORKER, nodes=1, per_node=2, profile="full")
    job_id = submit_job(job)
    assert "#SBATCH --gpus-per-node=2" in job.script.read_text()
    wait_state(job_id, "COMPLETED", timeout=90)
    log = read_log(job_id)
    infos = [json.loads(m) for m in re.findall(r"RANKINFO (\{.*?\})", log)]
    assert sorted(i["RANK"] for i in infos) == ["0", "1"]
    assert {i["SLURM_GPUS_ON_NODE"] for i in infos} == {"2"}
    assert sorted(re.findall(r"ALLREDUCE rank=(\d) sum=(\d+)", log)) == [("0", "3"), ("1", "3")]


def test_status_logs_and_cancel_while_running(slurm_cluster, tmp_path, cli):
    job = make_job(tmp_path, SLEEP_WORKER)
    job_id = submit_job(job, job_name="alignkit-sleeper")
    wait_log(job_id, "tick 1")
    res = cli("status", job_id, "--json")
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert st["state"] == "RUNNING" and st["name"] == "alignkit-sleeper" and st["nodes"] == "1"
    assert st["node_list"] in slurm_cluster.nodes
    assert st["output_dir"] == str(job.out)
    listed = cli("status")
    assert listed.returncode == 0 and job_id in listed.stdout and "RUNNING" in listed.stdout
    follow = popen_cli("slurm", "logs", job_id, "--follow", no_gpu=False, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    res = cli("cancel", job_id)
    assert res.returncode == 0, res.stderr
    assert f"job {job_id}: CANCELLED" in res.stdout
    out, err = follow.communicate(timeout=30)  # --follow ends once the job has ended
    assert follow.returncode == 0, err
    assert "STARTED" in out and "tick 1" in out
    assert "STOPPING on signal 15" in out  # scancel's TERM reached the worker through the launcher
    assert slurm.job_info(job_id).state == "CANCELLED"
    again = cli("cancel", job_id)
    assert again.returncode == 1 and "already finished (CANCELLED)" in flat(again.stderr)
    unknown = cli("cancel", "99999999")
    assert unknown.returncode == 1 and "does not know this job" in flat(unknown.stderr)




def test_rejected_submits_report_slurms_reason(slurm_cluster, tmp_path):
    job = make_job(tmp_path, RANK_WORKER)
    from alignkit.errors import RuntimeFailure

    with pytest.raises(RuntimeFailure) as exc:
        submit_job(job, partition="no-such-partition")
    assert exc.value.exit_code == 1
    assert "invalid partition" in exc.value.problems[0].message.lower()
    too_many = make_job(tmp_path, RANK_WORKER, nodes=len(slurm_cluster.nodes) + 1, name="big")
    with pytest.raises(RuntimeFailure) as exc:
        submit_job(too_many)
    assert "node count" in exc.value.problems[0].message.lower() or "node configuration" in \
        exc.value.problems[0].message.lower()
    too_many_gpus = make_job(tmp_path, RANK_WORKER, nodes=1, per_node=3, name="gpus", profile="full")
    with pytest.raises(RuntimeFailure) as exc:
        submit_job(too_many_gpus)
    assert "node configuration is not available" in exc.value.problems[0].message.lower()


def test_rejected_submit_through_the_cli_exits_1_with_slurms_reason(slurm_cluster, tmp_path, cli):
    res = cli("submit", "--recipe", "tiny", "--profile", "cpu", "--task", "sft", "--nodes", "1",
              "--gpus-per-node", "1", "--partition", "no-such-partition", f"--output_dir={tmp_path / 'out'}",
              cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "invalid partition" in flat(res.stderr).lower() and "sinfo" in res.stderr
    assert res.stdout.strip() == ""  # no job id


HOSTILE = "h $(touch PWNED) `touch PWNED2`; touch PWNED3 'q' \"dq\" #c 50% [bold]"


def test_hostile_strings_never_execute_on_the_cluster(two_nodes, tmp_path, cli):
    setup = tmp_path / f"env {HOSTILE}.sh"
    setup.write_text("export HOSTILE_SETUP=done\n")
    worker = RANK_WORKER.replace('say("RANKINFO "', 'say("SETUP", os.environ.get("HOSTILE_SETUP")); say("RANKINFO "')
    job = make_job(tmp_path, worker, nodes=2, per_node=1, name=f"out {HOSTILE}")
    job_id = submit_job(job, job_name=HOSTILE, env_setup=str(setup),
                        extra_sbatch_args=[f"--comment={HOSTILE}"], time="5:00")
    info = wait_state(job_id, "COMPLETED", timeout=90)
    assert info.name == HOSTILE  # the job name reached Slurm exactly
    log = read_log(job_id)
    assert log.count("SETUP done") == 2 and "ALLREDUCE" in log
    assert (job.log_dir / f"slurm-{job_id}.out").exists()  # the '%' in the directory stayed a '%'
    shown = cli("status", job_id)  # names and paths are shown as text, not read as markup
    assert shown.returncode == 0 and "[bold]" in shown.stdout, shown.stderr
    assert not list(tmp_path.rglob("PWNED*")) and not list(job.out.parent.glob("PWNED*"))


def test_preemption_checkpoints_requeues_and_resumes(slurm_cluster, tmp_path):
    """Two jobs at once (each requeue waits ~11 s before the job may start again):
    * USR1 to the batch shell, which is what --signal=B:USR1@lead does before the time limit: the step is
      asked to stop, the worker checkpoints, the script requeues the job, the second start resumes;
    * `scontrol requeue` (what an admin or preemption does): TERM reaches the worker, Slurm requeues."""
    by_signal = make_job(tmp_path, RESUME_WORKER, name="by-signal")
    by_requeue = make_job(tmp_path, RESUME_WORKER, name="by-requeue")
    sig_id = submit_job(by_signal, time="30:00")
    rq_id = submit_job(by_requeue)
    assert "#SBATCH --signal=B:USR1@300" in by_signal.script.read_text()
    wait_log(sig_id, "STARTED (restart 0)")
    wait_log(rq_id, "STARTED (restart 0)")
    sig = subprocess.run(["scancel", "--batch", "--signal=USR1", sig_id], capture_output=True, text=True)
    assert sig.returncode == 0, sig.stderr
    rq = subprocess.run(["scontrol", "requeue", rq_id], capture_output=True, text=True)
    assert rq.returncode == 0, rq.stderr

    info = wait_state(sig_id, "COMPLETED", timeout=90)
    log = read_log(sig_id)
    assert log.count("SIGUSR1: the time limit is near") == 1
    assert "CHECKPOINTED on signal 10" in log  # USR1 passed on to the step's processes, once
    assert "requeueing job" in log
    assert "RESUMED from signal 10 (restart 1)" in log
    assert info.restarts == 1

    info = wait_state(rq_id, "COMPLETED", timeout=90)
    log = read_log(rq_id)
    assert "CHECKPOINTED on signal 15" in log
    assert "RESUMED from signal 15 (restart 1)" in log
    assert "requeueing job" not in log  # Slurm requeued it; the script did not add a second requeue
    assert info.restarts == 1


def test_local_cluster_script_is_idempotent(slurm_cluster):
    from .conftest import REPO, STATE_DIR

    if slurm_cluster.conf != str(STATE_DIR / "slurm.conf"):
        pytest.skip(f"this cluster ({slurm_cluster.conf}) was not started by scripts/local-slurm.sh")
    script = str(REPO / "scripts" / "local-slurm.sh")
    before = subprocess.run(["bash", script, "status"], capture_output=True, text=True, timeout=60)
    assert before.returncode == 0, before.stdout + before.stderr
    pids = re.findall(r"running \((\d+)\)", before.stdout)
    assert len(pids) == 1 + len(slurm_cluster.nodes)
    again = subprocess.run(["bash", script, "start", "--nodes", str(len(slurm_cluster.nodes))],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout
    assert f"export SLURM_CONF={slurm_cluster.conf}" in again.stdout
    after = subprocess.run(["bash", script, "status"], capture_output=True, text=True, timeout=60)
    assert re.findall(r"running \((\d+)\)", after.stdout) == pids  # nothing was restarted


def test_one_job_per_output_dir_and_cancel_of_a_pending_job(slurm_cluster, tmp_path, cli):
    args = ["submit", "--recipe", "tiny", "--profile", "cpu", "--task", "sft", "--nodes", "1", "--gpus-per-node",
            "1", f"--output_dir={tmp_path / 'out'}"]
    first = cli(*args, "--sbatch-arg=--hold", cwd=tmp_path)  # held: stays PENDING, trains nothing
    assert first.returncode == 0, first.stderr
    job_id = first.stdout.strip()
    try:
        assert slurm.job_info(job_id).state == "PENDING"
        second = cli(*args, cwd=tmp_path)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"job {job_id} (PENDING) already uses this output dir" in flat(second.stderr)
        logs = cli("logs", job_id)
        assert logs.returncode == 0 and "no output yet" in logs.stdout
        res = cli("cancel", job_id)
        assert res.returncode == 0 and f"job {job_id}: CANCELLED" in res.stdout, res.stdout + res.stderr
    finally:
        subprocess.run(["scancel", job_id], capture_output=True)  # never leave a held job behind


def test_submit_checks_the_data_before_queueing(slurm_cluster, tiny_assets, tmp_path, cli):
    """The training preflight runs at submit time: a bad row is exit 2 naming the file and row, not a job
    that fails in the queue's log an hour later; nothing is written or submitted."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
                   '{"messages": [{"role": "wizard", "content": "hi"}]}\n')
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump({"data": {"mixture": [{"path": str(bad)}]}}))
    out = tmp_path / "out"
    res = cli("submit", "--recipe", "tiny", "--profile", "cpu", "--task", "sft", "--nodes", "1", "--gpus-per-node",
              "1", "--config", str(config), "--eval_strategy=no", f"--output_dir={out}", cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    err = flat(res.stderr)
    assert "bad.jsonl" in err and "row 1" in err and "wizard" in err  # rows are 0-based (docs/data.md) and "Traceback" not in err, err
    assert res.stdout.strip() == ""  # no job id
    assert not list(out.glob("alignkit/*.sbatch")) and not (out / "alignkit" / "run.yaml").exists()
    assert not (out / "alignkit" / "lock").exists()
