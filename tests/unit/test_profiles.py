"""Launch profiles: data files, stacks, conflicts, and the accelerate/DeepSpeed configs they produce."""

from __future__ import annotations

import pytest

from alignkit.config.yamlio import dump_yaml
from alignkit.errors import ConfigError
from alignkit.launch.build import plan_run
from alignkit.config.profiles import available, load_spec, load_stack


@pytest.fixture(autouse=True)
def _no_gpus(monkeypatch):
    # the same answers on a machine with GPUs: none visible
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


def plan(profile, task="sft", recipe="tiny", dry_run=True, **kw):
    return plan_run(task, recipe=recipe, profile=profile, dry_run=dry_run, **kw)


def only_problem(fn, *args, **kw):
    with pytest.raises(ConfigError) as exc:
        fn(*args, **kw)
    assert len(exc.value.problems) == 1, exc.value.render()
    return exc.value.problems[0]


def test_shipped_profiles():
    assert available() == ["cpu", "full", "lora", "lora-zero3", "qlora"]
    specs = {n: load_spec(n) for n in available()}
    assert {n: s.adaptation for n, s in specs.items()} == {
        "cpu": None, "full": "full", "lora": "lora", "lora-zero3": "lora", "qlora": "qlora"}
    assert [n for n, s in specs.items() if s.modifier] == ["cpu"]
    assert all(s.description for s in specs.values())


def test_full_is_zero3_bf16():
    p = plan("full", recipe="zephyr-7b-beta", num_gpus=8)
    acc, ds = p.accelerate_config, p.deepspeed_config
    assert acc["distributed_type"] == "DEEPSPEED"
    assert acc["deepspeed_config"]["deepspeed_config_file"] == f"{p.output_dir}/alignkit/deepspeed.json"
    assert acc["deepspeed_config"]["zero3_init_flag"] is True
    assert "mixed_precision" not in acc  # precision lives in the DeepSpeed file
    assert acc["gpu_ids"] == "all" and acc["use_cpu"] is False
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert ds["bf16"] == {"enabled": "auto"}
    assert ds["train_micro_batch_size_per_gpu"] == "auto"
    assert p.config.train.bf16 is True
    assert p.config.model.dtype == "bfloat16"
    assert p.config.to_dict()["lora"] == {"enabled": False}


def test_lora_is_ddp_bf16():
    p = plan("lora", recipe="zephyr-7b-beta", num_gpus=2)
    assert p.accelerate_config["distributed_type"] == "MULTI_GPU"
    assert p.accelerate_config["mixed_precision"] == "bf16"
    assert p.deepspeed_config is None
    assert p.config.lora.enabled is True and p.config.lora.target_modules == "all-linear"
    assert p.config.model.load_in_4bit is False


def test_qlora_is_4bit_nf4_bf16_compute_all_linear():
    p = plan("qlora", recipe="zephyr-7b-beta", num_gpus=1)
    m = p.config.model
    assert (m.load_in_4bit, m.bnb_4bit_quant_type, m.bnb_4bit_compute_dtype) == (True, "nf4", "bfloat16")
    assert p.config.lora.enabled is True
    assert p.config.lora.target_modules == "all-linear"  # the profile over the recipe's explicit list
    assert p.accelerate_config["distributed_type"] == "MULTI_GPU"
    assert p.deepspeed_config is None


def test_lora_zero3_shards_the_base():
    p = plan("lora-zero3", recipe="zephyr-7b-beta", num_gpus=2)
    assert p.accelerate_config["distributed_type"] == "DEEPSPEED"
    assert p.deepspeed_config["zero_optimization"]["stage"] == 3
    assert p.config.lora.enabled is True


def test_cpu_one_process_is_no_distribution_with_use_cpu():
    p = plan("cpu")
    acc = p.accelerate_config
    assert (acc["distributed_type"], acc["use_cpu"], acc["num_processes"], acc["mixed_precision"]) == \
        ("NO", True, 1, "no")
    assert "gpu_ids" not in acc
    assert p.deepspeed_config is None
    assert p.env["CUDA_VISIBLE_DEVICES"] == ""
    assert p.config.train.bf16 is False and p.config.train.fp16 is False
    assert p.config.model.dtype == "float32"


def test_cpu_two_processes_use_the_multi_gpu_launcher_type():
    # `--cpu`/MULTI_CPU silently runs one process; MULTI_GPU over gloo runs them all
    p = plan("cpu", num_gpus=2, overrides=["--per_device_train_batch_size=8"])
    acc = p.accelerate_config
    assert (acc["distributed_type"], acc["use_cpu"], acc["num_processes"]) == ("MULTI_GPU", False, 2)
    assert p.world_size == 2 and p.global_batch_size == 16
    assert "--cpu" not in p.command


