"""The bad-input corpus: every case runs the CLI, offline, and checks what a user sees: exit 2 for usage/config/data errors (1 for a runtime failure the user cannot fix
in a config: a judge or model endpoint that fails), the key/file/row/endpoint named, the fix given, and no
traceback.

Data errors are checked through `alignkit mix preview` (the fast path) and through `alignkit sft|dpo`,
whose preflight refuses them before anything is written or launched.

Most cases run in this process (tests/helpers.invoke_cli: the entry point's own error handling, without an
interpreter start each); the cases in PROCESS, at least one per section, run as a real `python -m alignkit`
process (tests/helpers.run_cli), so the two ways are seen to agree.
"""

from __future__ import annotations

import json
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.eval_support import FakeJudge, write_mtbench_files
from tests.helpers import flat, invoke_cli, run_cli


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]  # str.format()ed with the corpus paths (see `corpus`)
    says: tuple[str, ...]  # the key / file / row / endpoint, and what is wrong
    fix: str  # a piece of the fix
    code: int = 2
    typer: bool = False  # a usage error from typer itself ("Try 'alignkit ... --help'"), not an alignkit Problem
    forbid: tuple[str, ...] = field(default=())  # must not appear (e.g. the internal-error banner)


def C(id, args, says, fix, **kw) -> Case:  # noqa: N802 - reads as a table
    return Case(id, tuple(args), tuple(says), fix, **kw)


VALIDATE = ["validate", "--task", "sft", "--config"]
TINY = ["validate", "--task", "sft", "--recipe", "tiny", "--profile", "cpu"]
TINY_DPO = ["validate", "--task", "dpo", "--recipe", "tiny", "--profile", "cpu"]
DRY = ["sft", "--recipe", "tiny", "--profile", "cpu", "--dry-run"]
RUN = ["sft", "--recipe", "tiny", "--profile", "cpu", "--max_steps=1", "--report_to=none"]
PREVIEW = ["mix", "preview", "--task", "sft", "--tokenizer", "{model}", "--data"]
PREVIEW_DPO = ["mix", "preview", "--task", "dpo", "--tokenizer", "{model}", "--data"]
SUBMIT = ["slurm", "submit", "--task", "sft", "--recipe", "tiny", "--profile", "cpu", "-G", "1", "--dry-run",
          "--output_dir={d}/slurm-out"]
MT = ["eval", "mt-bench", "--model", "tiny-served", "--judge-model", "judge-x", "--questions", "{d}/mt/question.jsonl",
      "--references", "{d}/mt/reference.jsonl", "--judge-prompts", "{d}/mt/judge_prompts.jsonl",
      "--max-new-tokens", "4", "--limit", "1", "--max-retries", "0"]

