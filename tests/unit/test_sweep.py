"""Sweeps without training: the grid, its expansion and sample, the manifest and its refusal rule, the plan
of every point, the status of points from their files."""

from __future__ import annotations

import json

import pytest

from alignkit.errors import ConfigError, UsageError
from alignkit.sweep import grid, manifest, plan, status


# --------------------------------------------------------------------------- the grid


def test_values_are_yaml_and_commas_inside_brackets_or_quotes_do_not_split():
    assert grid.split_values("a,b,[c, d],'e,f',{x: 1, y: 2}") == ["a", "b", "[c, d]", "'e,f'", "{x: 1, y: 2}"]
    (axis,) = grid.parse_grid(["beta=0.01,1e-1,true,[sigmoid, sft]"])
    assert axis.values == [0.01, 0.1, True, ["sigmoid", "sft"]]
    assert axis.texts == ["0.01", "1e-1", "true", "[sigmoid, sft]"]
    (axis,) = grid.parse_grid(["lora-r=8,16"])  # dashes become underscores, as in overrides
    assert axis.key == "lora_r"


def test_expansion_is_every_combination_first_axis_slowest():
    axes = grid.parse_grid(["loss_type=sigmoid,ipo", "beta=0.1,0.5,0.9"])
    points = grid.expand(axes)
    assert len(points) == 6
    assert [p.values for p in points[:3]] == [{"loss_type": "sigmoid", "beta": b} for b in (0.1, 0.5, 0.9)]
    assert [p.index for p in points] == list(range(6))
    assert points[4].name == "p04-loss_type=ipo-beta=0.5"
    assert points[4].overrides() == ["--loss_type=ipo", "--beta=0.5"]
    assert points[4].label == "point 4 (loss_type=ipo, beta=0.5)"
    # dotted keys name the dir by their field, odd characters never reach a file name
    (p,) = grid.expand(grid.parse_grid(["train.loss_type=[sigmoid, sft]"]))
    assert p.name == "p00-loss_type=_sigmoid_sft" and "/" not in p.name and " " not in p.name


def test_random_sample_is_seeded_and_keeps_grid_order():
    axes = grid.parse_grid(["a=1,2,3,4", "b=x,y,z"])
    one = grid.expand(axes, sample=5, seed=7)
    two = grid.expand(axes, sample=5, seed=7)
    other = grid.expand(axes, sample=5, seed=8)
    assert [p.values for p in one] == [p.values for p in two]
    assert [p.values for p in one] != [p.values for p in other]
    assert len(one) == 5 and [p.index for p in one] == list(range(5))
    full = [p.values for p in grid.expand(axes)]
    assert [full.index(p.values) for p in one] == sorted(full.index(p.values) for p in one)
    assert len(grid.expand(axes, sample=99, seed=1)) == 12  # more than the grid: the whole grid
    with pytest.raises(UsageError, match="--random"):
        grid.expand(axes, sample=0)


@pytest.mark.parametrize("spec,message", [
    ("beta", "is not key=v1,v2"),
    ("beta=", "empty value list"),
    ("beta=0.1,,0.2", "an empty value"),
    ("beta=0.1,0.1", "listed twice"),
    ("output_dir=a,b", "output dir is chosen by the sweep"),
    ("be ta=1,2", "is not a config key"),
])
def test_bad_grid_options_name_the_option(spec, message):
    with pytest.raises(UsageError) as exc:
        grid.parse_grid([spec])
    assert exc.value.problems[0].where == f"--grid {spec}"
    assert message in exc.value.problems[0].message


def test_every_grid_problem_at_once_and_a_key_twice():
    with pytest.raises(UsageError) as exc:
        grid.parse_grid(["beta=", "lr=1", "lr=2", "x"])
    assert [p.where for p in exc.value.problems] == ["--grid beta=", "--grid lr=2", "--grid x"]


def test_a_swept_key_set_for_every_point_too_is_refused():
    axes = grid.parse_grid(["beta=0.1,0.2", "lora.r=8,16"])
    with pytest.raises(UsageError) as exc:
        grid.check_base_overrides(axes, ["--train.beta=0.3", "--r=4", "--output_dir=x", "--max_steps=3"])
    wheres = [p.where for p in exc.value.problems]
    assert wheres == ["--train.beta", "--r", "--output_dir"]
    grid.check_base_overrides(axes, ["--max_steps=3", "--lora.alpha=16"])


