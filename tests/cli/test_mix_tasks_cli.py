"""`alignkit mix preview|build --task orpo|cpt`: what `alignkit orpo` / `alignkit cpt` would train on, through the
real CLI (typer's CliRunner in this process; a subprocess where the exit code and stderr matter).

ORPO: DPO's pairs, rendered with the chat template, and what TRL's ORPOTrainer cuts at max_length (checked against
ORPOTrainer.tokenize_row itself). CPT: the text column, its tokens and the sequences TRL's SFTTrainer packs it into
(checked against SFTTrainer._prepare_dataset itself). A build is the one the training run's preflight writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.config.tasks import TASKS, task_option_fix
from tests.helpers import flat, run_cli

ORPO_RECIPE = "zephyr-141b-A35b"  # the shipped ORPO recipe (its data is on the Hub: replaced below)


def invoke(*args):
    return CliRunner().invoke(app, ["mix", *map(str, args)])


def ok(*args):
    r = invoke(*args)
    assert r.exit_code == 0, (r.output, r.exception)
    return r


def as_json(*args) -> dict:
    return json.loads(ok(*args, "--json").stdout)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path, tiny_model_dir: str) -> dict[str, Path]:
    """ORPO pairs with prompts and answers of many lengths; CPT documents in a `body` column, some longer than
    max_length; a config for each task on the tiny model."""
    prefs = write_jsonl(tmp_path / "prefs.jsonl", [
        {"prompt": f"q{i} " + "word " * (i % 7) * 3, "chosen": f"good {i} " + "yes " * ((i * 5) % 11), "rejected": f"bad {i}"}
        for i in range(16)])
    text = write_jsonl(tmp_path / "text.jsonl", [
        {"body": f"document {i}. " + "lorem ipsum dolor " * ((i * 7) % 13), "id": i} for i in range(20)])
    orpo = tmp_path / "orpo.yaml"
    orpo.write_text(yaml.safe_dump({
        "model": {"model_name_or_path": tiny_model_dir},
        "data": {"mixture": [{"path": str(prefs)}]},
        "train": {"output_dir": str(tmp_path / "orpo-out"), "max_length": 30},
    }))
    cpt = tmp_path / "cpt.yaml"
    cpt.write_text(yaml.safe_dump({
        "model": {"model_name_or_path": tiny_model_dir},
        "data": {"mixture": [{"path": str(text)}], "text_column": "body", "test_split_size": 4},
        "train": {"output_dir": str(tmp_path / "cpt-out"), "max_length": 96},
    }))
    return {"orpo": orpo, "cpt": cpt, "prefs": prefs, "text": text, "model": Path(tiny_model_dir)}


def _mixed(task: str, config: Path, split: str = "train") -> list[dict]:
    from alignkit.config.resolve import resolve_config
    from alignkit.data.mixer import mix

    return mix(resolve_config(task, config_files=[str(config)]).config.data, task).tables[split].to_pylist()


# --------------------------------------------------------------------------- ORPO


def _orpo_oracle(rows: list[dict], tok, max_length: int, monkeypatch) -> dict:
    """TRL 1.16's ORPOTrainer itself: its chat-template step and tokenize_row, on the mixed rows."""
    import sys
    from functools import partial

    from trl.data_utils import maybe_apply_chat_template

    from alignkit.train.trl_compat import orpo

    _, ORPOTrainer = orpo()
    # its warning for an empty completion goes through accelerate's logger, which wants a process state
    monkeypatch.setattr(sys.modules[ORPOTrainer.__module__], "logger", SimpleNamespace(warning_once=lambda *a, **k: None))

    def tokenized(limit: int) -> list[dict]:
        fake = SimpleNamespace(processing_class=tok, is_encoder_decoder=False, max_length=limit)
        fake.build_tokenized_answer = partial(ORPOTrainer.build_tokenized_answer, fake)
        return [ORPOTrainer.tokenize_row(fake, maybe_apply_chat_template(r, tok)) for r in rows]

    whole, cut = tokenized(10**9), tokenized(max_length)
    lengths = [max(len(w["chosen_input_ids"]), len(w["rejected_input_ids"])) for w in whole]
    truncated = sum(any(len(c[k]) < len(w[k]) for k in ("chosen_input_ids", "rejected_input_ids")) for w, c in zip(whole, cut))
    empty = sum(any(all(x == -100 for x in c[k]) for k in ("chosen_labels", "rejected_labels")) for c in cut)
    rendered = maybe_apply_chat_template(rows[0], tok)
    return {"lengths": lengths, "truncated": truncated, "no_completion_left": empty, "first": rendered}