CASES = [
    # ---------------------------------------------------------------- YAML files
    C("yaml-syntax-error", [*VALIDATE, "{d}/syntax.yaml"], ["syntax.yaml:5", "YAML error", "mapping values are not allowed"], "fix the YAML syntax"),
    C("yaml-tabs", [*VALIDATE, "{d}/tabs.yaml"], ["tabs.yaml:4"], "indent with spaces"),
    C("yaml-duplicate-key", [*VALIDATE, "{d}/dup.yaml"], ["dup.yaml:3", "'model_name_or_path' appears twice"],
      "keep one 'model_name_or_path' (the first is on line 2)"),
    C("yaml-not-a-mapping", [*VALIDATE, "{d}/list.yaml"], ["list.yaml", "expected a mapping of settings, got list"],
      "write `key: value` lines"),
    C("yaml-not-utf8", [*VALIDATE, "{d}/binary.yaml"], ["binary.yaml", "not UTF-8 text"], "save it as UTF-8"),
    C("yaml-python-tag", [*VALIDATE, "{d}/pytag.yaml"], ["pytag.yaml:1", "python/object/apply"],
      "configs are plain YAML, read with a safe loader"),
    C("yaml-is-a-directory", [*VALIDATE, "{d}"], ["is a directory, not a YAML file"], "pass the path of a .yaml file"),
    C("yaml-missing-file", [*VALIDATE, "{d}/nope.yaml"], ["nope.yaml", "file not found"], "check the path"),
    C("unknown-key-flat", [*VALIDATE, "{d}/unknown_flat.yaml"], ["lerning_rate", "unknown key", "unknown_flat.yaml:3"],
      "did you mean 'learning_rate'"),
    C("unknown-key-in-section", [*VALIDATE, "{d}/unknown_nested.yaml"],
      ["train.num_train_epoch", "unknown key", "unknown_nested.yaml:4"], "did you mean 'num_train_epochs'"),
    C("unknown-key-in-source", [*VALIDATE, "{d}/src_field.yaml"], ["data.mixture.0.wieght", "unknown key"],
      "did you mean 'weight'"),
    C("section-not-a-mapping", [*VALIDATE, "{d}/section_scalar.yaml"], ["train", "expected a mapping of train settings"],
      "followed by indented `field: value` lines"),
    C("missing-model", [*VALIDATE, "{d}/nomodel.yaml"], ["model.model_name_or_path", "is required"],
      "set model.model_name_or_path"),
    C("task-as-config-key", [*VALIDATE, "{d}/task_key.yaml"], ["task", "is chosen on the command line"],
      "use --task instead"),
    C("hub-token-in-config", [*VALIDATE, "{d}/hub_token.yaml"], ["hub_token", "is not set here"], "export HF_TOKEN"),
    C("mixture-weight-zero", [*VALIDATE, "{d}/weight0.yaml"], ["data.mixture.0.weight", "greater than 0"],
      "docs/data.md"),
    C("mixture-weight-negative", [*VALIDATE, "{d}/weight_neg.yaml"], ["data.mixture.0.weight", "(got -0.5)"],
      "docs/data.md"),
    C("mixture-source-without-location", [*VALIDATE, "{d}/noloc.yaml"], ["data.mixture.0", "exactly one of 'id'"],
      "docs/data.md"),
    C("mixture-source-with-id-and-path", [*VALIDATE, "{d}/bothloc.yaml"], ["data.mixture.0", "exactly one of 'id'"],
      "docs/data.md"),
    C("test-split-size-out-of-range", [*VALIDATE, "{d}/split_size.yaml"], ["data", "test_split_size"],
      "alignkit config fields"),
    C("mixture-test-split-size-and-test-source", [*VALIDATE, "{d}/split_and_test.yaml"],
      ["data", "already has a test source"], "alignkit config fields"),
    # ---------------------------------------------------------------- types and ranges (overrides)
    C("lr-not-a-number", [*TINY, "--learning_rate=abc"], ["train.learning_rate", "valid number", "(got 'abc')"],
      "give train.learning_rate a valid value"),
    C("lr-zero", [*TINY, "--learning_rate=0"], ["train.learning_rate", "greater than 0", "override --learning_rate"],
      "set train.learning_rate to a value greater than 0"),
    C("lr-negative", [*TINY, "--learning_rate=-2e-5"], ["train.learning_rate", "(got -2e-05)"],
      "set train.learning_rate to a value greater than 0"),
    C("epochs-negative", [*TINY, "--num_train_epochs=-1"], ["train.num_train_epochs"], "greater than 0"),
    C("bool-not-a-bool", [*TINY, "--packing=maybe"], ["train.packing", "valid boolean"],
      "alignkit config fields --task sft --search packing"),
    C("literal-not-allowed", [*TINY, "--eval_strategy=sometimes"], ["train.eval_strategy", "'sometimes'"],
      "alignkit config fields"),
    C("list-not-a-list", [*TINY, "--lora.target_modules=5"], ["lora.target_modules", "valid list"], "'all-linear'",
      forbid=("list[str]",)),
    C("beta-zero", [*TINY_DPO, "--beta=0"], ["train.beta", "greater than 0"], "set train.beta to a value greater than 0"),
    C("beta-negative", [*TINY_DPO, "--beta=-0.1"], ["train.beta", "(got -0.1)"], "greater than 0"),
    C("lora-r-zero", ["validate", "--task", "sft", "--recipe", "tiny", "--profile", "lora,cpu", "--lora.r=0"],
      ["lora.r", "(got 0)"], "set lora.r to a value at least 1"),
    C("dpo-key-in-sft", [*TINY, "--beta=0.1"], ["beta", "is a DPO setting"], "remove it from this run"),
    C("unknown-override", [*TINY, "--lerning_rate=1e-5"], ["lerning_rate", "unknown key"],
      "did you mean 'learning_rate'"),
    C("unknown-source-key-override", [*TINY, "--data.mix_sed=3"], ["data.mix_sed", "unknown key"],
      "did you mean 'mix_seed'"),
    # ---------------------------------------------------------------- the command line itself
    C("override-without-value", [*DRY, "--learning_rate"], ["--learning_rate", "override has no value"],
      "write --learning_rate=VALUE"),
    C("override-empty-key", [*DRY, "--=3"], ["--=3", "is not a valid key"], "write --key=value"),
    C("override-double-dot", [*DRY, "--lora..r=3"], ["--lora..r=3", "is not a valid key"], "--section.key=value"),
    C("override-trailing-dot", [*DRY, "--train.=3"], ["--train.=3", "is not a valid key"], "--section.key=value"),
    C("single-dash-option", [*DRY, "-x"], ["-x", "unknown option"], "overrides are written --key=value"),
    C("stray-positional", [*DRY, "banana"], ["banana", "unexpected argument"], "pass a config file (.yaml)"),
    C("positional-yaml-missing", [*DRY, "{d}/gone.yaml"], ["gone.yaml", "file not found"], "check the path"),
    C("typer-bad-int", ["sft", "--recipe", "tiny", "--num-gpus", "two", "--dry-run"], ["--num-gpus", "valid integer"],
      "Try 'alignkit sft", typer=True),
    C("mix-preview-no-data", ["mix", "preview"], ["alignkit mix", "no data given"], "use --recipe NAME"),
    # ---------------------------------------------------------------- recipes, profiles, cluster shape
    C("unknown-recipe", ["sft", "--recipe", "zephyr", "--dry-run"], ["--recipe", "unknown recipe 'zephyr'"],
      "did you mean 'zephyr-7b-beta'? available: constitutional-ai,"),
    C("no-recipe-no-config", ["sft", "--dry-run"], ["--recipe", "no recipe and no config file"], "pass --recipe NAME"),
    C("unknown-profile", ["sft", "--recipe", "tiny", "--profile", "qlora4", "--dry-run"],
      ["--profile", "unknown profile 'qlora4'"], "available: cpu, full, lora, lora-zero3, qlora"),
    C("two-adaptation-profiles", ["sft", "--recipe", "tiny", "--profile", "lora,qlora", "--dry-run"],
      ["--profile", "lora and qlora"], "keep one of them"),
    C("modifier-before-profile", ["sft", "--recipe", "tiny", "--profile", "cpu,qlora", "--dry-run"],
      ["--profile", "a modifier comes before qlora"], "--profile qlora,cpu"),
    C("gpus-cannot-keep-global-batch", [*DRY, "--num-gpus", "3"],
      ["launch.global_batch_size", "16 cannot be split into 3 processes", "tiny/sft/full.yaml:33"],
      "--launch.global_batch_size=null"),
    C("micro-batch-cannot-keep-global-batch", [*DRY, "--per_device_train_batch_size=5"],
      ["launch.global_batch_size", "x 5 per device"], "--per_device_train_batch_size in [1, 2, 4, 8, 16]",
      forbid=("in []",)),
    C("zero-gpus", [*DRY, "--num-gpus", "0"], ["--num-gpus", "must be at least 1"], "pass --num-gpus N"),
    C("zero-nodes", [*DRY, "--num-nodes", "0"], ["--num-nodes", "must be at least 1"], "pass --num-nodes N"),
    # ---------------------------------------------------------------- the output dir (real runs, refused up front)
    C("output-dir-under-a-file", [*RUN, "--output_dir={d}/a-file/run"], ["train.output_dir", "Not a directory"],
      "choose a writable --output_dir"),
    C("output-dir-is-a-file", [*RUN, "--output_dir={d}/a-file"], ["train.output_dir", "a-file is a file"],
      "choose a directory path"),
    C("output-dir-read-only-fs", [*RUN, "--output_dir=/sys/kernel"], ["train.output_dir", "/sys/kernel"],
      "choose a writable --output_dir", forbid=("internal error",)),
    C("output-dir-not-writable", [*RUN, "--output_dir=/proc/self"], ["train.output_dir", "/proc/self"],
      "choose a writable --output_dir"),
    C("output-dir-holds-other-files", [*RUN, "--output_dir={d}/busy-dir"], ["busy-dir", "holds no alignkit run"],
      "choose an empty or new --output_dir, or pass --overwrite"),
    # ---------------------------------------------------------------- data (mix preview)
    C("data-file-missing", [*PREVIEW, "{d}/data_missing.yaml"], ["missing.jsonl", "no such file"], "check the path"),
    C("data-invalid-json-line", [*PREVIEW, "{d}/data_badline.yaml"], ["badline.jsonl:7", "invalid JSON"],
      "fix or remove that line"),
    C("data-truncated-parquet", [*PREVIEW, "{d}/data_trunc.yaml"], ["trunc.parquet", "cannot read .parquet"],
      "check the file's format"),
    C("data-empty-file", [*PREVIEW, "{d}/data_empty.yaml"], ["empty.jsonl", "is empty: no rows"],
      "give a file with rows"),
    C("data-missing-column", [*PREVIEW, "{d}/data_nocol.yaml"], ["nocol.jsonl", "has no 'messages' column",
                                                               "columns: text"], "rename the column"),
    C("data-bad-role", [*PREVIEW, "{d}/data_badrole.yaml"], ["badrole.jsonl (train) row 5", "role is 'robot'"],
      "fix the rows, or set data.skip_invalid: true"),
    C("data-ends-with-user", [*PREVIEW, "{d}/data_noasst.yaml"], ["noasst.jsonl (train) row 3",
                                                                "must end with an assistant turn"], "skip_invalid"),
    C("data-messages-not-a-list", [*PREVIEW, "{d}/data_msgstr.yaml"], ["msgstr.jsonl (train) row 0", "is a str"],
      "fix the rows"),
    C("data-content-types-differ", [*PREVIEW, "{d}/data_msgnum.yaml"], ["msgnum.jsonl", "inconsistent types"],
      "same fields with the same types"),
    C("data-columns-not-there", [*PREVIEW, "{d}/data_cols.yaml"], ["good.jsonl", "'columns' names 'nope'"],
      "list only existing columns"),
    C("data-hub-offline", [*PREVIEW, "{d}/data_hub.yaml"], ["HuggingFaceH4/ultrachat_200k", "cannot load from the Hub"],
      "give it as 'path:'"),
    C("data-file-with-other-sections", [*PREVIEW, "{d}/data_extra.yaml"], ["data_extra.yaml", "besides 'data'"],
      "keep only 'data:'"),
    C("data-yaml-missing", [*PREVIEW, "{d}/no_such_data.yaml"], ["--data", "no such file"], "check the path"),
    C("dpo-missing-chosen", [*PREVIEW_DPO, "{d}/data_nochosen.yaml"], ["nochosen.jsonl", "has no 'chosen' column"],
      "DPO needs 'chosen' and 'rejected'"),
    C("dpo-different-prompts", [*PREVIEW_DPO, "{d}/data_dpodiff.yaml"], ["dpodiff.jsonl (train) row 2",
                                                                       "share no prompt"], "skip_invalid"),
    C("dpo-identical-pair", [*PREVIEW_DPO, "{d}/data_dposame.yaml"], ["dposame.jsonl (train) row 1",
                                                                    "chosen and rejected are identical"], "fix the rows"),
    C("no-chat-template-no-fallback", ["mix", "preview", "--task", "sft", "--tokenizer", "{d}/no-template",
                                       "--data", "{d}/data_nofallback.yaml"],
      ["data.chat_template", "has no chat template", "'none'"], "set data.chat_template"),
    C("chat-template-unknown", [*PREVIEW, "{d}/data_badtemplate.yaml"], ["data.chat_template", "'nosuch'"],
      "zephyr, chatml, llama3"),
    C("mix-task-unknown", ["mix", "preview", "--task", "ppo", "--data", "{d}/data_good.yaml"], ["--task", "'ppo'"],
      "use --task sft or --task dpo"),
    # a --data file is read like every config file: line numbers, duplicate keys, YAML 1.2 booleans, typed errors
    C("data-yaml-duplicate-key", [*PREVIEW, "{d}/data_dupkey.yaml"], ["data_dupkey.yaml:5", "key 'mix_seed' appears twice"],
      "keep one 'mix_seed' (the first is on line 4)"),
    C("data-yaml-11-boolean", [*PREVIEW, "{d}/data_yes_no.yaml"], ["data.mix_seed", "(got 'no')", "data_yes_no.yaml:4"],
      "give data.mix_seed a valid value"),
    C("data-yaml-bad-type", [*PREVIEW, "{d}/data_badtype.yaml"], ["data.mixture.0.weight", "(got 'lots')",
                                                                  "data_badtype.yaml:2"], "see docs/data.md"),
    # ---------------------------------------------------------------- the same through `alignkit sft`: refused before launch
    C("sft-data-bad-role", [*RUN, "--output_dir={d}/o1", "--data.mixture=[{{path: {d}/badrole.jsonl}}]",
                            "--eval_strategy=no"], ["badrole.jsonl (train) row 5", "role is 'robot'"], "skip_invalid",
      forbid=("starting sft",)),
    C("sft-data-invalid-json-line", [*RUN, "--output_dir={d}/o2", "--data.mixture=[{{path: {d}/badline.jsonl}}]",
                                     "--eval_strategy=no"], ["badline.jsonl:7", "invalid JSON"], "fix or remove that line",
      forbid=("starting sft",)),
    C("sft-data-truncated-parquet", [*RUN, "--output_dir={d}/o3", "--data.mixture=[{{path: {d}/trunc.parquet}}]",
                                     "--eval_strategy=no"], ["trunc.parquet"], "check the file's format",
      forbid=("starting sft",)),
    C("sft-empty-train-split", [*RUN, "--output_dir={d}/o4", "--data.mixture=[{{path: {d}/good.jsonl, split: test}}]",
                                "--eval_strategy=no"], ["data.mixture", "the train split has no rows"],
      "add a train source with rows", forbid=("starting sft",)),
    C("dpo-data-different-prompts", ["dpo", "--recipe", "tiny", "--profile", "cpu", "--max_steps=1",
                                     "--output_dir={d}/o5", "--model_name_or_path={model}",
                                     "--data.mixture=[{{path: {d}/dpodiff.jsonl}}]", "--eval_strategy=no"],
      ["dpodiff.jsonl (train) row 2", "share no prompt"], "skip_invalid", forbid=("starting dpo",)),
    C("sft-model-without-weights", [*RUN, "--output_dir={d}/o6", "--model_name_or_path={d}/no-weights"],
      ["model.model_name_or_path", "no-weights has no model weights"], "save_pretrained", forbid=("starting sft",)),
    C("sft-model-dir-missing", [*RUN, "--output_dir={d}/o7", "--model_name_or_path=./no-such-model"],
      ["model.model_name_or_path", "no-such-model: no such directory"], "use a Hub id", forbid=("starting sft",)),
    C("sft-model-without-tokenizer", [*RUN, "--output_dir={d}/o8", "--model_name_or_path={d}/no-tokenizer"],
      ["model.model_name_or_path", "no-tokenizer has no tokenizer"], "tokenizer.save_pretrained",
      forbid=("starting sft",)),
    C("sft-no-chat-template-no-fallback", [*RUN, "--output_dir={d}/o9", "--model_name_or_path={d}/no-template",
                                           "--data.chat_template_fallback=none"],
      ["data.chat_template", "has no chat template", "'none'"], "set data.chat_template", forbid=("starting sft",)),
    C("sft-chat-template-unknown", [*RUN, "--output_dir={d}/o10", "--data.chat_template=nosuch"],
      ["data.chat_template", "'nosuch'"], "zephyr, chatml, llama3", forbid=("starting sft",)),
    # ---------------------------------------------------------------- models and other inputs
    C("eval-model-without-weights", ["eval", "loss", "--model", "{d}/no-weights", "--data", "{d}/good.jsonl",
                                     "--limit", "2"], ["no-weights", "cannot load the model"],
      "config.json and weights"),
    C("eval-data-invalid-json-line", ["eval", "loss", "--model", "{model}", "--data", "{d}/badline.jsonl"],
      ["badline.jsonl:7", "not JSON"], "fix the file given to --data"),
    C("merge-not-an-adapter", ["merge", "{d}/no-weights", "--output", "{d}/merged"],
      ["no-weights", "not a LoRA/QLoRA adapter"], "lora/qlora profile"),
    C("report-missing-dir", ["report", "{d}/no-run"], ["no-run", "not a directory"], "give run output directories"),
    C("report-damaged-trainer-state", ["report", "{d}/run-damaged", "--output", "{d}/rep1"],
      ["run-damaged/trainer_state.json", "unreadable trainer state"], "delete the damaged file"),
    C("report-trainer-state-not-an-object", ["report", "{d}/run-list", "--output", "{d}/rep2"],
      ["run-list/trainer_state.json", "is not a trainer state"], "delete the damaged file",
      forbid=("internal error",)),
    C("recipe-show-unknown", ["recipes", "show", "zefir"], ["--recipe", "unknown recipe 'zefir'"], "available:"),
    C("recipe-copy-onto-a-file", ["recipes", "copy", "tiny", "{d}/a-file"], ["a-file", "is a file"],
      "give a directory"),
    C("config-fields-unknown-task", ["config", "fields", "--task", "ppo"], ["--task", "unknown task 'ppo'"],
      "use --task sft or --task dpo or --task orpo or --task cpt"),
    # ---------------------------------------------------------------- Slurm fields with hostile strings
    C("slurm-partition-newline", [*SUBMIT, "--partition", "gpu\n#SBATCH --uid=0"], ["--partition", "contains a newline"],
      "must fit on one line"),
    C("slurm-time-injection", [*SUBMIT, "--time", "1:00:00; reboot"], ["--time", "not a Slurm time limit"],
      "HH:MM:SS"),
    C("slurm-sbatch-arg-newline", [*SUBMIT, "--sbatch-arg", "--mem=1G\nrm -rf ~"], ["--sbatch-arg #1",
                                                                                   "contains a newline"],
      "must fit on one line"),
    C("slurm-job-name-newline", [*SUBMIT, "--job-name", "a\nb"], ["--job-name", "contains a newline"],
      "must fit on one line"),
    C("slurm-job-name-empty", [*SUBMIT, "--job-name", ""], ["--job-name", "is empty"], "pass a name"),
    C("slurm-zero-nodes", [*SUBMIT, "--nodes", "0"], ["--nodes", "must be at least 1"], "--nodes N with N >= 1"),
    C("slurm-zero-gpus", ["slurm", "submit", "--task", "sft", "--recipe", "tiny", "-G", "0", "--dry-run"],
      ["--gpus-per-node", "must be at least 1"], "processes per node"),
    C("slurm-env-setup-missing", [*SUBMIT, "--env-setup", "{d}/nope.sh"], ["--env-setup", "nope.sh is not a file"],
      "pass a shell file to source"),
    C("slurm-unknown-task", ["slurm", "submit", "--task", "rlhf", "-G", "1", "--dry-run"], ["--task", "'rlhf'"],
      "use --task sft or --task dpo"),
    # ---------------------------------------------------------------- judge and model endpoints
    C("judge-refuses", [*MT, "--model-base-url", "{gen}", "--judge-base-url", "{closed}", "--output", "{d}/e1"],
      ["{closed_host}/v1/chat/completions", "connection failed"], "check that the server is up", code=1),
    C("judge-times-out", [*MT, "--model-base-url", "{gen}", "--judge-base-url", "{slow}", "--timeout", "1",
                          "--output", "{d}/e2"], ["{slow_host}/v1/chat/completions", "timed out"],
      "raise --max-retries/--timeout", code=1),
    C("judge-http-500", [*MT, "--model-base-url", "{gen}", "--judge-base-url", "{j500}", "--output", "{d}/e3"],
      ["{j500_host}/v1/chat/completions", "HTTP 500"], "re-running the same command resumes", code=1),
    C("judge-garbage", [*MT, "--model-base-url", "{gen}", "--judge-base-url", "{garbage}", "--output", "{d}/e4"],
      ["{garbage_host}/v1/chat/completions", "not JSON"], "OpenAI-compatible /v1 API", code=1),
    C("judge-no-choices", [*MT, "--model-base-url", "{gen}", "--judge-base-url", "{nochoices}", "--output", "{d}/e5"],
      ["{nochoices_host}/v1/chat/completions", "no 'choices'"], "OpenAI-compatible /v1 API", code=1),
    C("model-endpoint-refuses", [*MT, "--model-base-url", "{closed}", "--judge-base-url", "{gen}", "--output", "{d}/e6"],
      ["{closed_host}/v1/chat/completions"], "check that the server is up", code=1),
    C("judge-key-variable-unset", [*MT, "--model-base-url", "{gen}", "--judge-base-url", "{gen}",
                                   "--judge-api-key-env", "ALIGNKIT_UNSET_KEY_VAR", "--output", "{d}/e7"],
      ["ALIGNKIT_UNSET_KEY_VAR is not set"], "export"),
    C("eval-questions-invalid-json", [*MT[:7], "{d}/bad_questions.jsonl", *MT[8:], "--model-base-url", "{gen}",
                                      "--judge-base-url", "{gen}", "--output", "{d}/e8"],
      ["bad_questions.jsonl:2"], "fix"),
]