# --------------------------------------------------------------------------- the plan of every point


def _spec(tmp_path, *grids, overrides=(), **kw):
    return plan.SweepSpec(task=kw.pop("task", "sft"), recipe="tiny", profile="cpu", grid=list(grids),
                          overrides=list(overrides), output=str(tmp_path / "sw"), **kw)


def test_every_point_is_planned_as_its_own_run(tmp_path):
    sp = plan.plan_sweep(_spec(tmp_path, "learning_rate=1e-3,5e-4", "train.seed=1,2", overrides=["--max_steps=2"]),
                         dry_run=True)
    assert len(sp.points) == 4
    outs = [pp.plan.output_dir for pp in sp.points]
    assert outs == [str(tmp_path / "sw" / pp.point.name) for pp in sp.points]
    p3 = sp.points[3].plan.config.train
    assert (p3.learning_rate, p3.seed, p3.max_steps) == (5e-4, 2, 2)
    assert sp.points[3].command(sp.spec)[:6] == ["alignkit", "sft", "--recipe", "tiny", "--profile", "cpu"]
    assert sp.points[3].command(sp.spec)[-1] == f"--output_dir={outs[3]}"
    assert sp.manifest.grid == {"learning_rate": [1e-3, 5e-4], "train.seed": [1, 2]}
    assert [p["dir"] for p in sp.manifest.points] == [pp.point.name for pp in sp.points]
    # the base hash ignores the swept keys and the output dir, and nothing else
    other = plan.plan_sweep(_spec(tmp_path, "learning_rate=1e-4,2e-4", "train.seed=1,2",
                                  overrides=["--max_steps=2"]), dry_run=True)
    assert other.manifest.base_hash == sp.manifest.base_hash
    more = plan.plan_sweep(_spec(tmp_path, "learning_rate=1e-3,5e-4", "train.seed=1,2",
                                 overrides=["--max_steps=3"]), dry_run=True)
    assert more.manifest.base_hash != sp.manifest.base_hash
    assert not (tmp_path / "sw").exists()  # planning writes nothing


def test_every_bad_point_is_named_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError) as exc:
        plan.plan_sweep(_spec(tmp_path, "learning_rate=1e-3,-1", "lerning_rate=1,2"), dry_run=True)
    text = "\n".join(p.render() for p in exc.value.problems)
    assert "[every point (4)] lerning_rate: unknown key" in text
    assert "did you mean 'learning_rate'" in text
    # the bad value, named by the points that have it
    neg = [p for p in exc.value.problems if p.where.endswith("train.learning_rate")]
    assert neg and neg[0].where.startswith("[points 2, 3]") and "greater than 0" in neg[0].message
    assert exc.value.exit_code == 2
    # a point whose batch cannot be split over the processes
    with pytest.raises(ConfigError) as exc:
        plan.plan_sweep(_spec(tmp_path, "per_device_train_batch_size=16,3", "train.seed=1,2"), dry_run=True)
    (split,) = exc.value.problems
    assert split.where == "[points 2, 3] launch.global_batch_size"


def test_a_point_failing_cross_field_checks_is_named(tmp_path):
    with pytest.raises(ConfigError) as exc:
        plan.plan_sweep(_spec(tmp_path, "eval_strategy=steps,no", overrides=["--load_best_model_at_end=true"]),
                        dry_run=True)
    (problem,) = exc.value.problems
    assert problem.where == "[point 1 (eval_strategy=no)] train.load_best_model_at_end"


# --------------------------------------------------------------------------- the manifest


def _manifest(**kw) -> manifest.Manifest:
    base = dict(task="sft", grid={"beta": [0.1, 0.2]}, base_hash="abc",
                points=[{"index": 0, "name": "p00-beta=0.1", "dir": "p00-beta=0.1", "values": {"beta": 0.1},
                         "overrides": ["--beta=0.1"]},
                        {"index": 1, "name": "p01-beta=0.2", "dir": "p01-beta=0.2", "values": {"beta": 0.2},
                         "overrides": ["--beta=0.2"]}], recipe="tiny", profile="cpu")
    base.update(kw)
    return manifest.Manifest(**base)


