"""The alignment-handbook's own recipe files, unmodified, at four points of its history (tests/fixtures/handbook,
rebuilt by scripts/handbook_fixtures.py; INDEX.json names the commits and each file's task).

Every SFT and DPO file validates and dry-runs with the task of its folder and the launch shape the handbook's
READMEs give (full: DeepSpeed ZeRO-3 on 8 GPUs; LoRA/QLoRA: one GPU), and the plan carries the values the
handbook's own code would have used. Most files go through the Python function behind `--dry-run`
(`plan_run`), a representative few through the CLI. ORPO and CPT files plan and dry-run with `alignkit orpo` and
`alignkit cpt`, and `alignkit dpo` refuses the ORPO file (it would train DPO with ORPO's beta).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from alignkit.cli import app
from tests.helpers import run_cli
from alignkit.launch.build import plan_run

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "handbook"
INDEX = json.loads((ROOT / "INDEX.json").read_text())
FILES = [(label, path, meta["task"]) for label, c in INDEX["commits"].items() for path, meta in c["files"].items()]
CHAT = ["messages", "chosen", "rejected", "prompt", "completion", "label"]  # the old scripts' columns_to_keep

# handbook key -> (section, field) it became; the value is unchanged
RENAMED = {
    "max_seq_length": ("train", "max_length"),
    "evaluation_strategy": ("train", "eval_strategy"),
    "hub_model_revision": ("train", "hub_revision"),
    "warmup_ratio": ("train", "warmup_steps"),  # transformers 5 takes the ratio there
    "preprocessing_num_workers": ("data", "preprocessing_num_workers"),
    "dataset_num_proc": ("data", "preprocessing_num_workers"),
    "chat_template": ("data", "chat_template"),
    "use_peft": ("lora", "enabled"),
    "lora_r": ("lora", "r"),
    "lora_alpha": ("lora", "alpha"),
    "lora_dropout": ("lora", "dropout"),
    "lora_target_modules": ("lora", "target_modules"),
}
DROPPED = {"overwrite_output_dir", "max_prompt_length"}  # no current meaning: warned, checked below
WANDB = {"wandb_entity": "WANDB_ENTITY", "wandb_project": "WANDB_PROJECT", "wandb_run_group": "WANDB_RUN_GROUP"}
MIX = {"dataset_mixer", "dataset_splits", "dataset_configs", "dataset_mixture", "dataset_name", "dataset_config",
       "dataset_train_split", "dataset_test_split"}
SECTIONS = ("model", "lora", "data", "train")

pytestmark = pytest.mark.usefixtures("_no_gpus")


@pytest.fixture
def _no_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


def raw_of(label: str, path: str) -> dict:
    return yaml.safe_load((ROOT / label / path).read_text())


def shape(raw: dict) -> tuple[str, int]:
    """Profile and GPU count of the handbook's own launch command for this file (its READMEs): QLoRA and LoRA
    on `multi_gpu.yaml --num_processes=1`, the rest on `deepspeed_zero3.yaml` (8 processes)."""
    if raw.get("load_in_4bit"):
        return "qlora", 1
    if raw.get("use_peft"):
        return "lora", 1
    return "full", 8


def file_id(item) -> str:
    label, path, _ = item
    return f"{label}/{path.removeprefix('recipes/').removesuffix('.yaml')}"


def current_fields(task: str) -> dict[str, str]:
    from alignkit.config.run import section_fields

    owner: dict[str, str] = {}
    for section, names in section_fields(task).items():
        for name in names:
            owner.setdefault(name, section)
    return owner


def expected_values(raw: dict, task: str) -> dict[tuple[str, str], object]:
    """(section, field) -> value the handbook's code would have used, for every non-dataset key of the file."""
    owner = current_fields(task)
    out: dict[tuple[str, str], object] = {}
    for key, value in raw.items():
        if key in MIX or key in DROPPED or key in WANDB:
            continue
        if key == "torch_dtype":
            # null: the handbook passed no dtype to from_pretrained; transformers <= 4.55 then loaded float32
            out[("model", "dtype")] = "float32" if value is None else value
        elif key == "use_flash_attention_2":
            if value:
                out[("model", "attn_implementation")] = "flash_attention_2"
        elif key in RENAMED:
            out[RENAMED[key]] = value
        elif key == "output_dir":  # made absolute, from the working directory, as the handbook's relative one was
            out[("train", key)] = os.path.abspath(value)
        elif key == "report_to" or (task == "dpo" and key == "loss_type"):  # a string is a list of one
            out[("train", key)] = [value] if isinstance(value, str) else value
        else:
            assert key in owner, f"{key}: neither a current field nor a handbook key this test knows"
            out[(owner[key], key)] = value
    return out