def test_orpo_preview_renders_the_pairs_and_says_what_orpotrainer_cuts(files, monkeypatch):
    from transformers import AutoTokenizer

    from alignkit.data.lengths import nearest_rank

    out = as_json("preview", "--task", "orpo", "--config", files["orpo"], "--samples", "1")
    assert out["splits"]["train"]["rows"] == 16
    tokens = out["tokens"]
    assert tokens["trainer"] == "ORPOTrainer" and tokens["max_length"] == 30 and "truncation_mode" not in tokens
    stats = tokens["splits"]["train"]
    rows = _mixed("orpo", files["orpo"])
    want = _orpo_oracle(rows, AutoTokenizer.from_pretrained(str(files["model"])), 30, monkeypatch)
    assert 0 < want["no_completion_left"] < want["truncated"] < len(rows)  # the data shows every case
    assert stats["trl"]["dropped"] == 0
    assert (stats["trl"]["truncated"], stats["trl"]["no_completion_left"]) == (want["truncated"], want["no_completion_left"])
    s = sorted(want["lengths"])
    assert (stats["p50"], stats["p95"], stats["max"]) == (nearest_rank(s, 50), nearest_rank(s, 95), s[-1])
    # the sample is the first mixed row as TRL renders it: prompt with the generation prompt, answers after it
    sample = out["samples"][0]
    assert {k: sample[k] for k in ("prompt", "chosen", "rejected")} == want["first"]
    assert sample["prompt"].startswith("<|user|>")
    # the human output says it in words
    text = flat(ok("preview", "--task", "orpo", "--config", files["orpo"], "--samples", "1").stdout)
    assert (f"TRL's ORPOTrainer drops no rows; it keeps the prompt whole and cuts the end of the completions of "
            f"{want['truncated']} of 16 rows at max_length 30, {want['no_completion_left']} of which") in text
    assert "─── chosen ───" in text


def test_orpo_has_no_truncation_mode(files):
    r = invoke("preview", "--task", "orpo", "--config", files["orpo"], "--truncation-mode", "keep_end")
    assert r.exit_code != 0 and "--truncation-mode" in str(r.exception) and "ORPOConfig" in str(r.exception)


def test_orpo_preview_from_the_recipe_reads_its_sections_as_alignkit_orpo_does(files):
    from alignkit.config.resolve import resolve_config

    overrides = [f"--model_name_or_path={files['model']}", f"--data.mixture=[{{path: {files['prefs']}}}]"]
    inferred = as_json("preview", "--recipe", ORPO_RECIPE, *overrides, "--samples", "1")  # its only task: orpo
    given = as_json("preview", "--recipe", ORPO_RECIPE, "--task", "orpo", *overrides, "--samples", "1")
    assert inferred == given
    cfg = resolve_config("orpo", recipe=ORPO_RECIPE, overrides=overrides).config
    assert given["tokens"]["trainer"] == "ORPOTrainer"
    assert given["tokens"]["max_length"] == cfg.train.max_length == 2048  # the recipe's train section
    assert given["tokens"]["chat_template"] == "config:string"  # the recipe's data.chat_template
    assert given["samples"][0]["prompt"].startswith("<|user|>\n")


def test_orpo_build_holds_the_pairs_rendered(files, tmp_path):
    out = as_json("build", "--task", "orpo", "--config", files["orpo"], "--output", tmp_path / "orpo-mix")
    assert out["splits"]["train"]["rows"] == 16
    manifest = json.loads((tmp_path / "orpo-mix" / "manifest.json").read_text())
    assert manifest["task"] == "dpo"  # ORPO trains on DPO's pairs: the same build
    assert manifest["derived_columns"] == ["text_prompt", "text_chosen", "text_rejected"]
    import pyarrow.parquet as pq

    row = pq.read_table(str(tmp_path / "orpo-mix" / "train-00000-of-00001.parquet")).to_pylist()[0]
    assert row["prompt"][-1]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
    assert row["text_prompt"].startswith("<|user|>")


# --------------------------------------------------------------------------- CPT


