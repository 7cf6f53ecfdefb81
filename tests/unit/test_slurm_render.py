"""The sbatch renderer, without Slurm: the script is executed by bash with fake `srun`, `scontrol`
and `accelerate` on PATH, so quoting, per-node expansion and the preemption path are checked by
what actually runs. The same scripts run on a real cluster in tests/slurm/; the command that renders
them (`alignkit slurm submit --dry-run`) is tested in tests/cli/test_slurm_cli.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alignkit.errors import RuntimeFailure, UsageError
from alignkit.launch.spec import BatchMath, LaunchPlan
from alignkit.launch import slurm
from alignkit.launch.slurm import layout, query, render

HOSTILE = "x $(touch PWNED) `touch PWNED2`; touch PWNED3 'q' \"dq\" #c %j [bold]"


def make_plan(cmd0: str, *, nodes: int, per_node: int, out: Path, profile: str = "cpu",
              env: dict | None = None, extra_flags: list[str] | None = None) -> LaunchPlan:
    world = nodes * per_node
    rdir = out / "alignkit"
    command = [cmd0, "launch", "--config_file", str(rdir / "accelerate.yaml"), "--num_processes", str(world),
               "--num_machines", str(nodes), "--machine_rank", "0", *(extra_flags or []),
               "-m", "alignkit.train.sft", "--run", str(rdir / "run.yaml")]
    return LaunchPlan(
        task="sft", profile=profile, num_nodes=nodes, gpus_per_node=per_node, num_gpus_note=None, world_size=world,
        batch=BatchMath(4, 2, world, 8 * world, None, False), accelerate_config={"distributed_type": "MULTI_GPU"},
        deepspeed_config=None, config={"train": {"output_dir": str(out)}}, output_dir=str(out), command=command,
        env=dict(env if env is not None else {"ACCELERATE_LOG_LEVEL": "info"}),
    )


FAKE_SRUN = r"""#!/bin/bash
# fake srun: one task per node, SLURM_NODEID set per task; the task pids go where fake scancel finds them
args=()
for a in "$@"; do case "$a" in --*) ;; *) args+=("$a") ;; esac; done
pids=()
for ((i = 0; i < SLURM_NNODES; i++)); do
    SLURM_NODEID=$i SLURM_PROCID=$i "${args[@]}" &
    pids+=($!)
done
echo "${pids[@]}" > "$FAKE_OUT/step.pids"
rc=0
for p in "${pids[@]}"; do
    while kill -0 "$p" 2>/dev/null; do wait "$p"; done
    wait "$p"; r=$?; [ $r -gt $rc ] && rc=$r
done
exit $rc
"""

FAKE_SCONTROL = r"""#!/bin/bash
case "$1 $2" in
    "show hostnames") printf 'node1\nnode2\n' ;;
    "show node") echo "NodeName=$3 Arch=x86_64 CoresPerSocket=2 NodeAddr=10.1.2.3 NodeHostName=$3 Version=22.05" ;;
    *) if [ "$1" = requeue ]; then echo "$2" >> "$FAKE_OUT/requeued"; else exit 1; fi ;;
esac
"""

FAKE_SCANCEL = r"""#!/bin/bash
# fake scancel --signal=SIG JOBID: signal every process of the job's steps (not the batch shell), as Slurm does
sig=
for a in "$@"; do case "$a" in --signal=*) sig="${a#--signal=}" ;; esac; done
[ -n "$sig" ] || exit 1
echo "$sig" >> "$FAKE_OUT/scancel"
kill -s "$sig" $(cat "$FAKE_OUT/step.pids")
"""

FAKE_ACCELERATE = r"""#!/usr/bin/env python3
import json, os, signal, sys, time
out = os.environ["FAKE_OUT"]
node = os.environ.get("SLURM_NODEID", "?")
rec = {"argv": sys.argv[1:], "node": node, "setup": os.environ.get("SETUP_DONE"),
       "ip": os.environ.get("ALIGNKIT_MAIN_PROCESS_IP"), "level": os.environ.get("ACCELERATE_LOG_LEVEL"),
       "token": os.environ.get("HF_TOKEN")}
with open(os.path.join(out, f"node-{node}.json"), "w") as f:
    json.dump(rec, f)