def expected_mixture(raw: dict, task: str = "sft") -> tuple[list[tuple], int, object]:
    """(sources as (id, config, split, weight, columns, keep_columns), mix seed, test_split_size). The old
    run_cpt.py kept only the text column of each dataset_mixer source, the other scripts the chat columns."""
    keep = [raw.get("text_column", "text")] if task == "cpt" else CHAT
    sources: list[tuple] = []
    seed, size = 42, None
    if "dataset_mixture" in raw:
        mix = raw["dataset_mixture"]
        items = mix["datasets"]
        sources += [(d["id"], d.get("config"), d.get("split", "train"), d.get("weight", 1.0), d.get("columns"), None)
                    for d in items]
        seed = mix.get("seed", 0)  # DatasetMixtureConfig's default
        has_test = any("test" in d.get("split", "") for d in items)
        size = None if has_test else mix.get("test_split_size")
    if "dataset_mixer" in raw:
        configs = raw.get("dataset_configs") or [None] * len(raw["dataset_mixer"])
        for (name, frac), config in zip(raw["dataset_mixer"].items(), configs):
            for split in raw.get("dataset_splits") or ["train", "test"]:
                sources.append((name, config, split, 1.0 if "test" in split else frac, None, keep))
        seed = 42  # the old mix_datasets shuffled with a fixed 42
    if raw.get("dataset_name"):
        splits = [raw.get("dataset_train_split") or "train"] + ([raw["dataset_test_split"]]
                                                               if raw.get("dataset_test_split") else [])
        sources += [(raw["dataset_name"], raw.get("dataset_config"), s, 1.0, None, None) for s in splits]
    return sources, seed, size


def zero3_with_4bit(p) -> bool:
    stage = ((p.deepspeed_config or {}).get("zero_optimization") or {}).get("stage")
    return stage == 3 and bool(p.config.model.load_in_4bit)


def check_plan(p, raw: dict, task: str, n: int) -> None:
    cfg = p.config.to_dict()
    for (section, key), value in expected_values(raw, task).items():
        assert cfg[section].get(key) == value, f"{section}.{key}: {cfg[section].get(key)!r} != {value!r}"
    sources, seed, size = expected_mixture(raw, task)
    got = [(s["id"], s["config"], s["split"], s["weight"], s["columns"], s.get("keep_columns"))
           for s in cfg["data"]["mixture"]]
    assert got == sources
    assert cfg["data"]["mix_seed"] == seed
    assert cfg["data"]["test_split_size"] == size
    # the global batch the handbook ran with: per device x accumulation x processes
    t = cfg["train"]
    assert p.world_size == n
    assert p.global_batch_size == t["per_device_train_batch_size"] * t["gradient_accumulation_steps"] * n
    assert t["gradient_accumulation_steps"] == raw.get("gradient_accumulation_steps", 1)
    for key, var in WANDB.items():
        if key in raw:
            assert p.env[var] == str(raw[key])
    for key in DROPPED & set(raw):
        assert any(w.startswith(f"{key} dropped") for w in p.warnings)
        assert key not in t
    assert not zero3_with_4bit(p)


SFT_DPO = [f for f in FILES if f[2] in ("sft", "dpo")]
ORPO_CPT = [f for f in FILES if f[2] in ("orpo", "cpt")]


def test_the_fixtures_are_the_four_commits_and_69_files():
    assert list(INDEX["commits"]) == ["2023-11-10", "2024-08-19", "2025-07-11", "2025-07-29"]
    assert [len(c["files"]) for c in INDEX["commits"].values()] == [4, 18, 25, 22]
    on_disk = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("20*/recipes/*/*/*.yaml"))
    assert on_disk == sorted(f"{label}/{path}" for label, path, _ in FILES)
    assert {task for *_, task in FILES} == {"sft", "dpo", "orpo", "cpt"}
    for label, path, _ in FILES:  # keys and values only: one header line, no comments of the handbook's
        header, *body = (ROOT / label / path).read_text().splitlines()
        assert header.startswith("# Keys and values of the alignment-handbook's")
        assert not [line for line in body if line.lstrip().startswith("#")]