def test_qlora_cpu_stack():
    p = plan("qlora,cpu")
    m = p.config.model
    assert (m.load_in_4bit, m.bnb_4bit_compute_dtype, m.dtype) == (True, "float32", "float32")
    assert p.config.lora.enabled is True
    assert p.config.train.bf16 is False
    assert (p.accelerate_config["distributed_type"], p.accelerate_config["use_cpu"]) == ("NO", True)
    assert p.profile == "qlora,cpu"


def test_full_cpu_stack_is_deepspeed_with_tiny_params_sharded():
    p = plan("full,cpu", num_gpus=2, overrides=["--per_device_train_batch_size=8"])
    assert p.accelerate_config["distributed_type"] == "DEEPSPEED"
    assert p.accelerate_config["use_cpu"] is False
    z = p.deepspeed_config["zero_optimization"]
    assert z["stage"] == 3
    assert z["stage3_param_persistence_threshold"] == 0
    assert p.config.train.bf16 is False and p.config.model.dtype == "float32"
    assert p.env["CUDA_VISIBLE_DEVICES"] == ""


def test_lora_cpu_stack():
    p = plan("lora,cpu")
    assert p.config.lora.enabled is True
    assert p.config.model.load_in_4bit is False
    assert p.deepspeed_config is None
    assert p.accelerate_config["distributed_type"] == "NO"


def test_the_cpu_modifier_never_turns_deepspeed_on():
    stack = load_stack("cpu")
    assert stack.deepspeed is None and not stack.uses_deepspeed
    assert (stack.adaptation, stack.cpu) == ("full", True)


@pytest.mark.parametrize("spec, keep", [("full,qlora", "qlora"), ("lora,full", "full"), ("qlora,lora-zero3", "lora-zero3")])
def test_two_adaptations_conflict_and_the_fix_is_named(spec, keep):
    p = only_problem(load_stack, spec)
    a, b = spec.split(",")
    assert p.where == "--profile"
    assert p.message.startswith(f"profiles {a} and {b} each choose how the model is adapted")
    assert p.fix.endswith(f"(e.g. --profile {keep},cpu)")


def test_a_modifier_must_come_last():
    p = only_problem(load_stack, "cpu,qlora")
    assert p.fix == "put modifiers last: --profile qlora,cpu"


def test_unknown_profile_did_you_mean():
    p = only_problem(load_stack, "qlroa")
    assert p.message == "unknown profile 'qlroa'"
    assert p.fix.startswith("did you mean 'qlora'")
    assert "available: cpu, full, lora, lora-zero3, qlora" in p.fix


def test_unknown_profile_in_a_stack_through_resolution():
    with pytest.raises(ConfigError) as exc:
        plan("lora,cpuu")
    assert [(p.where, p.message) for p in exc.value.problems] == [("--profile", "unknown profile 'cpuu'")]
    assert "did you mean 'cpu'" in exc.value.problems[0].fix


def test_empty_stack():
    assert only_problem(load_stack, " , ").message == "no profile given"


def test_gpu_profile_without_gpus_needs_dry_run():
    p = only_problem(plan, "full", recipe="zephyr-7b-beta", dry_run=False)
    assert (p.where, p.message) == ("--num-gpus", "profile full needs GPUs and none is visible")
    assert "--profile full,cpu" in p.fix and "--dry-run" in p.fix
    # the cpu profile needs no GPU, and an explicit --num-gpus is taken as given
    assert plan("cpu", dry_run=False).world_size == 1
    assert plan("qlora", recipe="zephyr-7b-beta", dry_run=False, num_gpus=1).world_size == 1


def test_default_profile_is_full():
    assert plan(None, recipe="zephyr-7b-beta", num_gpus=8).profile == "full"


def test_main_process_port_reaches_accelerate_and_the_command():
    p = plan("cpu", overrides=["--launch.main_process_port=29555"])
    assert p.accelerate_config["main_process_port"] == 29555
    i = p.accelerate_command.index("--main_process_port")
    assert p.accelerate_command[i + 1] == "29555"


@pytest.mark.parametrize("profile, gpus", [("full", 8), ("lora", 2), ("qlora", 1), ("lora-zero3", 2), ("cpu", 1),
                                           ("cpu", 2), ("qlora,cpu", 1), ("full,cpu", 2)])
def test_accelerate_accepts_the_generated_config(tmp_path, profile, gpus):
    from accelerate.commands.config.config_args import load_config_from_file

    recipe = "tiny" if "cpu" in profile else "zephyr-7b-beta"
    extra = ["--per_device_train_batch_size=8"] if (recipe == "tiny" and gpus == 2) else []
    p = plan(profile, recipe=recipe, num_gpus=gpus, overrides=extra)
    f = tmp_path / "accelerate.yaml"
    f.write_text(dump_yaml(p.accelerate_config))
    cfg = load_config_from_file(str(f))  # raises on keys this accelerate does not know
    assert str(cfg.distributed_type).endswith(p.accelerate_config["distributed_type"])
    assert cfg.num_processes == gpus
