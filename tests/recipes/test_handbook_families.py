"""The handbook's recipe families as shipped alignkit recipes: each file's key hyperparameters are those of the
handbook file it names in its comment block (tests/fixtures/handbook), except the corrections the comment
documents; recipe variants (FAMILY/VARIANT) resolve, show and copy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.config import recipes
from alignkit.errors import AlignkitError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "handbook"

SHIPPED = [f for f in recipes.files() if f.name != "tiny"]
SOURCE = re.compile(r"From the handbook's (recipes/\S+\.yaml) \((\d{4}-\d\d-\d\d)\)")

# (recipe file, key) -> (the handbook file's value, a phrase of the comment that documents the change)
CORRECTIONS = {
    ("zephyr-7b-beta/dpo/full.yaml", "beta"): (0.1, "corrected hyperparameters of the handbook's Zephyr README"),
    ("zephyr-7b-beta/dpo/full.yaml", "num_train_epochs"): (3, "instead of 3 epochs with beta = 0.1"),
    ("smollm3/sft/full-mid.yaml", "global_batch"): (16, "README runs it with --gradient_accumulation_steps 16"),
    ("smollm3/sft/full.yaml", "global_batch"): (16, "README runs it with --gradient_accumulation_steps 16"),
    ("smollm3/dpo/full.yaml", "global_batch"): (16, "README runs it with --gradient_accumulation_steps 4"),
}


@pytest.fixture(autouse=True)
def _no_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


def invoke(args):
    return CliRunner().invoke(app, args)


def flat(text: str) -> str:
    return " ".join(text.split())


def source_of(f: recipes.RecipeFile) -> dict:
    m = SOURCE.search(flat(f.comment))
    assert m, f"{f.label}: no `From the handbook's recipes/....yaml (DATE)` line in its comment block"
    path = FIXTURES / m.group(2) / m.group(1)
    assert path.is_file(), f"{f.label}: {m.group(0)} is not among tests/fixtures/handbook"
    return yaml.safe_load(path.read_text())


def handbook_gpus(f: recipes.RecipeFile) -> int:
    """The GPUs of the handbook README's command for the file: QLoRA on 1, zephyr-141b on 4 nodes x 8, else 8."""
    return 1 if f.adaptation in ("lora", "qlora") else 32 if f.name == "zephyr-141b-A35b" else 8


def key_values(raw: dict, gpus: int) -> dict:
    out = {k: raw[k] for k in ("learning_rate", "num_train_epochs", "beta") if k in raw}
    length = raw.get("max_length", raw.get("max_seq_length"))
    if length is not None:
        out["max_length"] = length
    out["global_batch"] = raw["per_device_train_batch_size"] * raw.get("gradient_accumulation_steps", 1) * gpus
    return out


def test_the_nine_families_are_shipped():
    assert {f.name for f in SHIPPED} == {
        "zephyr-7b-beta", "zephyr-7b-gemma", "zephyr-141b-A35b", "constitutional-ai", "starchat2-15b", "smollm",
        "smollm2", "smollm3", "pref-align-scan"}
    shipped = {(f.recipe, f.task) for f in SHIPPED}
    assert {("zephyr-141b-A35b", "orpo"), ("constitutional-ai/grok", "sft"), ("smollm2/smol", "dpo"),
            ("smollm3/mid", "sft"), ("smollm3", "dpo"), ("pref-align-scan/openhermes", "dpo")} <= shipped
    assert ("constitutional-ai/grok", "dpo") not in shipped  # the handbook's README: no DPO for grok


@pytest.mark.parametrize("recipe_file", SHIPPED, ids=lambda f: f.label)
def test_key_hyperparameters_match_the_handbook_file(recipe_file):
    handbook = key_values(source_of(recipe_file), handbook_gpus(recipe_file))
    raw = yaml.safe_load(recipe_file.text)
    t = raw["train"]
    assert raw["launch"]["reference_num_gpus"] == handbook_gpus(recipe_file)
    ours = key_values(t, raw["launch"]["reference_num_gpus"])
    assert ours["global_batch"] == raw["launch"]["global_batch_size"], f"{recipe_file.label}: batch numbers disagree"
    comment = flat(recipe_file.comment)
    for key, value in handbook.items():
        correction = CORRECTIONS.get((recipe_file.label, key))
        if correction is None:
            assert ours.get(key) == value, f"{recipe_file.label}: {key} {ours.get(key)!r} != handbook's {value!r}"
        else:
            before, why = correction
            assert value == before, f"{recipe_file.label}: the handbook's {key} is {value!r}, not {before!r}"
            assert ours[key] != value and why in comment, f"{recipe_file.label}: {key} correction undocumented"
    # keys the handbook file leaves to TRL's defaults are written out and said (pref-align-scan's max_length)
    if "max_length" not in handbook and recipe_file.task == "dpo":
        assert t["max_length"] == 1024 and "no max_length" in comment