@pytest.mark.parametrize("item", FILES, ids=file_id)
def test_every_file_plans_with_the_handbooks_values_under_its_folders_task(item):
    label, path, task = item
    raw = raw_of(label, path)
    profile, n = shape(raw)
    p = plan_run(task, config_files=[str(ROOT / label / path)], profile=profile, num_gpus=n, dry_run=True)
    assert p.task == task and p.profile == profile
    check_plan(p, raw, task, n)
    if task == "cpt":
        assert p.config.train.packing is True  # alignkit's CPT default: the text is packed
        assert p.config.data.text_column is None  # the handbook's default column: text


# a representative few through the CLI: the flagship DPO with `torch_dtype: null`, the 2023 SFT, an old
# multi-source mixer, a QLoRA file, a file with W&B keys, a TRL-style dataset_name file
CLI_FEW = [
    ("2025-07-29", "recipes/zephyr-7b-beta/dpo/config_full.yaml", "dpo"),
    ("2023-11-10", "recipes/zephyr-7b-beta/sft/config_full.yaml", "sft"),
    ("2024-08-19", "recipes/constitutional-ai/sft/config_anthropic.yaml", "sft"),
    ("2025-07-11", "recipes/zephyr-7b-beta/sft/config_qlora.yaml", "sft"),
    ("2025-07-11", "recipes/smollm3/dpo/apo.yaml", "dpo"),
    ("2025-07-29", "recipes/smollm2/sft/config.yaml", "sft"),
]


@pytest.mark.parametrize("item", CLI_FEW, ids=file_id)
def test_representative_files_dry_run_through_the_cli(item):
    label, path, task = item
    raw = raw_of(label, path)
    profile, n = shape(raw)
    f = str(ROOT / label / path)
    res = CliRunner().invoke(app, [task, f, "--profile", profile, "--num-gpus", str(n), "--dry-run", "--json"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    plan = json.loads(res.stdout)
    python = plan_run(task, config_files=[f], profile=profile, num_gpus=n, dry_run=True)
    assert plan["config"] == json.loads(json.dumps(python.config.to_dict()))
    assert plan["translations"] == python.translations and plan["warnings"] == python.warnings
    # and the summary form, as a user reads it
    res = CliRunner().invoke(app, [task, f, "--profile", profile, "--num-gpus", str(n), "--dry-run"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert "translated:" in res.stderr


def test_validate_prints_the_translations_the_dry_run_prints():
    f = str(ROOT / "2025-07-29/recipes/zephyr-7b-beta/dpo/config_full.yaml")
    args = [f, "--profile", "full", "--num-gpus", "8"]
    dry = CliRunner().invoke(app, ["dpo", *args, "--dry-run", "--json"])
    res = CliRunner().invoke(app, ["validate", "--task", "dpo", *args])
    assert res.exit_code == 0, (res.stderr, res.exception)
    err = "".join(res.stderr.split())  # without whitespace: rich wraps long paths anywhere
    translations = json.loads(dry.stdout)["translations"]
    assert translations
    for note in translations:
        assert "".join(f"translated: {note}".split()) in err
    assert "translated:torch_dtype:null→model.dtype:float32" in err


@pytest.mark.parametrize("item", ORPO_CPT, ids=file_id)
def test_orpo_and_cpt_files_dry_run_with_their_own_command(item):
    label, path, task = item
    raw = raw_of(label, path)
    profile, n = shape(raw)
    res = CliRunner().invoke(app, [task, str(ROOT / label / path), "--profile", profile, "--num-gpus", str(n),
                                   "--dry-run", "--json"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    plan = json.loads(res.stdout)
    assert plan["task"] == task
    assert plan["command"][-3:-2] == [f"alignkit.train.{task}"]


ORPO_FILES = [f for f in ORPO_CPT if f[2] == "orpo"]


@pytest.mark.parametrize("item", ORPO_FILES, ids=file_id)
def test_dpo_refuses_the_orpo_file(item):
    label, path, _ = item
    f = str(ROOT / label / path)
    res = run_cli("dpo", f, "--profile", "full", "--num-gpus", "8", "--dry-run")
    assert res.returncode == 2, (res.stdout, res.stderr)
    err = " ".join(res.stderr.split())
    assert "is in an `orpo` folder" in err and "alignkit orpo" in err
    assert "Traceback" not in res.stderr


QLORA = [f for f in SFT_DPO if raw_of(f[0], f[1]).get("load_in_4bit")]


@pytest.mark.parametrize("item", QLORA, ids=file_id)
def test_a_4bit_file_without_profile_does_not_land_on_zero3(item):
    label, path, task = item
    p = plan_run(task, config_files=[str(ROOT / label / path)], num_gpus=1, dry_run=True)
    assert not zero3_with_4bit(p)