if os.environ.get("FAKE_SLEEP"):
    def stop(signum, frame):
        open(os.path.join(out, f"checkpoint-{node}"), "w").write(str(signum))
        if os.environ.get("FAKE_STATUS"):  # what the trainer writes into <output_dir>/alignkit/status.json
            run = sys.argv[sys.argv.index("--run") + 1]
            with open(os.path.join(os.path.dirname(run), "status.json"), "w") as f:
                json.dump({"state": os.environ["FAKE_STATUS"], "time": "now"}, f, indent=2)
        sys.exit(int(os.environ.get("FAKE_EXIT", "3")))
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR1, stop)
    open(os.path.join(out, f".started-{node}"), "w").write(str(os.getpid()))
    os.replace(os.path.join(out, f".started-{node}"), os.path.join(out, f"started-{node}"))
    time.sleep(float(os.environ["FAKE_SLEEP"]))
"""


@pytest.fixture
def fakes(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL), ("scancel", FAKE_SCANCEL), ("accelerate", FAKE_ACCELERATE)):
        p = bin_dir / name
        if name == "accelerate":  # this interpreter, not whatever python3 is on PATH
            text = f"#!{sys.executable}\n" + text.split("\n", 1)[1]
        p.write_text(text)
        p.chmod(0o755)
    out = tmp_path / "fake-out"
    out.mkdir()
    return bin_dir, out


def _env(bin_dir: Path, out: Path, nodes: int, **extra) -> dict:
    env = dict(os.environ)
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", FAKE_OUT=str(out), SLURM_JOB_ID="1234",
               SLURM_NNODES=str(nodes), SLURM_JOB_NODELIST="node[1-2]", **extra)
    return env


def _prepare_out(base: Path, name: str) -> Path:
    out = base / name
    (out / "alignkit").mkdir(parents=True)
    (out / "alignkit" / "run.yaml").write_text("task: sft\n")
    return out


def _render(plan, out: Path, **kw) -> str:
    kw.setdefault("job_name", "job")
    kw.setdefault("nodes", plan.num_nodes)
    kw.setdefault("gpus_per_node", plan.gpus_per_node)
    return slurm.render_sbatch(plan, log_dir=out / "alignkit", run_file=out / "alignkit" / "run.yaml", **kw)


def _sbatch_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("#SBATCH")]


# ----------------------------------------------------------------------------- what runs on each node


def test_each_node_gets_its_own_rank_and_the_same_rendezvous(fakes, tmp_path):
    bin_dir, fout = fakes
    out = _prepare_out(tmp_path, "run")
    plan = make_plan(str(bin_dir / "accelerate"), nodes=2, per_node=4, out=out, profile="full",
                     extra_flags=["--main_process_ip", "1.1.1.1", "--rdzv_backend=c10d", "--same_network"])
    script = tmp_path / "job.sbatch"
    script.write_text(_render(plan, out))
    res = subprocess.run(["bash", str(script)], env=_env(bin_dir, fout, 2), cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    recs = [json.loads((fout / f"node-{i}.json").read_text()) for i in (0, 1)]
    for rank, rec in enumerate(recs):
        argv = rec["argv"]
        assert argv[0] == "launch"
        flags = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
        assert flags["--machine_rank"] == str(rank)
        assert flags["--num_machines"] == "2"
        assert flags["--num_processes"] == "8"
        assert flags["--main_process_ip"] == "10.1.2.3"  # NodeAddr of the first host, not a node name
        assert flags["--main_process_port"] == str(20000 + 1234 % 20000)
        assert flags["--rdzv_backend"] == "static"
        # the plan's single-node values are replaced, not duplicated
        for f in ("--machine_rank", "--num_machines", "--num_processes", "--main_process_ip", "--rdzv_backend"):
            assert sum(a == f or a.startswith(f + "=") for a in argv) == 1, (f, argv)
        assert argv.count("--same_network") == 1
        assert argv[-4:] == ["-m", "alignkit.train.sft", "--run", str(out / "alignkit" / "run.yaml")]
        assert rec["level"] == "info"


def test_hostile_strings_stay_data(fakes, tmp_path):
    bin_dir, fout = fakes
    out = _prepare_out(tmp_path, HOSTILE)
    setup = tmp_path / f"setup {HOSTILE}.sh"
    setup.write_text("export SETUP_DONE=yes\n")
    plan = make_plan(str(bin_dir / "accelerate"), nodes=2, per_node=1, out=out)
    text = _render(plan, out, job_name=HOSTILE, partition="p'art", account='a"cc', qos="q`x`", constraint="c$(x)",
                   env_setup=str(setup), extra_sbatch_args=["--comment=$(touch PWNED) `x` ; 'y'"],
                   time="10:00")
    assert "\n#SBATCH --job-name=" in text
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    res = subprocess.run(["bash", str(script)], env=_env(bin_dir, fout, 2), cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    for i in (0, 1):
        rec = json.loads((fout / f"node-{i}.json").read_text())
        assert rec["argv"][rec["argv"].index("--run") + 1] == str(out / "alignkit" / "run.yaml")
        assert rec["argv"][rec["argv"].index("--config_file") + 1] == str(out / "alignkit" / "accelerate.yaml")
        assert rec["setup"] == "yes"
    assert not list(tmp_path.rglob("PWNED*")), "a hostile string was executed"


@pytest.mark.parametrize("field,kw", [
    ("--job-name", {"job_name": "a\nb"}),
    ("--partition", {"partition": "gpu\n#SBATCH --wrap=x"}),
    ("--account", {"account": "a\rb"}),
    ("--qos", {"qos": "q\x00"}),
    ("--constraint", {"constraint": "c\n"}),
    ("--time", {"time": "1:00\n"}),
    ("--sbatch-arg #2", {"extra_sbatch_args": ["--mem=1G", "--comment=a\nb"]}),
    ("--env-setup", {"env_setup": "/x\n/y"}),
])
def test_newlines_are_refused_naming_the_field(tmp_path, field, kw):
    out = _prepare_out(tmp_path, "run")
    plan = make_plan("accelerate", nodes=1, per_node=1, out=out)
    with pytest.raises(UsageError) as exc:
        _render(plan, out, **kw)
    assert exc.value.problems[0].where == field
    assert exc.value.exit_code == 2


def test_bad_values_are_refused(tmp_path):
    out = _prepare_out(tmp_path, "run")
    plan = make_plan("accelerate", nodes=2, per_node=2, out=out)
    with pytest.raises(UsageError, match="4 processes"):
        _render(plan, out, nodes=2, gpus_per_node=1)
    with pytest.raises(UsageError) as exc:
        _render(plan, out, extra_sbatch_args=["mem=1G"])
    assert "--sbatch-arg #1" == exc.value.problems[0].where
    with pytest.raises(UsageError) as exc:
        _render(plan, out, time="two hours")
    assert exc.value.problems[0].where == "--time"
    with pytest.raises(UsageError) as exc:
        slurm.render_sbatch(plan, job_name="j", nodes=2, gpus_per_node=2, log_dir=tmp_path / "a\\b",
                            run_file=out / "alignkit" / "run.yaml")
    assert exc.value.problems[0].where == "log dir"


def test_sbatch_header(tmp_path):
    out = _prepare_out(tmp_path, "run 50%")
    gpu = make_plan("accelerate", nodes=2, per_node=8, out=out, profile="full")
    lines = _sbatch_lines(_render(gpu, out, partition="gpu", time="2-00:00:00", exclusive=True, cpus_per_task=32,
                                  extra_sbatch_args=["--mem=0"]))
    assert "#SBATCH --nodes=2" in lines
    assert "#SBATCH --ntasks-per-node=1" in lines
    assert "#SBATCH --gpus-per-node=8" in lines
    assert "#SBATCH --cpus-per-task=32" in lines
    assert "#SBATCH --requeue" in lines
    assert "#SBATCH --signal=B:USR1@300" in lines
    assert "#SBATCH --partition=gpu" in lines
    assert "#SBATCH --time=2-00:00:00" in lines
    assert "#SBATCH --exclusive" in lines
    assert "#SBATCH --mem=0" in lines
    assert "#SBATCH --open-mode=append" in lines
    # '%' in the directory is doubled so Slurm keeps it; %j is the job id
    assert f"#SBATCH --output='{out}/alignkit/slurm-%j.out'".replace("50%", "50%%") in lines
    cpu = make_plan("accelerate", nodes=2, per_node=2, out=out, profile="qlora,cpu")
    cpu_lines = _sbatch_lines(_render(cpu, out, time="20"))
    assert not any("gpus" in ln for ln in cpu_lines)  # CPU processes, no GPU request
    assert "#SBATCH --signal=B:USR1@300" in cpu_lines  # 20 min limit: 300 s lead still fits
    short = _sbatch_lines(_render(cpu, out, time="2:00"))
    assert "#SBATCH --signal=B:USR1@30" in short


def test_secrets_are_never_written(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secretvalue123456")
    out = _prepare_out(tmp_path, "run")
    plan = make_plan("accelerate", nodes=1, per_node=1, out=out,
                     env={"HF_TOKEN": "hf_secretvalue123456", "WANDB_API_KEY": "k" * 20, "OK_VAR": "1"})
    text = _render(plan, out)
    assert "hf_secretvalue123456" not in text
    assert "k" * 20 not in text
    assert "HF_TOKEN=" not in text and "WANDB_API_KEY" not in text
    assert "export OK_VAR=1" in text


def test_python_module_form_and_equals_flags():
    launch = render.split_launch(["/v/bin/python", "-m", "accelerate.commands.launch", "--num_processes=4",
                                  "--num-machines", "1", "--main_process_port=1234", "--mixed_precision", "bf16",
                                  "train.py", "--num_processes", "99"])
    assert launch.prefix == ["/v/bin/python", "-m", "accelerate.commands.launch"]
    assert launch.flags == ["--mixed_precision", "bf16"]
    assert launch.target == ["train.py", "--num_processes", "99"]  # the script's own args are untouched
    assert launch.port == "1234"
    with pytest.raises(ValueError):
        render.split_launch(["python", "train.py"])


@pytest.mark.parametrize("value,seconds", [("90", 5400), ("1:30", 90), ("2:00:00", 7200), ("1-0", 86400),
                                           ("1-02:03", 93780), ("1-00:00:05", 86405), ("UNLIMITED", None)])
def test_time_limits(value, seconds):
    assert slurm.parse_time_limit(value) == seconds


# ----------------------------------------------------------------------------- preemption


def _start_sleeping_job(fakes, tmp_path, nodes=2, **env):
    bin_dir, fout = fakes
    out = _prepare_out(tmp_path, "run")
    plan = make_plan(str(bin_dir / "accelerate"), nodes=nodes, per_node=1, out=out)
    script = tmp_path / "job.sbatch"
    script.write_text(_render(plan, out))
    proc = subprocess.Popen(["bash", str(script)], env=_env(bin_dir, fout, nodes, FAKE_SLEEP="60", **env), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 30
    while not all((fout / f"started-{i}").exists() for i in range(nodes)):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline
        time.sleep(0.05)
    return proc, fout


def test_usr1_checkpoints_and_requeues(fakes, tmp_path):
    proc, fout = _start_sleeping_job(fakes, tmp_path)
    proc.send_signal(signal.SIGUSR1)  # what Slurm sends to the batch shell --signal-lead s before the limit
    log, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, log
    # each trainer process got USR1 once, through Slurm (scancel --signal), not a kill of srun
    assert (fout / "checkpoint-0").read_text() == str(int(signal.SIGUSR1))
    assert (fout / "checkpoint-1").read_text() == str(int(signal.SIGUSR1))
    assert (fout / "scancel").read_text().split() == ["USR1"]
    assert (fout / "requeued").read_text().split() == ["1234"]
    assert "requeueing job 1234" in log


@pytest.mark.parametrize("state,exit_code,requeued", [("preempted", "0", True), ("completed", "0", False)])
def test_after_usr1_the_run_state_decides(fakes, tmp_path, state, exit_code, requeued):
    # the trainer exits 0 after saving a checkpoint on a signal: only its status file tells stopped from done
    proc, fout = _start_sleeping_job(fakes, tmp_path, FAKE_STATUS=state, FAKE_EXIT=exit_code)
    proc.send_signal(signal.SIGUSR1)
    log, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, log
    assert (fout / "requeued").exists() == requeued, log


from alignkit.launch.spec import BatchMath, LaunchPlan
from alignkit.launch import slurm
from alignkit.launch.slurm import layout, query, render
def test_term_from_slurm_does_not_requeue(fakes, tmp_path):
    proc, fout = _start_sleeping_job(fakes, tmp_path, nodes=1)
    proc.send_signal(signal.SIGTERM)  # scancel / scontrol requeue / preemption: Slurm decides what follows
    # Slurm delivers the same TERM to the step itself
    os.kill(int((fout / "started-0").read_text()), signal.SIGTERM)
    log, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3, log
    assert (fout / "checkpoint-0").exists()
    assert not (fout / "requeued").exists()


# ----------------------------------------------------------------------------- parsing Slurm's answers


def test_parse_keyvals_with_spaces_and_equals_in_values():
    line = ("JobId=7 JobName=a b Foo=bar UserId=root(0) JobState=RUNNING Reason=None "
            "Command=/x y/alignkit/slurm-a.sbatch WorkDir=/w StdOut=/x y/alignkit/slurm-7.out Power=")
    kv = query.parse_keyvals(line, query.SCONTROL_KEYS)
    assert kv["JobName"] == "a b Foo=bar"
    assert kv["JobState"] == "RUNNING"
    assert kv["StdOut"] == "/x y/alignkit/slurm-7.out"
    assert layout.output_dir_from_script(kv["Command"]) == "/x y"


def test_run_progress_reads_the_newest_state(tmp_path):
    assert slurm.run_progress(tmp_path) is None
    for step, loss in ((10, 2.5), (20, 1.5)):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        (d / "trainer_state.json").write_text(json.dumps({
            "global_step": step, "max_steps": 30,
            "log_history": [{"loss": 3.0, "step": 5}, {"loss": loss, "step": step}, {"eval_loss": 9, "step": step}]}))
    p = slurm.run_progress(tmp_path)
    assert (p["step"], p["loss"], p["max_steps"]) == (20, 1.5, 30)
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 30, "max_steps": 30,
                                                             "log_history": [{"loss": 0.5, "step": 30}]}))
    assert slurm.run_progress(tmp_path)["loss"] == 0.5


def test_missing_slurm_is_a_clear_runtime_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeFailure) as exc:
        slurm.submit(tmp_path / "x.sbatch")
    assert exc.value.problems[0].where == "sbatch"
    assert exc.value.exit_code == 1
    with pytest.raises(UsageError):
        slurm.job_info("12; rm -rf /")


def test_log_progress_reads_the_newest_loss_line(tmp_path):
    log = tmp_path / "slurm-1.out"
    log.write_text("alignkit[...]: job 1\n"
                   "0: {'loss': '6.3', 'grad_norm': '3.5', 'epoch': '0.05'}\n"
                   " 33%|███▎      | 1/3 [00:00<00:00]   {'loss': '5.883', 'grad_norm': '2.9', 'epoch': '0.1'}\n"
                   "{'train_runtime': '0.4', 'train_loss': '5.8', 'epoch': '0.15'}\n")
    assert slurm.log_progress(log) == {"source": str(log), "loss": 5.883, "epoch": 0.1}
    log.write_text("no losses here\n")
    assert slurm.log_progress(log) is None
    assert slurm.log_progress(tmp_path / "missing.out") is None


def test_log_patterns_round_trip(tmp_path):
    pattern = slurm.log_pattern(tmp_path / "a 50%")
    assert pattern.endswith("/a 50%%/slurm-%j.out")
    assert slurm.expand_pattern(pattern, "77") == f"{tmp_path}/a 50%/slurm-77.out"
    # as scontrol shows StdOut: %j already expanded, '%%' kept
    assert slurm.expand_pattern(f"{tmp_path}/a 50%%/slurm-77.out", "77") == f"{tmp_path}/a 50%/slurm-77.out"
    assert slurm.expand_pattern("/l/%x-%5j.out", "77", job_name="n") == "/l/n-00077.out"


# ----------------------------------------------------------------------------- finished jobs


def _fake_slurm_bin(tmp_path: Path, scripts: dict[str, str]) -> Path:
    d = tmp_path / "fakebin"
    d.mkdir()
    for name, body in scripts.items():
        (d / name).write_text("#!/bin/bash\n" + body)
        (d / name).chmod(0o755)
    return d


def test_finished_jobs_come_from_the_jobcomp_file_then_sacct(tmp_path, monkeypatch):
    """Once the controller forgets a job: the jobcomp file (the local cluster), else sacct (real clusters)."""
    comp = tmp_path / "jobcomp.txt"
    comp.write_text(
        "JobId=41 UserId=u(1) GroupId=g(1) Name=a b JobState=PENDING Partition=p TimeLimit=5 "
        "StartTime=2026-01-01T00:00:00 EndTime=2026-01-01T00:00:09 NodeList=n1 NodeCnt=1 ProcCnt=1 WorkDir=/w "
        "ReservationName= Tres=cpu=1 Account= QOS= WcKey= Cluster=c SubmitTime=x EligibleTime=x "
        "DerivedExitCode=0:0 ExitCode=0:0\n"
        "JobId=41 UserId=u(1) GroupId=g(1) Name=a b JobState=COMPLETED Partition=p TimeLimit=5 "
        "StartTime=2026-01-01T00:01:00 EndTime=2026-01-01T01:02:03 NodeList=n[1-2] NodeCnt=2 ProcCnt=2 WorkDir=/w "
        "ReservationName= Tres=cpu=2 Account= QOS= WcKey= Cluster=c SubmitTime=x EligibleTime=x "
        "DerivedExitCode=0:0 ExitCode=0:0\n")
    bin_dir = _fake_slurm_bin(tmp_path, {
        "scontrol": f'''case "$*" in
  "show config") printf 'ClusterName = c\\nJobCompType = jobcomp/filetxt\\nJobCompLoc = {comp}\\n' ;;
  *) echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1 ;;
esac''',
        "sacct": '''echo "43|train x|CANCELLED by 0|00:10:00|4|gpu[01-04]|0:15"''',
    })
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "cache"))
    query.forget_cluster_name()
    info = slurm.job_info("41")
    assert (info.state, info.name, info.nodes, info.node_list, info.elapsed, info.source) == \
        ("COMPLETED", "a b", "2", "n[1-2]", "01:01:03", "jobcomp")
    info = slurm.job_info("43")
    assert (info.state, info.name, info.nodes, info.elapsed, info.source) == \
        ("CANCELLED", "train x", "4", "00:10:00", "sacct")
    with pytest.raises(RuntimeFailure) as exc:
        slurm.cancel("41")
    assert "already finished (COMPLETED)" in exc.value.problems[0].message
    query.forget_cluster_name()


def test_script_and_log_paths_live_in_the_run_dir(tmp_path):
    out = tmp_path / "run 50%"
    script = layout.script_path(out, HOSTILE)
    assert script.parent == out / "alignkit" and script.suffix == ".sbatch"
    assert script.name == "slurm-x_touch_PWNED_touch_PWNED2_touch_PWNED3_q_dq_c_j_bold.sbatch"
    assert layout.script_path(out, "..").name == "slurm-job.sbatch"
    assert layout.output_dir_from_script(str(script)) == str(out)
    log_dir = layout.log_dir(out)
    assert slurm.log_file(log_dir, "77") == out / "alignkit" / "slurm-77.out"  # '%%' of the pattern undone
    assert slurm.expand_pattern(slurm.log_pattern(log_dir), "77") == str(slurm.log_file(log_dir, "77"))


def test_busy_jobs_are_the_active_ones_recorded_for_the_output_dir(tmp_path, monkeypatch):
    bin_dir = _fake_slurm_bin(tmp_path, {"scontrol": '''case "$*" in
  "-o show job 5") echo "JobId=5 JobName=a b JobState=RUNNING Reason=None" ;;
  "-o show job 6") echo "JobId=6 JobName=a JobState=COMPLETED Reason=None" ;;
  "show config") echo "ClusterName = c" ;;
  *) echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1 ;;
esac'''})
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    recs = [{"job_id": "5", "output_dir": "/o"}, {"job_id": "6", "output_dir": "/o"}, {"job_id": "7", "output_dir": "/o"},
            {"job_id": "5", "output_dir": "/o"}, {"job_id": "8", "output_dir": "/other"}]
    slurm.registry_path().write_text("\n".join(json.dumps(r) for r in recs) + "\nnot json\n[1]\n")
    assert slurm.busy_jobs("/o") == ["5 (RUNNING)"]
    assert slurm.busy_jobs("/nowhere") == []


def test_a_jobs_log_is_read_from_where_slurm_says(tmp_path, monkeypatch):
    log = tmp_path / "logs 50%" / "slurm-9.out"
    bin_dir = _fake_slurm_bin(tmp_path, {"scontrol": f'''case "$*" in
  "-o show job 9") echo "JobId=9 JobName=n JobState=$(cat {tmp_path}/state) StdOut={str(log).replace("%", "%%")}" ;;
  *) exit 1 ;;
esac'''})
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "state").write_text("PENDING")
    assert slurm.log_path("9") == log
    assert list(slurm.job_logs("9")) == [f"(no output yet: job 9 is PENDING; the log will be {log})\n"]
    log.parent.mkdir()
    log.write_text("hello\n")
    (tmp_path / "state").write_text("COMPLETED")
    assert "".join(slurm.job_logs("9", follow=True, poll=0.01, idle_exit=0.05)) == "hello\n"
    log.unlink()
    with pytest.raises(RuntimeFailure) as exc:
        list(slurm.job_logs("9"))
    assert exc.value.problems[0].where == str(log)