def test_the_corpus_is_big_and_ids_are_unique():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)
    assert PROCESS <= {c.id for c in CASES}, PROCESS - {c.id for c in CASES}


# --------------------------------------------------------------------------- the files the cases point at


def _jsonl(path: Path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _data_yaml(d: Path, name: str, body: str) -> None:
    (d / name).write_text(body, encoding="utf-8")


def _source(d: Path, name: str, file: str, extra: str = "") -> None:
    _data_yaml(d, name, f"data:\n  mixture:\n    - {{path: {d / file}, split: train}}\n{extra}")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_assets):
    d = tmp_path_factory.mktemp("corpus")
    model = Path(tiny_assets.model_dir)
    head = "model:\n  model_name_or_path: some/model\n"
    files = {
        "syntax.yaml": head + "train:\n  learning_rate: 1e-5\n   seed: 3\n  max_steps: 5\n",
        "tabs.yaml": head + "train:\n\tlearning_rate: 1e-5\n",
        "dup.yaml": "model:\n  model_name_or_path: a/b\n  model_name_or_path: c/d\n",
        "list.yaml": "- a\n- b\n",
        "pytag.yaml": f'!!python/object/apply:os.system ["touch {d}/pwned"]\n',
        "unknown_flat.yaml": head + "lerning_rate: 1e-5\n",
        "unknown_nested.yaml": head + "train:\n  num_train_epoch: 3\n",
        "src_field.yaml": head + "data:\n  mixture:\n    - {path: x.jsonl, wieght: 1}\n",
        "section_scalar.yaml": head + "train: 5\n",
        "nomodel.yaml": "train:\n  learning_rate: 1.0e-5\n",
        "task_key.yaml": head + "task: dpo\n",
        "hub_token.yaml": head + "hub_token: hf_not_a_real_token_1234\n",
        "weight0.yaml": head + "data:\n  mixture:\n    - {path: x.jsonl, weight: 0}\n",
        "weight_neg.yaml": head + "data:\n  mixture:\n    - {path: x.jsonl, weight: -0.5}\n",
        "noloc.yaml": head + "data:\n  mixture:\n    - {split: train}\n",
        "bothloc.yaml": head + "data:\n  mixture:\n    - {id: a/b, path: x.jsonl}\n",
        "split_size.yaml": head + "data:\n  test_split_size: 1.5\n  mixture:\n    - {path: x.jsonl}\n",
        "split_and_test.yaml": head + "data:\n  test_split_size: 0.1\n  mixture:\n    - {path: x.jsonl}\n"
                                      "    - {path: y.jsonl, split: test}\n",
    }
    for name, text in files.items():
        (d / name).write_text(text, encoding="utf-8")
    (d / "binary.yaml").write_bytes(b"\xff\xfe\x00model: x\n")

    # data files
    good = [json.loads(line) for line in tiny_assets.sft_train.read_text().splitlines()[:10]]
    _jsonl(d / "good.jsonl", good)
    lines = [json.dumps(r) for r in good]
    lines[6] = '{"messages": [oops'
    (d / "badline.jsonl").write_text("\n".join(lines) + "\n")
    (d / "empty.jsonl").write_text("")
    _jsonl(d / "nocol.jsonl", [{"text": "x"}] * 3)
    u = lambda c: {"role": "user", "content": c}  # noqa: E731
    a = lambda c: {"role": "assistant", "content": c}  # noqa: E731
    rows = [dict(r) for r in good]
    rows[5] = {"messages": [u("hi"), {"role": "robot", "content": "beep"}]}
    _jsonl(d / "badrole.jsonl", rows)
    rows = [dict(r) for r in good]
    rows[3] = {"messages": [u("a"), a("b"), u("c")]}
    _jsonl(d / "noasst.jsonl", rows)
    _jsonl(d / "msgstr.jsonl", [{"messages": "hello"}] * 2)
    _jsonl(d / "msgnum.jsonl", [{"messages": [u("q"), {"role": "assistant", "content": 5}]}] * 2)
    _jsonl(d / "nochosen.jsonl", [{"prompt": "q", "rejected": [u("q"), a("y")]}] * 2)
    _jsonl(d / "dpodiff.jsonl", [{"chosen": [u("q"), a("x")], "rejected": [u("q"), a("y")]}] * 2
           + [{"chosen": [u("q1"), a("x")], "rejected": [u("q2"), a("y")]}])
    _jsonl(d / "dposame.jsonl", [{"chosen": [u("q"), a("x")], "rejected": [u("q"), a("y")]},
                                 {"chosen": [u("q"), a("x")], "rejected": [u("q"), a("x")]}])
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(good), str(d / "good.parquet"))
    raw = (d / "good.parquet").read_bytes()
    (d / "trunc.parquet").write_bytes(raw[: len(raw) // 2])
    for name, file in [("data_badline.yaml", "badline.jsonl"), ("data_trunc.yaml", "trunc.parquet"),
                       ("data_empty.yaml", "empty.jsonl"), ("data_nocol.yaml", "nocol.jsonl"),
                       ("data_badrole.yaml", "badrole.jsonl"), ("data_noasst.yaml", "noasst.jsonl"),
                       ("data_msgstr.yaml", "msgstr.jsonl"), ("data_msgnum.yaml", "msgnum.jsonl"),
                       ("data_nochosen.yaml", "nochosen.jsonl"), ("data_dpodiff.yaml", "dpodiff.jsonl"),
                       ("data_dposame.yaml", "dposame.jsonl"), ("data_missing.yaml", "missing.jsonl"),
                       ("data_good.yaml", "good.jsonl")]:
        _source(d, name, file)
    _data_yaml(d, "data_cols.yaml", f"data:\n  mixture:\n    - {{path: {d / 'good.jsonl'}, columns: [messages, nope]}}\n")
    _data_yaml(d, "data_hub.yaml", "data:\n  mixture:\n    - {id: HuggingFaceH4/ultrachat_200k, split: train_sft}\n")
    _data_yaml(d, "data_extra.yaml", f"model:\n  model_name_or_path: x\ndata:\n  mixture:\n    - {{path: {d}/good.jsonl}}\n")
    _source(d, "data_nofallback.yaml", "good.jsonl", "  chat_template_fallback: none\n")
    _source(d, "data_badtemplate.yaml", "good.jsonl", "  chat_template: nosuch\n")
    _source(d, "data_dupkey.yaml", "good.jsonl", "  mix_seed: 1\n  mix_seed: 2\n")
    _source(d, "data_yes_no.yaml", "good.jsonl", "  mix_seed: no\n")  # YAML 1.1 read it as False, i.e. seed 0
    _data_yaml(d, "data_badtype.yaml", f"data:\n  mixture:\n    - {{path: {d / 'good.jsonl'}, weight: lots}}\n")

    # model dirs: no weights; a tokenizer without a chat template
    shutil.copytree(model, d / "no-weights")
    (d / "no-weights" / "model.safetensors").unlink()
    shutil.copytree(model, d / "no-tokenizer")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (d / "no-tokenizer" / f).unlink()
    shutil.copytree(model, d / "no-template")
    (d / "no-template" / "chat_template.jinja").unlink()
    cfg = json.loads((d / "no-template" / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (d / "no-template" / "tokenizer_config.json").write_text(json.dumps(cfg))

    # output dirs, runs for `report`, eval inputs
    (d / "a-file").write_text("not a directory\n")
    (d / "busy-dir").mkdir()
    (d / "busy-dir" / "notes.txt").write_text("someone else's\n")
    (d / "run-damaged").mkdir()
    (d / "run-damaged" / "trainer_state.json").write_text('{"log_history": [')
    (d / "run-list").mkdir()
    (d / "run-list" / "trainer_state.json").write_text("[1, 2]")
    write_mtbench_files(d / "mt")
    (d / "bad_questions.jsonl").write_text('{"question_id": 1, "category": "x", "turns": ["hi"]}\n{"question_id": \n')
    return d


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return port


@pytest.fixture(scope="module")
def endpoints():
    """A served "model" that answers, and judges that misbehave, each a real HTTP server on 127.0.0.1."""
    servers = {"gen": FakeJudge(lambda body: "Rating: [[5]]"), "slow": FakeJudge(), "j500": FakeJudge(),
               "garbage": FakeJudge(), "nochoices": FakeJudge()}
    servers["slow"].always = "sleep:4"
    servers["j500"].always = "500"
    servers["garbage"].always = "garbage"
    servers["nochoices"].always = "nochoices"
    for s in servers.values():
        s.__enter__()
    urls = {name: s.base_url for name, s in servers.items()}
    urls["closed"] = f"http://127.0.0.1:{_closed_port()}/v1"
    for name in list(urls):
        urls[f"{name}_host"] = urls[name].removeprefix("http://").removesuffix("/v1")
    yield urls
    for s in servers.values():
        s.__exit__(None, None, None)


# --------------------------------------------------------------------------- the corpus


# one case or more of each section of the table, run as a real process (the rest run in this process)
PROCESS = {"yaml-syntax-error", "yaml-python-tag", "lr-not-a-number", "override-without-value", "typer-bad-int",
           "unknown-recipe", "output-dir-not-writable", "data-invalid-json-line", "data-hub-offline",
           "sft-data-bad-role", "sft-model-without-weights", "merge-not-an-adapter", "slurm-time-injection",
           "judge-times-out", "judge-key-variable-unset"}


@pytest.fixture(scope="module")
def outcomes(corpus, endpoints, tiny_env, tiny_model_dir):
    """Every case's CLI run: the PROCESS cases as processes, a few at a time, while the others run here one
    after another: {case id: (argv, CompletedProcess or the exception the run raised)}."""
    from concurrent.futures import ThreadPoolExecutor

    values = {"d": str(corpus), "model": tiny_model_dir, **endpoints}

    def run(case: Case):
        args = [a.format(**values) for a in case.args]
        try:
            if case.id in PROCESS:
                return args, run_cli(*args, env=tiny_env, cwd=corpus, timeout=300)
            return args, invoke_cli(*args, env=tiny_env, cwd=corpus)
        except Exception as exc:  # noqa: BLE001 - reported by the case's own test
            return args, exc

    with ThreadPoolExecutor(max_workers=2) as pool:
        processes = {c.id: pool.submit(run, c) for c in CASES if c.id in PROCESS}
        here = {c.id: run(c) for c in CASES if c.id not in PROCESS}
        return {c.id: here[c.id] if c.id in here else processes[c.id].result() for c in CASES}, values


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, outcomes, corpus):
    results, values = outcomes
    args, proc = results[case.id]
    if isinstance(proc, Exception):
        raise AssertionError(f"alignkit {args} did not finish: {proc!r}")
    err, out = flat(proc.stderr), flat(proc.stdout)
    shown = f"alignkit {args}\nexit {proc.returncode}\nSTDERR:\n{proc.stderr[-3000:]}\nSTDOUT:\n{proc.stdout[-1000:]}"
    assert "Traceback" not in proc.stderr + proc.stdout, shown
    assert proc.returncode == case.code, shown
    for piece in case.says:
        assert flat(piece.format(**values)) in err, (piece, shown)
    assert flat(case.fix) in err, (case.fix, shown)
    if not case.typer:
        assert "fix:" in err, shown
        assert "internal error" not in err, shown
    for piece in case.forbid:
        assert piece not in err + out, (piece, shown)
    assert not (corpus / "pwned").exists(), "a YAML tag ran code"
