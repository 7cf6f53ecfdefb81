"""Shipped recipes: every recipe x task x profile validates; every documented command dry-runs;
the Zephyr numbers match the seed documents; eval data never trains."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.config import recipes
from alignkit.config.resolve import resolve_config
from alignkit.errors import AlignkitError

REPO = Path(__file__).resolve().parents[2]
PROFILES = ["full", "lora", "qlora", "lora-zero3", "cpu", "qlora,cpu", "full,cpu", "lora,cpu"]
ALL_FILES = recipes.files()
FAMILIES = {"zephyr-7b-beta", "zephyr-7b-gemma", "zephyr-141b-A35b", "constitutional-ai", "starchat2-15b", "smollm",
            "smollm2", "smollm3", "pref-align-scan"}


def _world(recipe_file, profile: str) -> list[str]:
    """The launch shape a recipe was tuned for (its reference_num_gpus; 8 per node beyond 8); CPU stacks on 1."""
    n = 1 if "cpu" in profile else yaml.safe_load(recipe_file.text)["launch"]["reference_num_gpus"]
    return ["--num-gpus", str(min(n, 8))] + (["--num-nodes", str(n // 8)] if n > 8 else [])


@pytest.fixture(autouse=True)
def _no_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


def invoke(args: list[str]):
    return CliRunner().invoke(app, args)


def flat(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- discovery


def test_recipes_are_discovered_from_the_folder():
    root = REPO / "alignkit" / "recipes"
    on_disk = sorted(str(p.relative_to(root)) for p in root.glob("*/*/*.yaml"))
    assert sorted(f.label for f in ALL_FILES) == on_disk
    assert set(recipes.names()) == FAMILIES | {"tiny"}
    # every file is named adaptation[-variant].yaml
    assert all(f.adaptation in recipes.ADAPTATIONS for f in ALL_FILES), [f.label for f in ALL_FILES if not f.adaptation]
    zephyr = {(f.task, f.variant) for f in recipes.files("zephyr-7b-beta")}
    assert zephyr == {("sft", "full"), ("sft", "qlora"), ("dpo", "full"), ("dpo", "qlora")}


def test_recipes_list_json_matches_the_files():
    res = invoke(["recipes", "list", "--json"])
    assert res.exit_code == 0, res.stderr
    rows = json.loads(res.stdout)
    expected = {}
    for f in ALL_FILES:
        expected.setdefault((f.recipe, f.task), []).append(f.adaptation)
    assert {(r["name"], r["task"]): r["variants"] for r in rows} == expected
    assert {r["family"] for r in rows} == FAMILIES | {"tiny"}
    # task x variant of each family, e.g. constitutional-ai: sft and dpo, constitutional-ai/grok: sft only
    assert {(r["name"], r["task"]) for r in rows if r["family"] == "constitutional-ai"} == {
        ("constitutional-ai", "sft"), ("constitutional-ai", "dpo"), ("constitutional-ai/grok", "sft")}
    assert {(r["name"], r["task"]) for r in rows if r["family"] == "smollm3"} == {
        ("smollm3", "sft"), ("smollm3", "dpo"), ("smollm3/mid", "sft")}
    assert by_row(rows, "zephyr-141b-A35b", "orpo")["files"] == ["zephyr-141b-A35b/orpo/full.yaml"]
    by_key = {(r["name"], r["task"]): r for r in rows}
    assert by_key[("zephyr-7b-beta", "dpo")]["description"].startswith("Zephyr-7B-β DPO")
    assert all(r["description"] for r in rows)


def by_row(rows, name, task):
    return next(r for r in rows if (r["name"], r["task"]) == (name, task))


def test_recipes_list_table():
    res = invoke(["recipes", "list"])
    assert res.exit_code == 0
    for name in recipes.recipe_names():
        assert name in res.stdout


# --------------------------------------------------------------------------- every recipe x task x profile


def _selected(recipe_file, profile: str) -> bool:
    """Whether `--recipe R --profile P` reads this file (the profile's adaptation picks the file)."""
    from alignkit.config.profiles import load_stack

    try:
        return recipes.find(recipe_file.recipe, recipe_file.task, load_stack(profile).adaptation) == recipe_file
    except AlignkitError:  # a full-only recipe under a LoRA profile: refused (test_full_only_recipes_...)
        return False


def _validation_cases():
    for f in ALL_FILES:
        for profile in PROFILES:
            if not _selected(f, profile):
                continue
            yield pytest.param(f, profile, id=f"{f.label}-{profile}")


@pytest.mark.parametrize("recipe_file, profile", list(_validation_cases()))
def test_every_recipe_task_profile_validates(recipe_file, profile):
    world = _world(recipe_file, profile)
    res = invoke(["validate", "--recipe", recipe_file.recipe, "--task", recipe_file.task, "--profile", profile,
                  *world])
    assert res.exit_code == 0, (res.stderr, res.exception)
    size = int(world[1]) * (int(world[3]) if len(world) > 2 else 1)
    assert f"valid {recipe_file.task}: profile {profile}, world size {size}," in flat(res.stderr)


def test_every_file_is_read_by_some_profile():
    for f in ALL_FILES:
        assert any(_selected(f, p) for p in PROFILES), f.label


def test_full_only_recipes_name_what_they_ship():
    res = invoke(["validate", "--recipe", "smollm2/smol", "--task", "sft", "--profile", "qlora", "--num-gpus", "1"])
    assert isinstance(res.exception, AlignkitError) and res.exception.exit_code == 2
    [p] = res.exception.problems
    assert p.message == "recipe smollm2/smol/sft has no variant for qlora training"
    assert p.fix.startswith("variants it ships: full")


def test_validate_without_task_checks_both_steps():
    res = invoke(["validate", "--recipe", "zephyr-7b-beta", "--profile", "full", "--num-gpus", "8"])
    assert res.exit_code == 0, res.stderr
    err = flat(res.stderr)
    assert "valid sft: profile full, world size 8, global batch 512" in err
    assert "valid dpo: profile full, world size 8, global batch 64" in err


def test_wrong_shape_is_a_clear_error_for_both_steps():
    res = invoke(["validate", "--recipe", "zephyr-7b-beta", "--profile", "qlora", "--num-gpus", "8"])
    assert isinstance(res.exception, AlignkitError)
    wheres = [p.where for p in res.exception.problems]
    assert wheres == ["[sft] launch.global_batch_size", "[dpo] launch.global_batch_size"]
    assert "use a world size (--num-gpus x --num-nodes) in [1, 2]" in res.exception.problems[0].fix


def test_recipe_without_the_variant_a_profile_needs(tmp_path, monkeypatch):
    # a recipe shipping only `full`: LoRA profiles name the variants it has
    from alignkit.config import recipes as mod

    root = tmp_path / "recipes"
    (root / "only-full" / "sft").mkdir(parents=True)
    (root / "only-full" / "sft" / "full.yaml").write_text("model: {model_name_or_path: m}\n")
    monkeypatch.setattr(mod, "_root", lambda: root)
    with pytest.raises(AlignkitError) as exc:
        resolve_config("sft", recipe="only-full", profile="qlora")
    [p] = exc.value.problems
    assert (p.where, p.message) == ("--profile", "recipe only-full/sft has no variant for qlora training")
    assert p.fix.startswith("variants it ships: full")
    with pytest.raises(AlignkitError) as exc:
        resolve_config("dpo", recipe="only-full", profile="full")
    assert exc.value.problems[0].message == "recipe only-full has no dpo step"


# --------------------------------------------------------------------------- documented commands


RUNS = ("sft", "dpo", "orpo", "cpt")


def _dry_run_args(command: str) -> list[str]:
    args = shlex.split(command, comments=True)
    assert args[0] == "alignkit", command
    args = args[1:]
    if args[0] in (*RUNS, "sweep") and "--dry-run" not in args:
        args.append("--dry-run")
    return args


def _run_documented(command: str) -> None:
    args = _dry_run_args(command)
    res = invoke(args)
    assert res.exit_code == 0, (command, res.stderr, res.exception)
    if args[0] in RUNS:
        command = res.stdout.strip().splitlines()[-1]
        assert command.startswith(("accelerate", "/")), res.stdout
        # several processes go through `accelerate launch`, one process starts the training module directly
        assert " launch " in command or f" -m alignkit.train.{args[0]} --run " in command, command


RECIPE_COMMANDS = [(f.label, c) for f in ALL_FILES for c in f.commands]


def _command_cases():
    for label, c in RECIPE_COMMANDS:
        yield pytest.param(label, c, id=f"{label}: {c}")


def test_every_recipe_documents_commands():
    for f in ALL_FILES:
        assert f.commands, f"{f.label} has no `alignkit ...` command in its comment block"
        runs = [shlex.split(c) for c in f.commands if c.startswith(f"alignkit {f.task} ")]
        # the file's own recipe name, exactly (not constitutional-ai for constitutional-ai/grok)
        assert any(a[a.index("--recipe") + 1] == f.recipe for a in runs if "--recipe" in a), f.label


def test_pref_align_scan_documents_the_scan_as_one_sweep():
    for f in recipes.files("pref-align-scan"):
        sweeps = [c for c in f.commands if c.startswith("alignkit sweep dpo ")]
        assert len(sweeps) == 1, f.label
        args = shlex.split(sweeps[0])
        grids = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--grid")
        assert grids["loss_type"].split(",") == ["sigmoid", "ipo"]  # kto_pair is gone from TRL's DPO
        assert grids["beta"].split(",") == ["0.01"] + [f"0.{i}" for i in range(1, 10)]  # the handbook's scan
        assert args[args.index("--recipe") + 1] == f.recipe


@pytest.mark.parametrize("label, command", list(_command_cases()))
def test_recipe_comment_commands_dry_run(label, command):
    _run_documented(command)


def _readme_commands(text: str) -> list[str]:
    commands = []
    for block in re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", text, flags=re.S):
        logical = block.replace("\\\n", " ")
        for line in logical.splitlines():
            for segment in re.split(r"\s*(?:&&|;)\s*", line.strip()):
                segment = segment.removeprefix("$ ").strip()
                tokens = shlex.split(segment, comments=True) if segment else []
                while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", tokens[0]):
                    tokens = tokens[1:]  # VAR=value prefixes
                if len(tokens) > 1 and tokens[0] == "alignkit" and tokens[1] in ("sft", "dpo", "validate", "recipes"):
                    commands.append(shlex.join(tokens))
    return commands


def test_readme_parser_finds_commands():
    text = ("intro\n```bash\n$ alignkit sft --recipe tiny \\\n    --profile cpu  # go\nmake test\n"
            "HF_HUB_OFFLINE=1 alignkit recipes list && alignkit env\n```\n```python\nalignkit dpo x\n```\n")
    assert _readme_commands(text) == ["alignkit sft --recipe tiny --profile cpu", "alignkit recipes list"]


def test_readme_commands_dry_run(tmp_path, monkeypatch):
    readme = REPO / "README.md"
    assert readme.is_file(), "README.md is missing: its alignkit commands cannot be checked"
    commands = _readme_commands(readme.read_text(encoding="utf-8"))
    assert any(c.startswith(("alignkit sft ", "alignkit dpo ")) for c in commands), \
        "README.md shows no `alignkit sft|dpo` command in a ```bash block"
    # run from a scratch copy of the checkout's layout: relative paths resolve, nothing is written in the repo
    for entry in REPO.iterdir():
        if entry.name not in (".git", "runs", "data", ".venv"):
            os.symlink(entry, tmp_path / entry.name)
    monkeypatch.chdir(tmp_path)
    failures = []
    for command in commands:
        try:
            _run_documented(command)
        except AssertionError as exc:
            failures.append(f"{command}: {exc}")
    assert not failures, "\n".join(failures)


# --------------------------------------------------------------------------- the Zephyr numbers


def _resolved(task: str, profile: str):
    return resolve_config(task, recipe="zephyr-7b-beta", profile=profile)


@pytest.mark.parametrize("profile", ["full"])
def test_zephyr_sft_full_matches_the_paper(profile):
    r = _resolved("sft", profile)
    t = r.config.train
    assert r.recipe_file == "zephyr-7b-beta/sft/full.yaml"
    assert r.config.model.model_name_or_path == "mistralai/Mistral-7B-v0.1"
    assert (t.learning_rate, t.lr_scheduler_type, t.num_train_epochs, t.max_length) == (2e-5, "cosine", 1, 2048)
    assert t.warmup_steps == 0.1
    assert r.config.launch.global_batch_size == 512
    assert t.per_device_train_batch_size * t.gradient_accumulation_steps * r.config.launch.reference_num_gpus == 512
    assert t.bf16 is True and t.gradient_checkpointing is True


def test_zephyr_dpo_full_has_the_corrected_hyperparameters():
    r = _resolved("dpo", "full")
    t = r.config.train
    assert r.config.model.model_name_or_path == "alignment-handbook/zephyr-7b-sft-full"
    assert (t.beta, t.num_train_epochs, t.learning_rate, t.lr_scheduler_type) == (0.01, 1, 5e-7, "linear")
    assert t.warmup_steps == 0.1 and t.max_length == 1024 and t.optim == "rmsprop"
    rf = recipes.find("zephyr-7b-beta", "dpo", "full")
    said = int(re.search(r"global batch (\d+)", rf.comment).group(1))
    assert r.config.launch.global_batch_size == said == 64
    assert t.per_device_train_batch_size * t.gradient_accumulation_steps * r.config.launch.reference_num_gpus == said


def test_zephyr_qlora_batches_match_the_handbook():
    sft, dpo = _resolved("sft", "qlora"), _resolved("dpo", "qlora")
    assert (sft.config.train.per_device_train_batch_size, sft.config.train.gradient_accumulation_steps) == (4, 2)
    assert (dpo.config.train.per_device_train_batch_size, dpo.config.train.gradient_accumulation_steps) == (4, 4)
    assert (dpo.config.train.beta, dpo.config.train.num_train_epochs) == (0.01, 1)
    assert sft.config.model.load_in_4bit and dpo.config.model.load_in_4bit
    assert sft.config.lora.enabled and dpo.config.lora.enabled


@pytest.mark.parametrize("recipe_file", ALL_FILES, ids=lambda f: f.label)
def test_recipe_batch_numbers_are_self_consistent(recipe_file):
    raw = yaml.safe_load(recipe_file.text)
    t, launch = raw["train"], raw["launch"]
    assert t["per_device_train_batch_size"] * t["gradient_accumulation_steps"] * launch["reference_num_gpus"] == \
        launch["global_batch_size"]
    said = re.search(r"global batch (\d+)", recipe_file.comment)
    if said:
        assert int(said.group(1)) == launch["global_batch_size"]


# recipes whose data has no eval split at all (the handbook evaluated none): they say so and never evaluate
NO_EVAL = {"zephyr-141b-A35b/orpo/full.yaml", "smollm3/sft/full.yaml", "smollm3/sft/full-mid.yaml",
           "smollm3/dpo/full.yaml"}


@pytest.mark.parametrize("recipe_file", ALL_FILES, ids=lambda f: f.label)
def test_eval_split_never_trains(recipe_file):
    from alignkit.config.data import DataConfig

    raw = yaml.safe_load(recipe_file.text)
    data = DataConfig.model_validate(raw["data"])  # the model every run validates its data section with
    if recipe_file.task in ("sft", "dpo"):
        r = resolve_config(recipe_file.task, recipe=recipe_file.recipe, profile=recipe_file.adaptation)
        data = r.config.data
    mix = data.mixture
    train = [s for s in mix if not s.is_test]
    test = [s for s in mix if s.is_test]
    assert train
    assert all("test" not in s.split for s in train)
    assert all("test" in s.split and s.test is None for s in test)  # by its split name, never by a flag
    assert not {(s.name, s.config, s.split) for s in train} & {(s.name, s.config, s.split) for s in test}
    assert data.test_split_size is None  # never carved out of train: the test sources are the eval data
    assert all("weight" not in s.model_fields_set for s in test)  # test sources evaluate whole
    if recipe_file.label in NO_EVAL:
        assert not test and raw["train"]["eval_strategy"] == "no"
        assert "no evaluation" in flat(recipe_file.comment)
    else:
        assert test and raw["train"].get("eval_strategy", "no") != "no"
    if recipe_file.name == "zephyr-7b-beta":
        expected = {"sft": ("train_sft", "test_sft"), "dpo": ("train_prefs", "test_prefs")}[recipe_file.task]
        assert ([s.split for s in train], [s.split for s in test]) == ([expected[0]], [expected[1]])


# --------------------------------------------------------------------------- show / copy


def test_recipes_show_prints_each_value_with_its_layer():
    res = invoke(["recipes", "show", "zephyr-7b-beta", "--task", "dpo"])
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    rf = recipes.find("zephyr-7b-beta", "dpo", "full")
    beta_line = next(i for i, line in enumerate(rf.text.splitlines(), 1) if line.strip().startswith("beta:"))
    assert re.search(rf"^  beta: 0\.01\s+# recipe zephyr-7b-beta/dpo/full\.yaml:{beta_line}$", out, re.M), out
    assert re.search(r"^  bf16: true\s+# profile full:\d+$", out, re.M)
    assert re.search(r"^  trust_remote_code: false\s+# default$", out, re.M)
    assert re.search(r"^  logging_first_step: true\s+# defaults/dpo\.yaml:\d+$", out, re.M)
    # the shown YAML (comments aside) is the resolved config
    shown = yaml.safe_load(out)
    assert shown["train"]["beta"] == 0.01 and shown["launch"]["global_batch_size"] == 64
    assert shown["data"]["mixture"][1]["split"] == "test_prefs"


def test_recipes_show_with_a_profile_stack_and_raw():
    res = invoke(["recipes", "show", "tiny", "--task", "sft", "--profile", "qlora,cpu"])
    assert res.exit_code == 0, res.stderr
    assert "(recipe file: tiny/sft/lora.yaml)" in res.stdout
    assert re.search(r"^  load_in_4bit: true\s+# profile qlora:\d+$", res.stdout, re.M)
    raw = invoke(["recipes", "show", "zephyr-7b-beta", "--task", "sft", "--profile", "qlora", "--raw"])
    assert raw.exit_code == 0
    assert raw.stdout.rstrip("\n") == recipes.find("zephyr-7b-beta", "sft", "qlora").text.rstrip("\n")


def test_recipes_show_errors():
    res = invoke(["recipes", "show", "zephyr-7b-bta"])
    assert isinstance(res.exception, AlignkitError)
    assert "did you mean 'zephyr-7b-beta'" in res.exception.problems[0].fix
    res = invoke(["recipes", "show", "tiny", "--task", "kto"])
    assert res.exception.problems[0].message == "unknown task 'kto'"
    assert res.exception.exit_code == 2


def test_recipes_copy_then_validate_the_copy(tmp_path):
    dest = tmp_path / "my-zephyr"
    res = invoke(["recipes", "copy", "zephyr-7b-beta", str(dest)])
    assert res.exit_code == 0, res.stderr
    written = sorted(str(p.relative_to(dest)) for p in dest.rglob("*.yaml"))
    assert written == ["dpo/full.yaml", "dpo/qlora.yaml", "sft/full.yaml", "sft/qlora.yaml"]
    assert sorted(res.stdout.split()) == sorted(str(dest / w) for w in written)
    assert (dest / "sft" / "full.yaml").read_text() == recipes.find("zephyr-7b-beta", "sft", "full").text
    (dest / "sft" / "full.yaml").write_text((dest / "sft" / "full.yaml").read_text()
                                           .replace("learning_rate: 2.0e-05", "learning_rate: 1.0e-05"))
    ok = invoke(["validate", "--config", str(dest / "sft" / "full.yaml"), "--task", "sft", "--profile", "full",
                 "--num-gpus", "8"])
    assert ok.exit_code == 0, (ok.stderr, ok.exception)
    assert "valid sft: profile full, world size 8, global batch 512" in flat(ok.stderr)
    plan = invoke(["sft", "--config", str(dest / "sft" / "full.yaml"), "--profile", "full", "--num-gpus", "8",
                   "--dry-run", "--json"])
    cfg = json.loads(plan.stdout)["config"]
    assert cfg["train"]["learning_rate"] == 1e-5 and cfg["recipe"] is None
    # never overwrites
    again = invoke(["recipes", "copy", "zephyr-7b-beta", str(dest)])
    assert isinstance(again.exception, AlignkitError)
    assert again.exception.problems[0].message == "already exists"
    assert (dest / "sft" / "full.yaml").read_text().count("learning_rate: 1.0e-05") == 1
