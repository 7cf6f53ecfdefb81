"""One training process starts without `accelerate launch`, with the environment accelerate would give it.

The environment is computed without importing accelerate (alignkit.launch.build.accelerate_launch_env);
these tests run the real `accelerate launch` on the same accelerate config and compare what the training
process sees, so an accelerate upgrade that changes its launcher shows up here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alignkit.launch.build import accelerate_launch_env, plan_run

DUMP = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))\n"


def _env_under_accelerate(tmp_path: Path, acc: dict, environ: dict[str, str]) -> dict[str, str]:
    config = tmp_path / "accelerate.yaml"
    config.write_text(yaml.safe_dump(acc))
    script = tmp_path / "dump_env.py"
    script.write_text(DUMP)
    out = tmp_path / "env.json"
    accelerate = Path(sys.executable).parent / "accelerate"
    proc = subprocess.run([str(accelerate), "launch", "--config_file", str(config), "--num_processes", "1",
                           "--num_machines", "1", "--machine_rank", "0", str(script), str(out)],
                          env=environ, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.mark.e2e  # the real `accelerate launch`, four times: not in `make test-fast`
@pytest.mark.parametrize("profile", ["cpu", "lora"])
@pytest.mark.parametrize("threads", [None, "3"])
def test_direct_env_matches_accelerate_launch(tmp_path, profile, threads):
    plan = plan_run("sft", recipe="tiny", profile=profile, num_gpus=1, overrides=[f"--output_dir={tmp_path}/o"])
    environ = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads:
        environ["OMP_NUM_THREADS"] = threads
    environ["CUDA_VISIBLE_DEVICES"] = ""
    ours = accelerate_launch_env(plan.accelerate_config, environ)
    theirs = _env_under_accelerate(tmp_path, plan.accelerate_config, environ)
    differ = {k: (v, theirs.get(k)) for k, v in ours.items() if theirs.get(k) != v
              # accelerate's multi-GPU launcher leaves ACCELERATE_USE_CPU unset, which reads as False
              and not (k == "ACCELERATE_USE_CPU" and v == "False" and k not in theirs)}
    assert not differ, differ
    missing = {k: v for k, v in theirs.items()
               if k.startswith(("ACCELERATE_", "KMP_", "OMP_")) and k not in ours and k not in environ}
    assert not missing, f"accelerate sets {missing}, the direct start does not"
    if threads:
        assert ours["OMP_NUM_THREADS"] == threads


def test_one_process_starts_directly_others_through_accelerate(tmp_path):
    out = f"--output_dir={tmp_path}/o"
    one = plan_run("sft", recipe="tiny", profile="cpu", overrides=[out])
    assert one.direct and one.command[:3] == [sys.executable, "-m", "alignkit.train.sft"]
    assert one.env["ACCELERATE_USE_CPU"] == "True" and one.accelerate_command[1] == "launch"
    assert any("without `accelerate launch`" in n for n in one.notes)

    forced = plan_run("sft", recipe="tiny", profile="cpu", overrides=[out, "--launch.launcher=accelerate"])
    assert not forced.direct and forced.command == forced.accelerate_command
    assert "ACCELERATE_USE_CPU" not in forced.env

    ddp = plan_run("sft", recipe="tiny", profile="cpu", num_gpus=2, overrides=[out, "--per_device_train_batch_size=8"])
    assert not ddp.direct and ddp.command[1] == "launch"

    zero3 = plan_run("sft", recipe="tiny", profile="full,cpu", num_gpus=1, overrides=[out])
    assert not zero3.direct and zero3.command[1] == "launch"

    slurm = plan_run("sft", recipe="tiny", profile="cpu", overrides=[out], via_accelerate=True)
    assert not slurm.direct and slurm.command[1] == "launch"


def test_bad_launcher_value_names_the_choices(tmp_path):
    from alignkit.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        plan_run("sft", recipe="tiny", profile="cpu",
                 overrides=[f"--output_dir={tmp_path}/o", "--launch.launcher=torchrun"])
    assert "launch.launcher" in str(err.value) and "accelerate" in str(err.value)
