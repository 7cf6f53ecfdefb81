"""Batch arithmetic: the recipe's global batch is kept across cluster shapes by recomputing accumulation."""

from __future__ import annotations

import pytest

from alignkit.errors import ConfigError
from alignkit.launch.build import plan_run


def plan(task="sft", recipe="zephyr-7b-beta", profile="full", **kw):
    return plan_run(task, recipe=recipe, profile=profile, dry_run=True, **kw)


@pytest.mark.parametrize(
    "gpus, nodes, accum",
    [(1, 1, 16), (2, 1, 8), (4, 1, 4), (8, 1, 2), (16, 1, 1), (8, 2, 1), (1, 2, 8), (4, 2, 2)],
)
def test_zephyr_sft_full_keeps_512(gpus, nodes, accum):
    p = plan(num_gpus=gpus, num_nodes=nodes)
    b = p.batch
    assert p.world_size == gpus * nodes
    assert (b.per_device_train_batch_size, b.gradient_accumulation_steps, b.world_size) == (32, accum, gpus * nodes)
    assert b.global_batch_size == 512 == p.global_batch_size
    assert b.tuned_for == 512
    assert b.adjusted is (accum != 2)  # the recipe's own 32 x 2 x 8
    # what the trainer gets is the recomputed accumulation
    assert p.config.train.gradient_accumulation_steps == accum
    assert p.config.launch.num_gpus == gpus and p.config.launch.num_nodes == nodes
    assert ("--num_processes", str(gpus * nodes)) == tuple(p.command[p.command.index("--num_processes"):][:2])
    assert ("--num_machines", str(nodes)) == tuple(p.command[p.command.index("--num_machines"):][:2])
    notes = " ".join(p.notes)
    assert (f"gradient_accumulation_steps set to {accum}" in notes) is (accum != 2)


@pytest.mark.parametrize("task, gpus, accum", [("dpo", 1, 8), ("dpo", 2, 4), ("dpo", 8, 1)])
def test_zephyr_dpo_full_keeps_64(task, gpus, accum):
    p = plan(task=task, num_gpus=gpus)
    assert (p.batch.gradient_accumulation_steps, p.global_batch_size) == (accum, 64)


def test_qlora_recipes_keep_their_small_batches():
    sft = plan(profile="qlora", num_gpus=1)
    assert (sft.batch.per_device_train_batch_size, sft.batch.gradient_accumulation_steps, sft.global_batch_size) == \
        (4, 2, 8)
    sft2 = plan(profile="qlora", num_gpus=2)
    assert (sft2.batch.gradient_accumulation_steps, sft2.global_batch_size) == (1, 8)
    dpo = plan(task="dpo", profile="qlora", num_gpus=1)
    assert (dpo.batch.per_device_train_batch_size, dpo.batch.gradient_accumulation_steps, dpo.global_batch_size) == \
        (4, 4, 16)


def test_non_divisible_world_size_lists_valid_choices():
    with pytest.raises(ConfigError) as exc:
        plan(num_gpus=3)
    [p] = exc.value.problems
    assert p.where == "launch.global_batch_size"
    assert p.message == "512 cannot be split into 3 processes x 32 per device"
    assert "use a world size (--num-gpus x --num-nodes) in [1, 2, 4, 8, 16]" in p.fix
    assert "--per_device_train_batch_size in" not in p.fix  # nothing divides 512 by 3
    assert "--launch.global_batch_size=null to keep gradient_accumulation_steps=2 (global batch 192)" in p.fix
    assert p.source.startswith("recipe zephyr-7b-beta/sft/full.yaml:")


def test_too_many_processes_suggests_smaller_micro_batches():
    with pytest.raises(ConfigError) as exc:
        plan(num_gpus=8, num_nodes=4)  # 32 x 32 > 512
    [p] = exc.value.problems
    assert p.message == "512 cannot be split into 32 processes x 32 per device"
    assert "--per_device_train_batch_size in [1, 2, 4, 8, 16]" in p.fix


def test_user_set_accumulation_is_respected():
    p = plan(num_gpus=8, overrides=["--gradient_accumulation_steps=4"])
    assert (p.batch.gradient_accumulation_steps, p.global_batch_size, p.batch.adjusted) == (4, 1024, False)
    assert p.config.train.gradient_accumulation_steps == 4
    # also on a shape that could not keep 512: nothing to divide, no error
    p = plan(num_gpus=3, overrides=["--gradient_accumulation_steps=1"])
    assert (p.world_size, p.global_batch_size) == (3, 96)


def test_user_set_accumulation_in_a_config_file_is_respected(tmp_path):
    f = tmp_path / "accum.yaml"
    f.write_text("train:\n  gradient_accumulation_steps: 3\n")
    p = plan(num_gpus=2, config_files=[str(f)])
    assert (p.batch.gradient_accumulation_steps, p.global_batch_size) == (3, 32 * 3 * 2)


def test_changing_the_micro_batch_keeps_the_global_batch():
    p = plan(num_gpus=8, overrides=["--per_device_train_batch_size=16"])
    assert (p.batch.per_device_train_batch_size, p.batch.gradient_accumulation_steps, p.global_batch_size) == \
        (16, 4, 512)


def test_overriding_the_global_batch():
    p = plan(num_gpus=8, overrides=["--launch.global_batch_size=256"])
    assert (p.batch.gradient_accumulation_steps, p.global_batch_size, p.batch.tuned_for) == (1, 256, 256)
    p = plan(num_gpus=4, overrides=["--launch.global_batch_size=null"])
    assert (p.batch.gradient_accumulation_steps, p.global_batch_size, p.batch.tuned_for) == (2, 256, None)


@pytest.mark.parametrize("world", range(1, 41))
def test_the_global_batch_is_exact_or_refused(world):
    target, per_device = 512, 32
    if target % (per_device * world) == 0:
        p = plan(num_gpus=world)
        b = p.batch
        assert b.per_device_train_batch_size * b.gradient_accumulation_steps * b.world_size == target
    else:
        with pytest.raises(ConfigError):
            plan(num_gpus=world)


def test_cluster_shape_must_be_positive():
    with pytest.raises(ConfigError) as exc:
        plan(num_gpus=0)
    assert exc.value.problems[0].where == "--num-gpus"


def test_dry_run_without_gpus_uses_the_reference_count(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    p = plan()
    assert (p.gpus_per_node, p.world_size, p.batch.gradient_accumulation_steps) == (8, 8, 2)
    assert "reference count, 8 per node" in p.num_gpus_note
    q = plan(profile="qlora")
    assert (q.gpus_per_node, q.global_batch_size) == (1, 8)
