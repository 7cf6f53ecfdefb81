"""Real training through `alignkit slurm submit` on the local cluster: the tiny recipe, cpu profile.

The three jobs are submitted together (the cluster runs them side by side) and each test waits for its own:
* ``ref``: 1 node x 1 process, per-device batch 8 -> gradient accumulation 2, global batch 16;
* ``multi``: 2 nodes x 1 process, per-device batch 8 -> accumulation 1, the same global batch 16;
* ``preempt``: 1 node x 1 process, long enough to be signalled mid-training;
* ``zero3``: 2 nodes x 1 process under DeepSpeed ZeRO-3 (the full profile on CPU);
* ``orpo``: ``--task orpo`` on 2 nodes: ORPO (TRL's trainer under trl.experimental) from the base model.
Adding another training scenario is one more entry in ``JOBS`` and one more test.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from alignkit.launch import slurm

from .conftest import flat, read_log, wait_log, wait_state

pytestmark = pytest.mark.slurm

COMMON = ["--gpus-per-node", "1"]
SFT = ["--recipe", "tiny", "--task", "sft"]
QUICK = ["--per_device_train_batch_size=8", "--logging_steps=1", "--eval_strategy=no", "--save_strategy=no",
         "--report_to=none"]
JOBS = {
    "ref": [*SFT, "--profile", "cpu", "--nodes", "1", *QUICK, "--max_steps=6"],
    "multi": [*SFT, "--profile", "cpu", "--nodes", "2", *QUICK, "--max_steps=6"],
    "preempt": [*SFT, "--profile", "cpu", "--nodes", "1", *QUICK, "--max_steps=40", "--time=30:00"],
    # the full profile's engine across machines: DeepSpeed ZeRO-3, one process per node
    "zero3": [*SFT, "--profile", "full,cpu", "--nodes", "2", *QUICK, "--max_steps=4"],
    # ORPO from the base model on the demo's preference pairs ({orpo_config}: written by the fixture)
    "orpo": ["--task", "orpo", "--config", "{orpo_config}", "--profile", "cpu", "--nodes", "2", *QUICK,
             "--max_steps=4"],
}


def _orpo_config(base: Path, assets) -> Path:
    f = base / "orpo.yaml"
    f.write_text(yaml.safe_dump({
        "model": {"model_name_or_path": str(assets.model_dir)},
        "data": {"mixture": [{"path": str(assets.prefs_train), "split": "train"}]},
        "train": {"beta": 0.1, "learning_rate": 1.0e-3, "max_length": 64},
        "launch": {"global_batch_size": 16},
    }))
    return f


@pytest.fixture(scope="module")
def training_jobs(two_nodes, tiny_assets, tmp_path_factory, cli) -> dict[str, tuple[str, Path]]:
    base = tmp_path_factory.mktemp("slurm-training")
    values = {"orpo_config": str(_orpo_config(base, tiny_assets))}
    jobs = {}
    for name, args in JOBS.items():
        args = [a.format(**values) for a in args]
        out = base / name
        res = cli("submit", *COMMON, *args, f"--output_dir={out}", "--job-name", f"alignkit-test-{name}", cwd=base)
        assert res.returncode == 0, res.stderr
        job_id = res.stdout.strip().splitlines()[-1]
        assert job_id.isdigit(), res.stdout
        assert f"submitted job {job_id}" in flat(res.stderr)
        assert (out / "alignkit" / "run.yaml").is_file()
        assert (out / "alignkit" / f"slurm-alignkit-test-{name}.sbatch").is_file()
        jobs[name] = (job_id, out)
    return jobs


def _losses(out: Path) -> list[float]:
    state = json.loads((out / "trainer_state.json").read_text())
    return [h["loss"] for h in state["log_history"] if "loss" in h]


def test_tiny_recipe_trains_to_a_model_through_slurm(training_jobs, cli):
    job_id, out = training_jobs["ref"]
    wait_state(job_id, "COMPLETED", timeout=240)
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert json.loads((out / "alignkit" / "status.json").read_text())["state"] == "completed"
    res = cli("status", job_id)
    assert res.returncode == 0 and "COMPLETED" in res.stdout and "step 6/6" in res.stdout, res.stdout
    assert f"slurm-{job_id}.out" in res.stdout


def test_two_nodes_train_one_model_with_the_single_node_loss(training_jobs):
    ref_id, ref_out = training_jobs["ref"]
    job_id, out = training_jobs["multi"]
    wait_state(job_id, "COMPLETED", timeout=240)
    wait_state(ref_id, "COMPLETED", timeout=240)
    log = read_log(job_id)
    assert re.search(r"^0: ", log, re.M) and re.search(r"^1: ", log, re.M), "one task per node, labelled"
    env = json.loads((out / "alignkit" / "env.json").read_text())
    assert env["world_size"] == 2, "the two nodes must train one model (DDP over gloo), not two"
    run = yaml.safe_load((out / "alignkit" / "run.yaml").read_text())
    assert run["config"]["train"]["gradient_accumulation_steps"] == 1 and run["global_batch_size"] == 16
    ref, multi = _losses(ref_out), _losses(out)
    assert len(ref) == len(multi) == 6
    assert multi[-1] < multi[0]
    # the same samples per optimizer step (2 x 8 across nodes vs 8 + 8 accumulated): the same curve
    for a, b in zip(ref, multi):
        assert abs(a - b) / a < 0.015, (ref, multi)


def test_preempted_training_checkpoints_requeues_and_resumes(training_jobs, cli):
    job_id, out = training_jobs["preempt"]
    wait_log(job_id, "{'loss'", timeout=240)
    live = cli("status", job_id, "--json")
    assert live.returncode == 0, live.stderr
    st = json.loads(live.stdout)
    assert st["state"] == "RUNNING" and st["progress"]["loss"] > 0  # the last logged loss, while running
    # what --signal=B:USR1@<lead> does before the time limit
    sig = subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], capture_output=True, text=True)
    assert sig.returncode == 0, sig.stderr
    info = wait_state(job_id, "COMPLETED", timeout=240)
    log = read_log(job_id)
    assert "requeueing job" in log
    m = re.search(r"resuming from (\S*checkpoint-(\d+))", log)
    assert m, log
    assert 0 < int(m.group(2)) < 40  # stopped mid-run, resumed from that checkpoint
    assert info.restarts == 1
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 40
    assert json.loads((out / "alignkit" / "status.json").read_text())["state"] == "completed"
    assert slurm.job_info(job_id).progress["step"] == 40


def test_orpo_trains_across_two_nodes_through_slurm(training_jobs, cli):
    job_id, out = training_jobs["orpo"]
    wait_state(job_id, "COMPLETED", timeout=600)
    run = yaml.safe_load((out / "alignkit" / "run.yaml").read_text())
    assert run["task"] == "orpo"
    assert "alignkit.train.orpo" in (out / "alignkit" / "slurm-alignkit-test-orpo.sbatch").read_text()
    env = json.loads((out / "alignkit" / "env.json").read_text())
    assert env["world_size"] == 2, env
    logs = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert any("log_odds_ratio" in h for h in logs), logs  # ORPO's own term, logged by its trainer
    assert len(_losses(out)) == 4
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / "alignkit" / "status.json").read_text())["state"] == "completed"


# last: the jobs run side by side, and the preemption test must find its job still running
def test_two_nodes_shard_one_model_with_deepspeed_zero3(training_jobs):
    """Multi-node DeepSpeed as the Zephyr full recipe runs it on a cluster (here 2 nodes x 1 CPU process):
    one ZeRO-3 group across the nodes, parameters partitioned, the 16-bit weights gathered at save."""
    job_id, out = training_jobs["zero3"]
    wait_state(job_id, "COMPLETED", timeout=900)
    log = read_log(job_id)
    assert re.search(r"^0: ", log, re.M) and re.search(r"^1: ", log, re.M), "one task per node, labelled"
    env = json.loads((out / "alignkit" / "env.json").read_text())
    assert env["world_size"] == 2 and env["distributed_type"] == "DistributedType.DEEPSPEED", env
    assert json.loads((out / "alignkit" / "deepspeed.json").read_text())["zero_optimization"]["stage"] == 3
    info = json.loads((out / "alignkit" / "model.json").read_text())
    assert info["zero3_partitioned"] is True
    losses = _losses(out)
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)
    assert info["total_params"] == sum(p.numel() for p in model.parameters())
    assert json.loads((out / "alignkit" / "status.json").read_text())["state"] == "completed"
