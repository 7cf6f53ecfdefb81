"""`alignkit sweep` through the CLI, in a subprocess, without training: bad grids are exit 2 naming the key
and the point before anything is written; the dry run lists the points, their dirs and commands (and JSON,
and the job array's script). The training runs are in tests/e2e/test_sweep_runs.py."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.helpers import run_cli

BASE = ["sweep", "sft", "--recipe", "tiny", "--profile", "cpu"]


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd, timeout=120)


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_bad_grids_are_exit_2_naming_key_and_point_before_anything_runs(tmp_path):
    out = tmp_path / "sw"
    cases = [
        (["--grid", "lerning_rate=1e-3,5e-4"], ["[every point (2)] lerning_rate: unknown key", "learning_rate"]),
        (["--grid", "learning_rate=1e-3,abc"], ["[point 1 (learning_rate=abc)] train.learning_rate",
                                                 "valid number"]),
        (["--grid", "learning_rate=1e-3", "--grid", "seed="], ["--grid seed=: key seed: empty value list"]),
        (["--grid", "eval_strategy=steps,no", "--load_best_model_at_end=true"],
         ["[point 1 (eval_strategy=no)] train.load_best_model_at_end", "needs evaluation"]),
        (["--grid", "learning_rate=1e-3,2e-3", "--learning_rate=3e-3"], ["--learning_rate: is also swept"]),
    ]
    for args, said in cases:
        res = _cli(*BASE, "--output", str(out), *args, cwd=tmp_path)
        assert res.returncode == 2, (args, res.stderr)
        for text in said:
            assert text in _flat(res.stderr), (text, res.stderr)
        assert "Traceback" not in res.stderr
        assert not out.exists()  # nothing written, nothing started (no dry run here: a real sweep was refused)


def test_dry_run_lists_points_dirs_and_commands(tmp_path):
    out = tmp_path / "sw"
    res = _cli(*BASE, "--output", str(out), "--grid", "learning_rate=1e-3,5e-4", "--grid", "train.seed=1,2",
               "--max_steps=2", "--dry-run", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "point 0 (learning_rate=1e-3, train.seed=1)"
    assert lines[1].split() == ["output", "dir:", str(out / "p00-learning_rate=1e-3-seed=1")]
    assert lines[2].split()[1:] == ["alignkit", "sft", "--recipe", "tiny", "--profile", "cpu", "--max_steps=2",
                                    "--learning_rate=1e-3", "--train.seed=1",
                                    f"--output_dir={out / 'p00-learning_rate=1e-3-seed=1'}"]
    assert sum(ln.startswith("point ") for ln in lines) == 4
    assert "dry run: 4 points" in _flat(res.stderr)
    assert not out.exists()

    res = _cli(*BASE, "--output", str(out), "--grid", "learning_rate=1e-3,5e-4,1e-4", "--random", "2", "--seed",
               "3", "--dry-run", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["sweep_dir"] == str(out) and data["random"] == {"n": 2, "seed": 3}
    assert data["grid"] == {"learning_rate": [1e-3, 5e-4, 1e-4]}
    assert [p["index"] for p in data["points"]] == [0, 1]
    assert all(p["command"][:2] == ["alignkit", "sft"] and p["launch"] for p in data["points"])
    assert not out.exists()


def test_slurm_dry_run_prints_one_array_script(tmp_path):
    out = tmp_path / "sw"
    res = _cli(*BASE, "--output", str(out), "--grid", "learning_rate=1e-3,5e-4,1e-4", "--slurm",
               "--gpus-per-node", "1", "--max-concurrent", "2", "--dry-run", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    script = json.loads(res.stdout)["sbatch_script"]
    assert "#SBATCH --array=0-2%2" in script
    assert f"#SBATCH --output={out}/slurm/slurm-%A_%a.out" in script
    for i, name in enumerate(["p00-learning_rate=1e-3", "p01-learning_rate=5e-4", "p02-learning_rate=1e-4"]):
        assert f"    {out / name / 'alignkit'}" in script, name
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    res = _cli(*BASE, "--output", str(out), "--grid", "learning_rate=1e-3", "--slurm", "--dry-run", cwd=tmp_path)
    assert res.returncode == 2 and "--gpus-per-node" in res.stderr
    res = _cli(*BASE, "--output", str(out), "--grid", "learning_rate=1e-3", "--max-concurrent", "2", "--dry-run",
               cwd=tmp_path)
    assert res.returncode == 2 and "without --slurm" in res.stderr
    assert not out.exists()


def test_status_and_report_of_a_dir_without_sweep_are_exit_2(tmp_path):
    for cmd in ("status", "report"):
        res = _cli("sweep", cmd, str(tmp_path))
        assert res.returncode == 2 and "holds no sweep" in _flat(res.stderr), res.stderr


def test_slurm_submit_writes_every_point_and_leaves_completed_ones_out(tmp_path, tiny_env):
    """The whole submit path with a fake sbatch: each point claimed and written, one array script, the
    registry and the manifest know the array; a completed point is left out of the next array."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text('#!/bin/bash\necho "$@" >> "$FAKE_SBATCH_LOG"\necho 777\n')
    (bin_dir / "scontrol").write_text('#!/bin/bash\ncase "$*" in "show config") echo "ClusterName = c";; '
                                      '*) exit 1;; esac\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {**tiny_env, "PATH": f"{bin_dir}{os.pathsep}{tiny_env['PATH']}", "FAKE_SBATCH_LOG": str(tmp_path / "sb"),
           "ALIGNKIT_CACHE": tiny_env["ALIGNKIT_CACHE"]}
    out = tmp_path / "sw"
    args = [*BASE, "--output", str(out), "--grid", "learning_rate=1e-3,5e-4",
            "--grid", "train.seed=1,2", "--slurm", "--gpus-per-node", "1", "--max-concurrent", "2",
            "--job-name", "t", "--max_steps=2"]
    res = run_cli(*args, env=env, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "777"
    assert "submitted job array 777: 4 points, at most 2 at once" in _flat(res.stderr)
    points = sorted(p for p in out.iterdir() if p.name.startswith("p0"))
    assert len(points) == 4 and all((p / "alignkit" / "run.yaml").is_file() for p in points)
    script = (out / "slurm" / "t.sbatch").read_text()
    assert "#SBATCH --array=0-3%2" in script
    assert (tmp_path / "sb").read_text().split() == ["--parsable", str(out / "slurm" / "t.sbatch")]
    import yaml

    m = yaml.safe_load((out / "sweep.yaml").read_text())
    assert m["slurm"]["job_id"] == "777" and m["slurm"]["tasks"] == [0, 1, 2, 3]
    reg = [json.loads(ln) for ln in (Path(env["ALIGNKIT_CACHE"]) / "slurm-jobs.jsonl").read_text().splitlines()]
    rec = [r for r in reg if r.get("output_dir") == str(out)][-1]
    assert rec["array"] is True and rec["tasks"] == [0, 1, 2, 3] and rec["output_dirs"]["2"] == str(points[2])

    st = _cli("sweep", "status", str(out))
    assert [ln.split("\t")[3] for ln in st.stdout.splitlines()[1:]] == ["queued"] * 4, st.stdout

    (points[1] / "alignkit" / "status.json").write_text(json.dumps({"state": "completed"}))
    res = run_cli(*args, env=env, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "#SBATCH --array=0,2-3%2" in (out / "slurm" / "t.sbatch").read_text()
    assert "(1 already completed)" in _flat(res.stderr)