def test_corrections_refer_to_shipped_files():
    labels = {f.label for f in SHIPPED}
    assert {label for label, _ in CORRECTIONS} <= labels


def test_constitutional_ai_trains_on_ultrachat_as_released():
    # the 2025-07 refactor dropped ultrachat_200k train_sft (issue 14); the recipes keep it, and grok's 15 %
    for name, first in (("constitutional-ai", ("HuggingFaceH4/cai-conversation-harmless", 1.0)),
                        ("constitutional-ai/grok", ("HuggingFaceH4/grok-conversation-harmless", 0.15))):
        f = recipes.find(name, "sft", "full")
        train = [s for s in yaml.safe_load(f.text)["data"]["mixture"] if "test" not in s["split"]]
        assert [(s["id"], s.get("weight", 1.0)) for s in train] == [first, ("HuggingFaceH4/ultrachat_200k", 1.0)]


def test_smollm3_apo_is_dpo_with_apo_zero():
    f = recipes.find("smollm3", "dpo", "full")
    t = yaml.safe_load(f.text)["train"]
    assert (t["loss_type"], t["beta"]) == ("apo_zero", 0.05)
    assert "padding_free" not in t and "use_liger_kernel" not in t
    assert yaml.safe_load(recipes.find("smollm3", "sft", "full").text)["train"]["packing_strategy"] == "bfd"


# --------------------------------------------------------------------------- variants: run, show, copy


