"""The sbatch scripts, byte for byte: representative launches rendered with fixed inputs and compared with
the scripts the renderer produced before it was split into a package (tests/unit/golden/slurm/*.sbatch).

A change to what the script says is a deliberate change: re-render the case and review the diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignkit.launch import slurm
from alignkit.launch.spec import BatchMath, LaunchPlan

GOLDEN = Path(__file__).parent / "golden" / "slurm"
HOSTILE = "x $(touch PWNED) `touch PWNED2`; touch PWNED3 'q' \"dq\" #c %j [bold]"


def _plan(out: str, *, task: str = "sft", profile: str, nodes: int, per_node: int, flags: list[str],
          prefix: list[str] | None = None, env: dict | None = None) -> LaunchPlan:
    world = nodes * per_node
    rdir = f"{out}/alignkit"
    prefix = prefix or ["/opt/venv/bin/accelerate", "launch"]
    cmd = [*prefix, "--config_file", f"{rdir}/accelerate.yaml", "--num_processes", str(world),
           "--num_machines", str(nodes), "--machine_rank", "0", *flags,
           "-m", f"alignkit.train.{task}", "--run", f"{rdir}/run.yaml"]
    return LaunchPlan(
        task=task, profile=profile, num_nodes=nodes, gpus_per_node=per_node, num_gpus_note=None, world_size=world,
        batch=BatchMath(4, 2, world, 8 * world, 128, True), accelerate_config={}, deepspeed_config=None,
        config={"train": {"output_dir": out}}, output_dir=out, command=cmd, accelerate_command=cmd,
        env=dict(env if env is not None else {"ACCELERATE_LOG_LEVEL": "info"}),
    )


def _case(name: str):
    out = "/shared/runs/zephyr"
    if name == "ddp-1node":
        plan = _plan(out, profile="full", nodes=1, per_node=8, flags=["--mixed_precision", "bf16"])
        kw = dict(job_name="alignkit-sft-zephyr", partition="gpu", time="2:00:00")
    elif name == "zero3-2node":
        plan = _plan(out, task="dpo", profile="full", nodes=2, per_node=8,
                     flags=["--use_deepspeed", "--deepspeed_config_file", f"{out}/alignkit/deepspeed.json",
                            "--zero3_init_flag", "true", "--main_process_port", "29555", "--rdzv_backend=c10d",
                            "--same_network", "--mixed_precision", "bf16"],
                     env={"ACCELERATE_LOG_LEVEL": "info", "NCCL_DEBUG": "WARN", "HF_TOKEN": "hf_never_written",
                          "WANDB_API_KEY": "never-written"})
        kw = dict(job_name="zephyr dpo", partition="gpu", time="2-00:00:00", account="proj", qos="high",
                  constraint="h100", exclusive=True, cpus_per_task=32, extra_sbatch_args=["--mem=0", "--mail-type=END"],
                  env_setup="/shared/env/setup modules.sh")
    elif name == "cpu-2node":
        plan = _plan(out, profile="qlora,cpu", nodes=2, per_node=2, flags=["--num-cpu-threads-per-process=2"],
                     prefix=["/opt/venv/bin/python", "-m", "accelerate.commands.launch"],
                     env={"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "2"})
        kw = dict(job_name="cpu", time="2:00")
    elif name == "gpus-forced":
        plan = _plan(out, profile="cpu", nodes=1, per_node=4, flags=[])
        kw = dict(job_name="j", request_gpus=True, time="UNLIMITED", signal_lead=120, main_process_port=12345)
    elif name == "no-gpus-forced":
        plan = _plan(out, profile="lora", nodes=3, per_node=2, flags=["--main_process_port=1"])
        kw = dict(job_name="j", request_gpus=False, time="90")
    elif name == "hostile":
        out = f"/shared/runs 50%/{HOSTILE}"
        plan = _plan(out, profile="full", nodes=2, per_node=1, flags=[],
                     env={"WEIRD": "a b'c\"d $(x) `y`"})
        kw = dict(job_name=HOSTILE, partition="p'art", account='a"cc', qos="q`x`", constraint="c$(x)",
                  env_setup=f"/shared/setup {HOSTILE}.sh", extra_sbatch_args=["--comment=$(touch PWNED) `x` ; 'y'"],
                  time="10:00")
    else:  # pragma: no cover
        raise KeyError(name)
    kw.setdefault("nodes", plan.num_nodes)
    kw.setdefault("gpus_per_node", plan.gpus_per_node)
    return plan, dict(log_dir=f"{out}/alignkit", run_file=f"{out}/alignkit/run.yaml", workdir="/home/u/work", **kw)


CASES = ["ddp-1node", "zero3-2node", "cpu-2node", "gpus-forced", "no-gpus-forced", "hostile"]


@pytest.mark.parametrize("name", CASES)
def test_script_is_unchanged(name, monkeypatch):
    for var in ("HF_TOKEN", "WANDB_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    plan, kw = _case(name)
    text = slurm.render_sbatch(plan, **kw)
    assert text == (GOLDEN / f"{name}.sbatch").read_text(encoding="utf-8")