def test_manifest_round_trips_atomically(tmp_path):
    m = _manifest()
    path = manifest.write(tmp_path, m)
    assert path == tmp_path / "sweep.yaml" and not list(tmp_path.glob(".*tmp*"))
    back = manifest.read(tmp_path)
    assert back.identity() == m.identity() and back.created == m.created and back.recipe == "tiny"
    assert back.point_dir(tmp_path, back.points[1]) == tmp_path / "p01-beta=0.2"


def test_the_same_sweep_resumes_a_different_one_is_refused_unless_overwrite(tmp_path):
    manifest.write(tmp_path, _manifest())
    assert manifest.claim(tmp_path, _manifest(), overwrite=False) is not None
    for other, said in ((_manifest(grid={"beta": [0.1, 0.3]}), "a different grid"),
                        (_manifest(base_hash="def"), "different base config"),
                        (_manifest(task="dpo"), "a sft sweep")):
        with pytest.raises(ConfigError) as exc:
            manifest.claim(tmp_path, other, overwrite=False)
        assert said in exc.value.problems[0].message and "--overwrite" in exc.value.problems[0].fix
        assert manifest.claim(tmp_path, other, overwrite=True) is None


def test_a_dir_holding_something_else_is_refused(tmp_path):
    assert manifest.claim(tmp_path / "new", _manifest(), overwrite=False) is None
    (tmp_path / "stuff.txt").write_text("x")
    with pytest.raises(ConfigError, match="holds no sweep"):
        manifest.claim(tmp_path, _manifest(), overwrite=False)
    assert manifest.claim(tmp_path, _manifest(), overwrite=True) is None
    with pytest.raises(UsageError, match="holds no sweep"):
        manifest.read(tmp_path)
    (tmp_path / "sweep.yaml").write_text("kind: something\n")
    with pytest.raises(UsageError, match="not an alignkit sweep"):
        manifest.read(tmp_path)


# --------------------------------------------------------------------------- status from the files


def test_status_reads_each_point_from_its_files(tmp_path):
    m = _manifest(task="dpo")
    manifest.write(tmp_path, m)
    done = tmp_path / "p00-beta=0.1"
    (done / "alignkit").mkdir(parents=True)
    (done / "alignkit" / "run.yaml").write_text("task: dpo\n")
    (done / "alignkit" / "status.json").write_text(json.dumps({"state": "completed"}))
    history = [{"step": 1, "loss": 0.7}, {"step": 2, "loss": 0.6, "rewards/accuracies": 0.5},
               {"step": 2, "eval_loss": 0.65, "eval_rewards/accuracies": 0.75}]
    (done / "trainer_state.json").write_text(json.dumps({"global_step": 2, "max_steps": 2, "log_history": history}))
    m2, rows = status.sweep_status(tmp_path)
    assert [r.state for r in rows] == ["completed", "pending"]
    r = rows[0]
    assert (r.step, r.max_steps, r.train_loss, r.eval_loss, r.reward_acc) == (2, 2, 0.6, 0.65, 0.75)
    header, table = status.table(m2, rows)
    assert header == ["point", "beta", "state", "steps", "train loss", "eval loss", "reward acc"]
    assert table[0] == ["p00", "0.1", "completed", "2/2", "0.6", "0.65", "0.75"]
    assert table[1][2:] == ["pending", "–", "–", "–", "–"]
    # a run that says running while no process holds it was interrupted
    (done / "alignkit" / "status.json").write_text(json.dumps({"state": "running"}))
    assert status.sweep_status(tmp_path)[1][0].state == "interrupted"


def test_a_point_is_locked_exactly_when_a_new_run_would_find_its_dir_busy(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from alignkit.launch.run import RunDir
    from alignkit.sweep import runs

    lock = RunDir.of(tmp_path).lock
    assert not runs.is_locked(tmp_path)  # no lock at all
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    assert runs.is_locked(tmp_path)
    lock.write_text(json.dumps({"pid": os.getpid(), "host": "some-other-host"}))
    assert not runs.is_locked(tmp_path)  # not ours to judge: status says what the run file says
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    assert not runs.is_locked(tmp_path)
    # the parent is gone but the training processes it started still run: still held, as acquire_lock says
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "pgid": os.getpgid(0)}))
    assert runs.is_locked(tmp_path)
    lock.write_text("not json")
    assert not runs.is_locked(tmp_path)