def test_a_variant_runs_its_own_file():
    res = invoke(["sft", "--recipe", "constitutional-ai/grok", "--profile", "full", "--num-gpus", "8",
                  "--dry-run", "--json"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    import json

    cfg = json.loads(res.stdout)["config"]
    assert cfg["recipe"] == "constitutional-ai/grok"
    assert cfg["data"]["mixture"][0]["id"] == "HuggingFaceH4/grok-conversation-harmless"
    assert cfg["train"]["output_dir"].endswith("data/mistral-7b-sft-grok")
    plain = invoke(["sft", "--recipe", "constitutional-ai", "--profile", "full", "--num-gpus", "8", "--dry-run",
                    "--json"])
    assert json.loads(plain.stdout)["config"]["data"]["mixture"][0]["id"] == "HuggingFaceH4/cai-conversation-harmless"


def test_variant_errors_name_what_exists():
    res = invoke(["dpo", "--recipe", "constitutional-ai/grok", "--profile", "full", "--dry-run"])
    assert isinstance(res.exception, AlignkitError) and res.exception.exit_code == 2
    [p] = res.exception.problems
    assert p.message == "recipe constitutional-ai/grok has no dpo step"
    assert "--recipe constitutional-ai" in p.fix
    res = invoke(["validate", "--recipe", "smollm2/smoll", "--profile", "full"])
    assert res.exception.exit_code == 2
    [p] = res.exception.problems
    assert p.message == "recipe smollm2 has no variant 'smoll'" and "'smollm2/smol'" in p.fix
    res = invoke(["validate", "--recipe", "smolm2/smol", "--profile", "full"])
    assert res.exception.problems[0].message == "unknown recipe 'smolm2/smol'"


def test_validate_a_variant_checks_its_steps_only():
    res = invoke(["validate", "--recipe", "smollm2/smol", "--profile", "full", "--num-gpus", "8"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    err = flat(res.stderr)
    assert "valid sft: profile full, world size 8, global batch 128" in err
    assert "valid dpo: profile full, world size 8, global batch 128" in err
    assert "smollm2-360M" in err


def test_show_and_copy_a_variant(tmp_path):
    res = invoke(["recipes", "show", "smollm3/mid", "--task", "sft"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert "(recipe file: smollm3/sft/full-mid.yaml)" in res.stdout
    assert re.search(r"^  max_length: 32768\s+# recipe smollm3/sft/full-mid\.yaml:\d+$", res.stdout, re.M)
    raw = invoke(["recipes", "show", "constitutional-ai/grok", "--task", "sft", "--raw"])
    assert raw.stdout.rstrip("\n") == recipes.find("constitutional-ai/grok", "sft", "full").text.rstrip("\n")
    one = invoke(["recipes", "copy", "constitutional-ai/grok", str(tmp_path / "grok")])
    assert one.exit_code == 0, one.stderr
    assert sorted(p.name for p in (tmp_path / "grok").rglob("*.yaml")) == ["full-grok.yaml"]
    family = invoke(["recipes", "copy", "constitutional-ai", str(tmp_path / "cai")])
    assert family.exit_code == 0, family.stderr
    assert sorted(str(p.relative_to(tmp_path / "cai")) for p in (tmp_path / "cai").rglob("*.yaml")) == [
        "dpo/full.yaml", "sft/full-grok.yaml", "sft/full.yaml"]
    ok = invoke(["validate", "--config", str(tmp_path / "grok" / "sft" / "full-grok.yaml"), "--task", "sft",
                 "--profile", "full", "--num-gpus", "8"])
    assert ok.exit_code == 0, (ok.stderr, ok.exception)


def test_orpo_recipe_is_shown_with_its_file_and_raw():
    res = invoke(["recipes", "show", "zephyr-141b-A35b", "--task", "orpo"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    assert "(recipe file: zephyr-141b-A35b/orpo/full.yaml)" in res.stdout
    raw = invoke(["recipes", "show", "zephyr-141b-A35b", "--task", "orpo", "--raw"])
    assert raw.exit_code == 0, (raw.stderr, raw.exception)
    assert "mistral-community/Mixtral-8x22B-v0.1" in raw.stdout


@pytest.mark.parametrize("recipe_file", SHIPPED, ids=[f.label for f in SHIPPED])
def test_plan_knows_each_familys_model_and_it_fits_its_launch_shape(recipe_file):
    import json

    res = invoke(["plan", "--recipe", recipe_file.recipe, "--task", recipe_file.task, "--profile",
                  recipe_file.adaptation, "--json"])
    assert res.exit_code == 0, (res.stderr, res.exception)
    p = json.loads(res.stdout)
    assert p["model"]["source"] == "alignkit's table of known models"  # no guess from the name, no download
    assert p["world_size"] == yaml.safe_load(recipe_file.text)["launch"]["reference_num_gpus"]
    assert p["fits"] is True  # on the 80 GB GPUs the handbook's READMEs name


@pytest.mark.parametrize("recipe_file", recipes.files(), ids=lambda f: f.label)
def test_every_recipe_builds_its_trl_config(recipe_file, tmp_path, monkeypatch):
    """Each recipe's train section is a valid TRL 1.16 config (choices such as packing_strategy, loss_type and
    lr_scheduler_type are TRL's to check); on the cpu profile, as the training process would build it."""
    import warnings

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    warnings.filterwarnings("ignore")
    from trl import DPOConfig, SFTConfig

    from alignkit.config.resolve import resolve_config
    from alignkit.train.trl_compat import orpo

    profile = "cpu" if recipe_file.adaptation == "full" else f"{recipe_file.adaptation},cpu"
    r = resolve_config(recipe_file.task, recipe=recipe_file.recipe, profile=profile)
    kwargs = r.config.train.model_dump(exclude_unset=True)
    cls = {"sft": SFTConfig, "cpt": SFTConfig, "dpo": DPOConfig, "orpo": orpo()[0]}[recipe_file.task]
    kwargs.pop("push_to_hub", None)
    kwargs.pop("gradient_checkpointing_kwargs", None)
    if "gradient_checkpointing" in kwargs:  # a deprecated alias in transformers 5 (the trainer renames it too)
        kwargs["activation_checkpointing"] = kwargs.pop("gradient_checkpointing")
    args = cls(**{**kwargs, "output_dir": str(tmp_path)})
    raw = yaml.safe_load(recipe_file.text)["train"]
    assert args.learning_rate == raw["learning_rate"] and args.num_train_epochs == raw["num_train_epochs"]
    if "beta" in raw:
        assert args.beta == raw["beta"]
