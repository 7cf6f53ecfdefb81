"""`alignkit mix preview|build|decontaminate` through typer's CliRunner.

To run these through the main app instead of the sub-app, change APP_MODULE and PREFIX below only.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alignkit.errors import ConfigError, DataError, UsageError
from tests.helpers import run_cli

APP_MODULE = "alignkit.cli"  # the sub-app alone: "alignkit.commands.mix"
PREFIX: list[str] = ["mix"]  # the sub-app alone: []
APP = importlib.import_module(APP_MODULE).app
REPO = Path(__file__).resolve().parents[2]

MT_Q = "Compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultural experiences and must-see attractions."


def invoke(*args: str):
    return CliRunner().invoke(APP, [*PREFIX, *args])


def ok(*args: str):
    r = invoke(*args)
    assert r.exit_code == 0, (r.output, r.exception)
    return r


def as_json(*args: str) -> dict:
    return json.loads(ok(*args, "--json").stdout)


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return str(path)


def make_tokenizer_dir(path: Path, template: str | None = "zephyr") -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from alignkit.data.chat import builtin_template

    core = Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    if template:
        tok.chat_template = builtin_template(template)
    tok.save_pretrained(str(path))
    return str(path)


def sft(user: str, reply: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]}


@pytest.fixture
def project(tmp_path):
    """Two SFT sources with long-tailed reply lengths, a test source, a tokenizer and a data file."""
    a = [sft(f"question a{i}", " ".join(["word"] * (1 + (i * i) % 37))) for i in range(60)]
    b = [sft(f"question b{i}", "short") for i in range(10)]
    t = [sft(f"question t{i}", "reply") for i in range(5)]
    write_jsonl(tmp_path / "a.jsonl", a)
    write_jsonl(tmp_path / "b.jsonl", b)
    write_jsonl(tmp_path / "t.jsonl", t)
    (tmp_path / "data.yaml").write_text(
        "data:\n"
        "  mixture:\n"
        f"    - {{path: {tmp_path / 'a.jsonl'}, weight: 0.5}}\n"
        f"    - {{path: {tmp_path / 'b.jsonl'}, weight: 2}}\n"
        f"    - {{path: {tmp_path / 't.jsonl'}, split: test}}\n"
    )
    make_tokenizer_dir(tmp_path / "tok")
    return tmp_path


def nearest_rank(values, p):
    s = sorted(values)
    import math

    return s[max(1, math.ceil(p / 100 * len(s))) - 1]


def test_preview_json_counts_tokens_and_samples(project):
    from transformers import AutoTokenizer

    from alignkit.config.data import DataConfig
    from alignkit.data.mixer import mix

    out = as_json("preview", "--task", "sft", "--data", str(project / "data.yaml"), "--tokenizer", str(project / "tok"),
                  "--max-length", "40", "--samples", "3")
    train = out["splits"]["train"]
    assert train["rows"] == 30 + 20
    assert [(s["name"], s["split"], s["weight"], s["rows"]) for s in train["sources"]] == [
        (str(project / "a.jsonl"), "train", 0.5, 30),
        (str(project / "b.jsonl"), "train", 2.0, 20),
    ]
    assert out["splits"]["test"]["rows"] == 5
    assert out["splits"]["test"]["sources"][0]["weight"] is None
    # token lengths, recomputed independently with the tokenizer's own apply_chat_template
    import yaml

    data = DataConfig.model_validate(yaml.safe_load((project / "data.yaml").read_text())["data"])
    rows = mix(data, "sft").tables["train"].column("messages").to_pylist()
    tok = AutoTokenizer.from_pretrained(str(project / "tok"))
    lengths = [len(tok.apply_chat_template(m, tokenize=True, return_dict=True)["input_ids"]) for m in rows]
    stats = out["tokens"]["splits"]["train"]
    assert (stats["p50"], stats["p95"], stats["max"]) == (nearest_rank(lengths, 50), nearest_rank(lengths, 95), max(lengths))
    over = sum(1 for x in lengths if x > 40)
    assert 0 < over < len(lengths)
    assert stats["over_max_length"] == over
    assert stats["over_max_length_pct"] == round(100 * over / len(lengths), 2)
    assert stats["rows_measured"] == 50 and stats["sampled"] is False
    assert out["tokens"]["chat_template"] == "tokenizer"
    assert len(out["samples"]) == 3
    assert out["samples"][0]["text"].startswith("<|user|>\nquestion ")
    # a sample of rows when asked for fewer
    small = as_json("preview", "--task", "sft", "--data", str(project / "data.yaml"), "--tokenizer", str(project / "tok"),
                    "--stats-rows", "10", "--samples", "0")
    assert small["tokens"]["splits"]["train"]["rows_measured"] == 10
    assert small["tokens"]["splits"]["train"]["sampled"] is True


def test_preview_human_output_and_overrides(project):
    r = ok("preview", "--task", "sft", "--data", str(project / "data.yaml"), "--tokenizer", str(project / "tok"),
           "--data.mix_seed=7", "--samples", "1")
    assert "train split" in r.stdout and "test split" in r.stdout
    assert "token lengths" in r.stdout and "sample 0" in r.stdout
    # without a tokenizer: counts and raw samples only
    out = as_json("preview", "--task", "sft", "--data", str(project / "data.yaml"), "--samples", "1")
    assert out["tokens"] is None
    assert out["samples"][0]["raw"]["messages"][0]["role"] == "user"
    r = invoke("preview", "--task", "sft", "--data", str(project / "data.yaml"), "--learning_rate=1")
    assert isinstance(r.exception, UsageError) and r.exception.exit_code == 2


def test_invalid_rows_fail_with_source_and_row_or_are_skipped(project):
    write_jsonl(project / "bad.jsonl", [sft("q", "a"), {"messages": [{"role": "user", "content": "q"}]}])
    (project / "bad.yaml").write_text(f"data:\n  mixture:\n    - {{path: {project / 'bad.jsonl'}}}\n")
    r = invoke("preview", "--task", "sft", "--data", str(project / "bad.yaml"))
    assert isinstance(r.exception, DataError) and r.exception.exit_code == 2
    assert f"source {project / 'bad.jsonl'} (train) row 1 (line 2): messages ends with a user turn" in str(r.exception)
    out = as_json("preview", "--task", "sft", "--data", str(project / "bad.yaml"), "--skip-invalid")
    assert out["splits"]["train"]["rows"] == 1
    assert out["splits"]["train"]["sources"][0]["invalid"] == 1


def test_a_template_typo_fails_first_with_did_you_mean(project, tiny_env):
    """The name is checked before the data or the tokenizer is loaded: a tokenizer path that does not
    exist would otherwise be the error (and only after the slow load)."""
    missing = str(project / "no-such-model")
    r = invoke("preview", "--task", "sft", "--data", str(project / "data.yaml"), "--tokenizer", missing,
               "--data.chat_template=zephir")
    assert isinstance(r.exception, ConfigError) and r.exception.exit_code == 2, (r.output, r.exception)
    msg = str(r.exception)
    assert "data.chat_template" in msg and "'zephir'" in msg and "did you mean 'zephyr'?" in msg
    assert "no-such-model" not in msg
    # a template file that does not exist says so
    r = invoke("preview", "--task", "sft", "--data", str(project / "data.yaml"), "--tokenizer", missing,
               f"--data.chat_template={project / 'tpl' / 'mine.jinja'}")
    assert isinstance(r.exception, ConfigError) and "no such template file" in str(r.exception)
    # the real entry point, with a recipe whose model path does not exist: exit 2, about the template
    p = run_cli("mix", "preview", "--recipe", "tiny", "--task", "dpo", f"--model.model_name_or_path={missing}",
                "--data.chat_template=ChatML", env=tiny_env, env_extra={"COLUMNS": "1000"}, cwd=REPO)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "did you mean 'chatml'?" in p.stderr and "no-such-model" not in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize(
    "body, says",
    [
        ("  mix_seed: 1\n  mix_seed: 2\n", ["c.yaml:5: key 'mix_seed' appears twice", "keep one 'mix_seed'"]),
        ("  mix_seed: no\n", ["data.mix_seed", "(got 'no')", "(from {c}:4)"]),  # YAML 1.1 read False: seed 0
        ("  skip_invalid: maybe\n", ["data.skip_invalid", "(got 'maybe')", "(from {c}:4)"]),
    ],
    ids=["duplicate-key", "yaml-1.1-boolean", "bad-type"],
)
def test_a_data_file_is_read_like_a_config_file(project, body, says):
    """--data FILE goes through the config loader: file:line, duplicate keys, YAML 1.2 booleans, exit 2."""
    c = project / "c.yaml"
    c.write_text(f"data:\n  mixture:\n    - {{path: {project / 'a.jsonl'}}}\n{body}")
    r = invoke("preview", "--task", "sft", "--data", str(c))
    assert isinstance(r.exception, ConfigError) and r.exception.exit_code == 2, (r.output, r.exception)
    for piece in says:
        assert piece.format(c=c) in str(r.exception), str(r.exception)


def test_no_inputs_is_a_usage_error():
    r = invoke("preview", "--task", "sft")
    assert isinstance(r.exception, UsageError)
    r = invoke("preview", "--task", "kto", "--data", "x.yaml")
    assert isinstance(r.exception, UsageError)


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_build_is_byte_identical_cached_and_atomic(project):
    args = ["--task", "sft", "--data", str(project / "data.yaml"), "--tokenizer", str(project / "tok")]
    first = as_json("build", *args, "--output", str(project / "out1"))
    assert first["cached"] is False
    assert first["splits"]["train"]["rows"] == 50 and first["splits"]["test"]["rows"] == 5
    # the same inputs in a fresh process (other hash seed) give the same bytes
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONHASHSEED="123")
    code = f"from {APP_MODULE} import app; app({[*PREFIX, 'build', *args, '--output', str(project / 'out2')]!r})"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert _files(project / "out1") == _files(project / "out2")
    manifest = json.loads((project / "out1" / "manifest.json").read_text())
    assert manifest["seed"] == 42 and manifest["task"] == "sft"
    assert [s["rows"] for s in manifest["sources"]] == [{"train": 30, "test": 0}, {"train": 20, "test": 0}, {"train": 0, "test": 5}]
    assert manifest["sources"][0]["files"][0]["sha256"] and manifest["derived_columns"] == ["text"]
    assert manifest["chat_template"]["origin"] == "tokenizer"
    assert not [p for p in project.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    # cached: same key, nothing rewritten, fast
    (train_file,) = (project / "out1").glob("train-*.parquet")
    mtime = train_file.stat().st_mtime_ns
    again = as_json("build", *args, "--output", str(project / "out1"))
    assert again["cached"] is True and again["key"] == first["key"]
    assert again["seconds"] < 2.0
    assert train_file.stat().st_mtime_ns == mtime
    # other inputs into the same dir: refused, then replaced with --overwrite
    r = invoke("build", *args, "--data.mix_seed=5", "--output", str(project / "out1"))
    assert isinstance(r.exception, UsageError) and "a mix build of different inputs" in str(r.exception)
    third = as_json("build", *args, "--data.mix_seed=5", "--output", str(project / "out1"), "--overwrite")
    assert third["cached"] is False and third["key"] != first["key"]
    # a non-empty directory that is not a build
    (project / "junk").mkdir()
    (project / "junk" / "x.txt").write_text("keep me")
    r = invoke("build", *args, "--output", str(project / "junk"))
    assert isinstance(r.exception, UsageError) and "not empty and not a mix build" in str(r.exception)
    assert (project / "junk" / "x.txt").read_text() == "keep me"


def test_cached_rerun_notices_same_size_edits_and_damaged_outputs(project):
    args = ["--task", "sft", "--data", str(project / "data.yaml"), "--tokenizer", str(project / "tok")]
    first = as_json("build", *args, "--output", str(project / "m"))
    # same size, different content: the stat signature changes, the file is hashed again
    text = (project / "t.jsonl").read_text()
    (project / "t.jsonl").write_text(text.replace("reply", "rePly", 1))
    r = invoke("build", *args, "--output", str(project / "m"))
    assert isinstance(r.exception, UsageError) and "different inputs" in str(r.exception)
    (project / "t.jsonl").write_text(text)
    assert as_json("build", *args, "--output", str(project / "m"), "--overwrite")["key"] == first["key"]
    # a truncated output file of the same inputs: rebuilt without asking
    (shard,) = (project / "m").glob("test-*.parquet")
    shard.write_bytes(shard.read_bytes()[:100])
    again = as_json("build", *args, "--output", str(project / "m"))
    assert again["cached"] is False and again["splits"] == first["splits"]


def test_a_build_is_a_source_and_a_changed_input_rebuilds(project):
    args = ["--task", "sft", "--data", str(project / "data.yaml"), "--tokenizer", str(project / "tok")]
    as_json("build", *args, "--output", str(project / "mix"))
    (project / "again.yaml").write_text(
        f"data:\n  mixture:\n    - {{path: {project / 'mix'}}}\n    - {{path: {project / 'mix'}, split: test}}\n"
    )
    out = as_json("preview", "--task", "sft", "--data", str(project / "again.yaml"), "--samples", "0")
    assert out["splits"]["train"]["rows"] == 50 and out["splits"]["test"]["rows"] == 5
    from alignkit.config.data import DataConfig
    from alignkit.data.mixer import mix

    res = mix(DataConfig(mixture=[{"path": str(project / "mix")}]), "sft")
    assert res.tables["train"].column_names == ["messages"]  # the rendered text is not carried along
    # editing a source file changes the key: the next build is not a cache hit
    with open(project / "b.jsonl", "a") as fh:
        fh.write(json.dumps(sft("question b-new", "new")) + "\n")
    r = invoke("build", *args, "--output", str(project / "mix"))
    assert isinstance(r.exception, UsageError)


def test_big_splits_are_sharded_in_parallel_and_read_back_in_order(project, monkeypatch):
    import pyarrow.parquet as pq

    from alignkit.config.data import DataSource
    from alignkit.data import build as build_mod
    from alignkit.data.sources import load_source

    monkeypatch.setattr(build_mod, "SHARD_ROWS", 16)
    args = ["--task", "sft", "--data", str(project / "data.yaml"), "--tokenizer", str(project / "tok"), "--data.preprocessing_num_workers=2"]
    as_json("build", *args, "--output", str(project / "sharded"))
    m = json.loads((project / "sharded" / "manifest.json").read_text())
    assert [(f["file"], f["rows"]) for f in m["splits"]["train"]["files"]] == [
        ("train-00000-of-00004.parquet", 12), ("train-00001-of-00004.parquet", 13),
        ("train-00002-of-00004.parquet", 12), ("train-00003-of-00004.parquet", 13),
    ]
    monkeypatch.setattr(build_mod, "SHARD_ROWS", 1000)
    as_json("build", *args, "--output", str(project / "one"))
    (one,) = (project / "one").glob("train-*.parquet")
    whole = pq.read_table(str(one))
    back = load_source(DataSource(path=str(project / "sharded"))).table
    assert back.column_names == ["messages"]  # the derived text column is left out
    assert back.column("messages").to_pylist() == whole.column("messages").to_pylist()


def test_dpo_build_renders_prompt_and_continuations(project):
    rows = [{"prompt": f"q{i}", "chosen": "good answer", "rejected": "bad"} for i in range(6)]
    write_jsonl(project / "prefs.jsonl", rows)
    (project / "dpo.yaml").write_text(f"data:\n  mixture:\n    - {{path: {project / 'prefs.jsonl'}}}\n  test_split_size: 2\n")
    out = as_json("build", "--task", "dpo", "--data", str(project / "dpo.yaml"), "--tokenizer", str(project / "tok"),
                  "--output", str(project / "dpo-mix"))
    assert out["splits"]["train"]["rows"] == 4 and out["splits"]["test"]["rows"] == 2
    import pyarrow.parquet as pq

    t = pq.read_table(str(project / "dpo-mix" / "train-00000-of-00001.parquet")).to_pylist()
    assert t[0]["text_prompt"] == f"<|user|>\n{t[0]['prompt'][0]['content']}</s>\n<|assistant|>\n"
    assert t[0]["text_chosen"] == "good answer</s>\n" and t[0]["text_rejected"] == "bad</s>\n"


def _trl_dpo_oracle(rows: list[dict], tok, max_length: int, mode: str, tmp) -> dict:
    """Counts from TRL 1.16 itself: DPOTrainer._prepare_dataset (tokenizing, dropping) and the collator."""
    from types import SimpleNamespace

    from datasets import Dataset
    from trl import DPOConfig
    from trl.trainer.dpo_trainer import DataCollatorForPreference, DPOTrainer

    args = DPOConfig(output_dir=str(tmp), max_length=max_length, truncation_mode=mode, bf16=False, use_cpu=True, report_to=[])
    kept = DPOTrainer._prepare_dataset(SimpleNamespace(_tokenizer=tok), Dataset.from_list(rows), tok, args, "train")
    collate = DataCollatorForPreference(pad_token_id=tok.pad_token_id, max_length=max_length, truncation_mode=mode)
    truncated = no_prompt = 0
    for ex in kept:
        batch = collate([ex])
        lengths = batch["attention_mask"].sum(dim=1).tolist()  # [prompt+chosen, prompt+rejected] as trained on
        full = [len(ex["prompt_ids"]) + len(ex["chosen_ids"]), len(ex["prompt_ids"]) + len(ex["rejected_ids"])]
        truncated += lengths != full
        prompt_left = (batch["attention_mask"] - batch["completion_mask"]).sum(dim=1).tolist()
        no_prompt += min(prompt_left) == 0
    return {"dropped": len(rows) - len(kept), "truncated": truncated, "no_prompt_left": no_prompt}


def test_dpo_preview_reports_what_trl_drops_and_truncates(tmp_path):
    """The DPO preview's counts equal what TRL 1.16's DPOTrainer does to the same rows at max_length."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from alignkit.config.data import DataConfig
    from alignkit.data.chat import builtin_template
    from alignkit.data.mixer import mix

    words = [f"w{i}" for i in range(40)]
    rows = []
    for i in range(24):
        prompt = " ".join(words[(i + k) % 40] for k in range(1 + (i * 7) % 23))  # 1..23 words
        chosen = " ".join(words[(2 * i + k) % 40] for k in range(1 + (i * 5) % 29))  # 1..29 words
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": "no"})
    write_jsonl(tmp_path / "prefs.jsonl", rows)
    (tmp_path / "dpo.yaml").write_text(f"data:\n  mixture:\n    - {{path: {tmp_path / 'prefs.jsonl'}}}\n")
    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = [" ".join(words), "<|user|> <|assistant|> <|system|> no", "< | > user assistant system"]
    core.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["<unk>", "<s>", "</s>", "<pad>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    tok.chat_template = builtin_template("zephyr")
    tok.save_pretrained(str(tmp_path / "tok"))
    assert tok.unk_token_id not in tok.apply_chat_template(
        [{"role": "user", "content": rows[0]["prompt"]}], tokenize=True, return_dict=True)["input_ids"]

    mixed = mix(DataConfig.model_validate({"mixture": [{"path": str(tmp_path / "prefs.jsonl")}]}), "dpo").tables["train"].to_pylist()
    max_length = 24
    for mode in ("keep_start", "keep_end"):
        out = as_json("preview", "--task", "dpo", "--data", str(tmp_path / "dpo.yaml"), "--tokenizer", str(tmp_path / "tok"),
                      "--max-length", str(max_length), "--truncation-mode", mode, "--samples", "0")
        assert out["tokens"]["truncation_mode"] == mode
        got = out["tokens"]["splits"]["train"]["trl"]
        want = _trl_dpo_oracle(mixed, tok, max_length, mode, tmp_path / "trl")
        if mode == "keep_start":
            assert 0 < want["dropped"] and 0 < want["truncated"] and want["dropped"] + want["truncated"] < len(rows)
            assert (got["dropped"], got["truncated"]) == (want["dropped"], want["truncated"])
            assert got["dropped_pct"] == round(100 * want["dropped"] / len(rows), 2)
        else:
            assert want["dropped"] == 0 and 0 < want["no_prompt_left"] < want["truncated"]
            assert (got["dropped"], got["truncated"], got["no_prompt_left"]) == (0, want["truncated"], want["no_prompt_left"])
        # the human output says it in words
        r = ok("preview", "--task", "dpo", "--data", str(tmp_path / "dpo.yaml"), "--tokenizer", str(tmp_path / "tok"),
               "--max-length", str(max_length), "--truncation-mode", mode, "--samples", "0")
        text = " ".join(r.stdout.split())
        if mode == "keep_start":
            assert f"drops {want['dropped']} of {len(rows)} rows whose prompt alone has {max_length} tokens or more" in text
            assert f"cuts the end of the completions of {want['truncated']} more" in text
        else:
            assert f"cuts the start of the prompt of {want['truncated']} of {len(rows)} rows" in text
    r = invoke("preview", "--task", "dpo", "--data", str(tmp_path / "dpo.yaml"), "--truncation-mode", "keep_middle")
    assert isinstance(r.exception, ConfigError) and "--truncation-mode" in str(r.exception)


def test_decontaminate_report_drop_and_build_option(project):
    write_jsonl(project / "question.jsonl", [{"question_id": 81, "turns": [MT_Q]}])
    rows = [sft(f"question c{i}", "ok") for i in range(20)]
    rows[4] = sft(MT_Q, "ok")
    write_jsonl(project / "c.jsonl", rows)
    (project / "c.yaml").write_text(f"data:\n  mixture:\n    - {{path: {project / 'c.jsonl'}, weight: 2}}\n")
    base = ["--task", "sft", "--data", str(project / "c.yaml")]
    rep = as_json("decontaminate", *base, "--eval", str(project / "question.jsonl"))
    assert rep["rows_flagged"] == 1 and rep["copies_flagged"] == 2 and rep["dropped"] is False
    assert rep["matches"][0]["row"] == 4 and rep["matches"][0]["eval"] == "question.jsonl:1 (81/turn1)"
    assert rep["per_source"] == {f"{project / 'c.jsonl'} (train)": {"rows_flagged": 1, "copies": 2}}
    r = ok("decontaminate", *base, "--eval", str(project / "question.jsonl"))
    assert "flagged training rows per source" in r.stdout
    r = invoke("decontaminate", *base, "--eval", str(project / "question.jsonl"), "--drop")
    assert isinstance(r.exception, UsageError) and "--output" in str(r.exception)
    dropped = as_json("decontaminate", *base, "--eval", str(project / "question.jsonl"), "--drop", "--output", str(project / "clean"))
    assert dropped["dropped"] is True
    m = json.loads((project / "clean" / "manifest.json").read_text())
    assert m["splits"]["train"]["rows"] == 38
    assert m["decontamination"]["rows_flagged"] == 1 and m["decontamination"]["eval_files"][0]["sha256"]
    b = as_json("build", *base, "--decontaminate", str(project / "question.jsonl"), "--output", str(project / "clean2"), "--no-render")
    assert b["splits"]["train"]["rows"] == 38 and b["decontamination"]["copies_flagged"] == 2


def test_both_handbook_forms_end_up_with_the_documented_counts(project):
    """Handbook configs (translated by the config layer) mixed by the one documented arithmetic."""
    hb = project / "hb"
    (hb / "data").mkdir(parents=True)
    write_jsonl(hb / "data" / "train_sft.jsonl", [sft(f"q{i}", "a") for i in range(29)])
    write_jsonl(hb / "data" / "test_sft.jsonl", [sft(f"t{i}", "a") for i in range(7)])
    tok = project / "tok"
    (project / "old.yaml").write_text(
        f"model_name_or_path: {tok}\ndataset_mixer:\n  {hb}: 0.5\ndataset_splits: [train_sft, test_sft]\n"
    )
    old = as_json("preview", "--task", "sft", "--config", str(project / "old.yaml"), "--samples", "0")
    assert [(s["split"], s["weight"], s["rows"]) for s in old["splits"]["train"]["sources"]] == [("train_sft", 0.5, 14)]
    assert [(s["split"], s["weight"], s["rows"]) for s in old["splits"]["test"]["sources"]] == [("test_sft", None, 7)]
    (project / "new.yaml").write_text(
        f"model_name_or_path: {tok}\n"
        "dataset_mixture:\n"
        f"  datasets:\n    - {{id: {hb}, split: train_sft, columns: [messages], weight: 0.7}}\n"
        "  seed: 7\n  test_split_size: 0.1\n"
    )
    new = as_json("preview", "--task", "sft", "--config", str(project / "new.yaml"), "--samples", "0")
    # floor(0.7 * 29) = 20 rows, then ceil(0.1 * 20) = 2 carved out for eval
    assert new["seed"] == 7 and new["test_from"] == "carved"
    assert new["splits"]["train"]["rows"] == 18 and new["splits"]["test"]["rows"] == 2


def test_preview_from_a_recipe(tiny_assets, load_jsonl):
    out = as_json("preview", "--recipe", "tiny", "--task", "sft", "--samples", "1")
    n_train = len(load_jsonl(tiny_assets.root / "data" / "sft_train.jsonl"))
    n_test = len(load_jsonl(tiny_assets.root / "data" / "sft_test.jsonl"))
    assert out["splits"]["train"]["rows"] == n_train
    assert out["splits"]["test"]["rows"] == n_test
    assert out["tokens"]["max_length"] == 64
    assert out["tokens"]["splits"]["train"]["rows_measured"] == n_train
    assert out["samples"][0]["text"].startswith("<|user|>")
