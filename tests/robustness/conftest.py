"""Shared pieces of the robustness tests: the real CLI in a subprocess, canary secrets, a tiny training
run that several tests look at; the /proc helpers of tests/processes.py.

The CLI itself runs through tests/helpers.py (``run_cli``, ``popen_cli``, ``cli_env``, ``flat``).

* ``CANARIES``: a distinct fake secret per variable; ``with_canaries(env)``: ``cli_env(env)`` with them.
* ``reference_run`` (session): ``alignkit sft --recipe tiny`` for ``REF_ARGS`` with the canaries set, started in
  the background when first requested (so it overlaps other work on 2 cores); ``.wait()`` returns it.
  test_faults compares its final weights with an interrupted-and-resumed run's; test_secrets scans it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import cli_env, popen_cli
from tests.processes import group_members, kill_all, processes_mentioning, proc_stat, wait_for  # noqa: F401 - the robustness tests import them from here

QUICK = ["--eval_strategy=no", "--report_to=none", "--logging_steps=1"]
# 12 steps, a complete checkpoint every 2: enough for a kill during a step, one during a checkpoint write
# and a resume in between, each process still short. save_total_limit=1 as in the Zephyr recipes: a kill
# during a checkpoint write must still leave the previous checkpoint
REF_ARGS = ["sft", "--recipe", "tiny", "--profile", "cpu", "--max_steps=12", "--save_strategy=steps",
            "--save_steps=2", "--save_total_limit=1", *QUICK]

CANARIES = {
    "HF_TOKEN": "hf_CanaryHfToken7a1c9e3f5b2d4068",
    "HUGGING_FACE_HUB_TOKEN": "hf_CanaryHubToken0d2f4b6a8c1e3579",
    "OPENAI_API_KEY": "sk-CanaryOpenAiKey5e7c9a1b3d2f4680",
    "WANDB_API_KEY": "CanaryWandbKey9b8a7c6d5e4f30211234abcd",
    "MY_JUDGE_KEY": "sk-CanaryJudgeKey3c5e7a9b1d2f4608",
}


def with_canaries(env: dict[str, str]) -> dict[str, str]:
    return cli_env(env, CANARIES)


# --------------------------------------------------------------------------- the shared training run


@dataclass
class RefRun:
    output_dir: Path
    root: Path  # everything this run wrote or printed lives below it
    proc: subprocess.Popen
    stdout_path: Path
    stderr_path: Path
    returncode: int | None = None

    def wait(self, timeout: float = 900) -> "RefRun":
        if self.returncode is None:
            try:
                self.returncode = self.proc.wait(timeout=timeout)
            finally:
                if self.proc.poll() is None:
                    os.killpg(self.proc.pid, signal.SIGKILL)
        assert self.returncode == 0, (f"reference run exit {self.returncode}\n"
                                      f"{self.stderr_path.read_text()[-6000:]}")
        return self

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, tiny_env):
    root = tmp_path_factory.mktemp("reference-run")
    out = root / "out"
    stdout, stderr = root / "stdout.txt", root / "stderr.txt"
    with open(stdout, "w") as so, open(stderr, "w") as se:
        proc = popen_cli(*REF_ARGS, f"--output_dir={out}", env=tiny_env, env_extra=CANARIES, cwd=root, stdout=so,
                         stderr=se, start_new_session=True)
    run = RefRun(out, root, proc, stdout, stderr)
    yield run
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