def _sft_trainer_oracle(texts: list[str], tok, max_length: int, packing: bool, tmp: Path, strategy: str = "bfd"):
    """TRL 1.16's SFTTrainer._prepare_dataset on the texts, as `alignkit cpt` configures it (the build's text
    column), packed into max_length sequences (with ``strategy``) or not."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(tmp), max_length=max_length, packing=packing, dataset_text_field="text",
                     packing_strategy=strategy, use_cpu=True, bf16=False, report_to=[])
    fake = SimpleNamespace(_tokenizer=tok, chat_template=None, completion_only_loss=None)
    return SFTTrainer._prepare_dataset(fake, Dataset.from_dict({"text": texts}), tok, args, packing, None, "train")


@pytest.mark.parametrize("strategy", ["bfd_split", "bfd"])  # cpt's default, TRL's default
def test_cpt_preview_counts_tokens_and_the_sequences_sfttrainer_packs(files, tmp_path, strategy):
    from transformers import AutoTokenizer

    from alignkit.data.lengths import nearest_rank

    chosen = [] if strategy == "bfd_split" else [f"--packing_strategy={strategy}"]
    out = as_json("preview", "--task", "cpt", "--config", files["cpt"], "--samples", "2", *chosen)
    assert (out["splits"]["train"]["rows"], out["splits"]["test"]["rows"]) == (16, 4)
    tokens = out["tokens"]
    assert tokens["trainer"] == "SFTTrainer" and tokens["chat_template"] is None
    assert tokens["packing"] is True and tokens["packing_strategy"] == strategy and tokens["max_length"] == 96
    tok = AutoTokenizer.from_pretrained(str(files["model"]))
    for split in ("train", "test"):
        texts = [r["text"] for r in _mixed("cpt", files["cpt"], split)]
        whole = [len(x) for x in _sft_trainer_oracle(texts, tok, None, False, tmp_path / "o")["input_ids"]]
        packed = _sft_trainer_oracle(texts, tok, 96, True, tmp_path / "o", strategy)
        stats = tokens["splits"][split]
        s = sorted(whole)
        assert (stats["p50"], stats["p95"], stats["max"]) == (nearest_rank(s, 50), nearest_rank(s, 95), s[-1])
        trl = stats["trl"]
        assert trl["sequences"] == packed.num_rows
        assert trl["tokens"] == sum(whole)
        assert trl["tokens_kept"] == sum(len(x) for x in packed["input_ids"])
        assert trl["tokens_dropped"] == (sum(n - 96 for n in whole if n > 96) if strategy == "bfd" else 0)
    train = tokens["splits"]["train"]["trl"]
    assert train["sequences"] < 16  # documents share sequences
    assert (train["tokens_dropped"] > 0) == (strategy == "bfd")  # bfd cuts the long ones, bfd_split keeps them
    # samples: the text as it trains (no template), with its tokens
    first = _mixed("cpt", files["cpt"])[0]["text"]
    assert out["samples"][0]["text"] == first and out["samples"][0]["text"].startswith("document ")
    assert out["samples"][0]["tokens"] == len(_sft_trainer_oracle([first], tok, None, False, tmp_path / "o")[0]["input_ids"])
    text = flat(ok("preview", "--task", "cpt", "--config", files["cpt"], "--samples", "1", *chosen).stdout)
    assert (f"train: packing ({strategy}): 16 documents ({train['tokens']:,} tokens) make {train['sequences']} "
            f"sequences of up to 96 tokens") in text
    assert (f"bfd cuts the {train['documents_longer']} documents longer than 96" in text) == (strategy == "bfd")
    assert "template: none, plain text" in text
    assert f"sample 0, {out['samples'][0]['tokens']} tokens — " in text


def test_cpt_preview_without_packing_reports_the_cut_documents(files, tmp_path):
    from transformers import AutoTokenizer

    out = as_json("preview", "--task", "cpt", "--config", files["cpt"], "--packing=false", "--samples", "0")
    trl = out["tokens"]["splits"]["train"]["trl"]
    texts = [r["text"] for r in _mixed("cpt", files["cpt"])]
    kept = _sft_trainer_oracle(texts, AutoTokenizer.from_pretrained(str(files["model"])), 96, False, tmp_path / "o")
    whole = _sft_trainer_oracle(texts, AutoTokenizer.from_pretrained(str(files["model"])), None, False, tmp_path / "o")
    assert trl["packing"] is False and trl["truncation_mode"] == "keep_start"
    assert trl["truncated"] == sum(len(a) != len(b) for a, b in zip(kept["input_ids"], whole["input_ids"])) > 0
    assert "no packing: TRL's SFTTrainer cuts the end of" in flat(
        ok("preview", "--task", "cpt", "--config", files["cpt"], "--packing=false", "--samples", "0").stdout)


def test_cpt_preview_of_a_data_file_packs_as_the_cpt_defaults_do(files, tmp_path):
    from alignkit.config.resolve import default_train

    data = tmp_path / "data.yaml"
    data.write_text(f"data:\n  mixture: [{{path: {files['text']}}}]\n  text_column: body\n")
    out = as_json("preview", "--task", "cpt", "--data", data, "--tokenizer", files["model"], "--samples", "1")
    defaults = default_train("cpt")
    assert out["tokens"]["packing"] is defaults.packing is True
    assert out["tokens"]["max_length"] == defaults.max_length
    assert out["tokens"]["splits"]["train"]["trl"]["sequences"] >= 1
    raw = as_json("preview", "--task", "cpt", "--data", data, "--samples", "1")  # no tokenizer: the text alone
    assert raw["tokens"] is None and raw["samples"][0]["text"].startswith("document ") and "tokens" not in raw["samples"][0]


def test_cpt_build_holds_the_text_column_only(files, tmp_path):
    out = as_json("build", "--task", "cpt", "--config", files["cpt"], "--output", tmp_path / "cpt-mix")
    assert (out["splits"]["train"]["rows"], out["splits"]["test"]["rows"]) == (16, 4)
    manifest = json.loads((tmp_path / "cpt-mix" / "manifest.json").read_text())
    assert manifest["task"] == "cpt" and manifest["derived_columns"] == [] and manifest["chat_template"] is None
    assert manifest["splits"]["train"]["columns"] == ["text"]


# --------------------------------------------------------------------------- the build the run trains on


@pytest.mark.parametrize("task, flags", [("cpt", []), ("orpo", ["--no-render"])])
def test_mix_build_is_the_build_the_training_run_writes(files, tmp_path, task, flags):
    """`alignkit mix build --task T` and the preflight of `alignkit T` (which mixes the data once into the run dir
    and records the manifest's sha256 in the run file) write the same build from the same config. The preflight
    does not render (the trainer renders): for the pairs, `--no-render` gives the byte-identical build; rendered,
    the rows are the same and the rendered columns are left out when it is read back."""
    from alignkit.data.build import sha256_file
    from alignkit.launch.build import plan_run
    from alignkit.launch.preflight import build_data

    out = as_json("build", "--task", task, "--config", files[task], "--output", tmp_path / "mix", *flags)
    plan = plan_run(task, config_files=[str(files[task])], profile="cpu", overrides=[f"--output_dir={tmp_path / 'run'}"])
    ref = build_data(plan)  # what `alignkit T` records before it starts the trainer
    assert ref.key == out["key"] is not None
    assert ref.manifest_sha256 == sha256_file(tmp_path / "mix" / "manifest.json")
    assert {s: v["sha256"] for s, v in out["splits"].items()} == {
        s: v["sha256"] for s, v in json.loads((Path(ref.path) / "manifest.json").read_text())["splits"].items()}


# --------------------------------------------------------------------------- bad input (exit 2, what and the fix)


def test_a_cpt_source_without_the_text_column_exits_2_naming_it(files):
    for command in ("preview", "build"):
        res = run_cli("mix", command, "--task", "cpt", "--config", files["cpt"], "--data.text_column=content",
                      *(["--output", files["cpt"].parent / "never"] if command == "build" else []))
        assert res.returncode == 2, res.stderr
        err = flat(res.stderr)
        assert f"source {files['text']} (train): has no 'content' column (it has: body, id)" in err
        assert "fix: set data.text_column" in err and "Traceback" not in err
    assert not (files["cpt"].parent / "never").exists()


def test_a_cpt_row_whose_text_is_not_a_string_exits_2_naming_row_and_column(files, tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"body": "a text"}, {"body": "more"}, {"body": 5}])
    data = tmp_path / "bad.yaml"
    data.write_text(f"data:\n  mixture: [{{path: {bad}}}]\n  text_column: body\n")
    res = run_cli("mix", "preview", "--task", "cpt", "--data", data)
    assert res.returncode == 2, res.stderr
    err = flat(res.stderr)
    assert f"{bad}: rows have inconsistent types: row 2 (line 3) has a number in column 'body', where row 0 has a string" in err
    assert "fix: give every row the same fields with the same types" in err and "Traceback" not in err
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"body": "a text"}, {"body": "  "}])
    data.write_text(f"data:\n  mixture: [{{path: {empty}}}]\n  text_column: body\n")
    err = flat(run_cli("mix", "preview", "--task", "cpt", "--data", data).stderr)
    assert f"source {empty} (train) row 1 (line 2): body is empty" in err and "--skip-invalid" in err


def test_an_unknown_task_exits_2_listing_the_tasks(files):
    for command in ("preview", "build"):
        res = run_cli("mix", command, "--task", "nope", "--config", files["cpt"],
                      *(["--output", files["cpt"].parent / "never"] if command == "build" else []))
        assert res.returncode == 2, res.stderr
        err = flat(res.stderr)
        assert "--task: unknown task 'nope'" in err and task_option_fix() in err
    for command in ("preview", "build", "decontaminate"):
        help_text = flat(ok(command, "--help").stdout)
        assert all(f"{t} (" in help_text for t in TASKS), help_text
