"""`alignkit mix preview|build --task orpo|cpt` through the CLI: the data read as the training command reads it.

ORPO reads DPO's preference pairs and reports what TRL's ORPOTrainer cuts at max_length (it never drops a row or
cuts the prompt); CPT reads a text column, renders nothing and reports how TRL packs the documents
(bfd_split: every token kept); `mix build --task cpt` writes the split the training run's preflight writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from alignkit.cli import app
from tests.helpers import flat, run_cli

WORDS = "de het een en van ik je dat is niet op te zijn met voor maar".split()


def invoke(*args):
    return CliRunner().invoke(app, ["mix", *map(str, args)])


def ok_json(*args) -> dict:
    r = invoke(*args, "--json")
    assert r.exit_code == 0, (r.output, r.exception)
    return json.loads(r.stdout)


@pytest.fixture
def text_data(tmp_path) -> Path:
    f = tmp_path / "text.jsonl"
    f.write_text("".join(json.dumps({"text": " ".join(WORDS[(i + j) % len(WORDS)] for j in range(40 + 7 * i)),
                                     "url": f"u{i}"}) + "\n" for i in range(12)))
    d = tmp_path / "cpt.yaml"
    d.write_text(yaml.safe_dump({"data": {"mixture": [{"path": str(f)}]}}))
    return d


@pytest.fixture
def pref_data(tmp_path, tiny_assets) -> Path:
    d = tmp_path / "orpo.yaml"
    d.write_text(yaml.safe_dump({"data": {"mixture": [{"path": str(tiny_assets.prefs_train)}]}}))
    return d


def test_cpt_preview_packs_the_text_as_trl_would(text_data, tiny_model_dir):
    out = ok_json("preview", "--task", "cpt", "--data", text_data, "--tokenizer", tiny_model_dir, "--max-length", 64)
    tokens = out["tokens"]
    assert tokens["chat_template"] is None and tokens["packing"] == "bfd_split"  # the cpt defaults' packing
    train = tokens["splits"]["train"]
    pk = train["packing"]
    assert pk["documents"] == 12 and pk["tokens"] == pk["tokens_kept"]  # bfd_split keeps every token
    assert pk["sequences"] >= -(-pk["tokens"] // 64) and 0 < pk["fill_pct"] <= 100
    assert all("text" in s and "url" not in s for s in out["samples"])
    # what a person reads
    r = invoke("preview", "--task", "cpt", "--data", text_data, "--tokenizer", tiny_model_dir, "--max-length", "64")
    assert r.exit_code == 0, r.output
    assert f"TRL packs 12 documents into {pk['sequences']} sequences of 64 tokens" in flat(r.stdout)
    assert "every token kept" in r.stdout and "plain text + EOS" in flat(r.stdout)


def test_packing_report_counts_what_bfd_drops():
    from alignkit.data.preview import packing_report

    kept = packing_report([10, 3, 25], max_length=8, strategy="bfd")
    split = packing_report([10, 3, 25], max_length=8, strategy="bfd_split")
    assert kept["tokens"] == split["tokens"] == split["tokens_kept"] == 38
    assert kept["tokens_kept"] == 8 + 3 + 8 and kept["sequences"] < split["sequences"]


def test_orpo_preview_reports_what_the_orpo_trainer_cuts(pref_data, tiny_model_dir):
    out = ok_json("preview", "--task", "orpo", "--data", pref_data, "--tokenizer", tiny_model_dir, "--max-length", 12)
    trl = out["tokens"]["splits"]["train"]["trl"]
    assert trl["trainer"] == "ORPOTrainer" and trl["dropped"] == 0
    assert trl["truncated"] + trl["empty_answer"] > 0  # the demo's rows are ~20 tokens
    assert "truncation_mode" not in out["tokens"]  # DPO's setting; ORPO has none
    s = out["samples"][0]
    assert "<|assistant|>" in s["prompt"] and s["chosen"] and s["rejected"]
    r = invoke("preview", "--task", "orpo", "--data", pref_data, "--tokenizer", tiny_model_dir, "--max-length", "12")
    assert "TRL's ORPOTrainer drops no rows and never cuts the prompt" in flat(r.stdout)


def test_orpo_and_cpt_builds_through_the_real_cli(tmp_path, text_data, pref_data, tiny_model_dir, tiny_env):
    for task, data in (("orpo", pref_data), ("cpt", text_data)):
        p = run_cli("mix", "build", "--task", task, "--data", data, "--tokenizer", tiny_model_dir, "-o",
                    tmp_path / f"b-{task}", "--json", env=tiny_env, timeout=180)
        assert p.returncode == 0, p.stderr
        manifest = json.loads((tmp_path / f"b-{task}" / "manifest.json").read_text())
        assert manifest["task"] == ("dpo" if task == "orpo" else "cpt")  # the row format the build holds
    import datasets

    cpt = datasets.load_dataset("parquet", data_dir=str(tmp_path / "b-cpt"), split="train")
    assert cpt.column_names == ["text"] and len(cpt) == 12  # only the text trains
    orpo = datasets.load_dataset("parquet", data_dir=str(tmp_path / "b-orpo"), split="train")
    assert {"prompt", "chosen", "rejected"} <= set(orpo.column_names)


def test_mix_build_for_cpt_is_the_split_the_cpt_run_trains_on(tmp_path, text_data, tiny_model_dir):
    from alignkit.commands.train import build_demo_assets_if_used
    from alignkit.launch.build import plan_run
    from alignkit.launch.preflight import build_data

    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"model_name_or_path": tiny_model_dir},
                                   "data": yaml.safe_load(text_data.read_text())["data"]}))
    plan = plan_run("cpt", profile="cpu", config_files=[str(cfg)], overrides=[f"--output_dir={tmp_path / 'run'}"])
    build_demo_assets_if_used(plan.config)
    ref = build_data(plan)  # what `alignkit cpt` mixes into its run dir before it launches
    r = invoke("build", "--task", "cpt", "--config", cfg, "-o", tmp_path / "mine", "--json")
    assert r.exit_code == 0, (r.output, r.exception)
    mine = json.loads((tmp_path / "mine" / "manifest.json").read_text())
    run = json.loads((Path(ref.path) / "manifest.json").read_text())
    assert mine["splits"]["train"]["sha256"] == run["splits"]["train"]["sha256"]


def test_a_cpt_source_without_its_text_column_is_exit_2_naming_it(tmp_path, tiny_model_dir):
    f = tmp_path / "chat.jsonl"
    f.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    d = tmp_path / "d.yaml"
    d.write_text(yaml.safe_dump({"data": {"mixture": [{"path": str(f)}]}}))
    p = run_cli("mix", "preview", "--task", "cpt", "--data", d, "--tokenizer", tiny_model_dir, timeout=120)
    assert p.returncode == 2, (p.stdout, p.stderr)
    err = flat(p.stderr)
    assert "chat.jsonl" in err and "text" in err and "fix:" in err and "Traceback" not in p.stderr


def test_an_unknown_task_lists_the_four(tmp_path, text_data):
    p = run_cli("mix", "build", "--task", "ppo", "--data", text_data, "-o", tmp_path / "x", timeout=60)
    assert p.returncode == 2
    err = flat(p.stderr)
    assert "unknown task 'ppo'" in err and all(f"--task {t}" in err for t in ("sft", "dpo", "orpo", "cpt"))
    assert not (tmp_path / "x").exists()
