"""The trainer tasks alignkit runs, and what each one is made of.

    sft   supervised fine-tuning on conversations (`messages`)          TRL SFTConfig / SFTTrainer
    dpo   direct preference optimization on pairs, with a reference     TRL DPOConfig / DPOTrainer
    orpo  odds-ratio preference optimization on pairs, no reference     TRL ORPOConfig / ORPOTrainer (trl.experimental)
    cpt   continued pretraining on a text column, packed                TRL SFTConfig / SFTTrainer (language modelling)

Everything that differs between tasks by kind rather than by name reads these tables, so that a new task is a
row here plus its trainer recipe in alignkit/train/<task>.py.
"""

from __future__ import annotations

TASKS = ("sft", "dpo", "orpo", "cpt")

# The row format of the task's data (alignkit.data): conversations, preference pairs or plain text.
DATA_FORMAT = {"sft": "sft", "dpo": "dpo", "orpo": "dpo", "cpt": "cpt"}

# What the rows of each data format are, in words (the --task help of `alignkit mix`).
FORMAT_WORDS = {"sft": "conversations", "dpo": "preference pairs", "cpt": "plain text"}

# Which TRL config's fields the `train` section holds (the key of the snapshot in trl_fields.json).
TRL_CONFIG = {"sft": "sft", "dpo": "dpo", "orpo": "orpo", "cpt": "sft"}

# The TRL trainer class that tokenizes and trains the task's rows (what `alignkit mix preview` reproduces).
TRAINER = {"sft": "SFTTrainer", "dpo": "DPOTrainer", "orpo": "ORPOTrainer", "cpt": "SFTTrainer"}

# Tasks trained on preference pairs (two sequences per row); of those, the ones that keep a reference model.
PREFERENCE = frozenset({"dpo", "orpo"})
REFERENCE_MODEL = frozenset({"dpo"})

# The column a CPT row's text is read from when the config names none (the handbook's `text_column` default).
DEFAULT_TEXT_COLUMN = "text"


def data_format(task: str) -> str:
    """The data format of `task` ("sft", "dpo" or "cpt"); an unknown name is returned as it is (the caller's
    own check reports it)."""
    return DATA_FORMAT.get(task, task)


def trl_config(task: str) -> str:
    return TRL_CONFIG.get(task, task)


def trainer(task: str) -> str:
    return TRAINER[task]


def task_option_fix() -> str:
    """The fix of an unknown --task: "use --task sft or --task dpo or ..."."""
    return "use " + " or ".join(f"--task {t}" for t in TASKS)


def check_task_option(task: str, where: str = "--task") -> str:
    """A --task naming a task of this table; else exit 2 (a usage error) listing them. Returns the task."""
    if task not in TASKS:
        from alignkit.errors import Problem, UsageError

        raise UsageError(Problem(where, f"unknown task '{task}'", task_option_fix()))
    return task


def task_choices_help() -> str:
    """The tasks with what their rows are, for a --task help text: "sft (conversations), dpo (preference
    pairs), ..."."""
    return ", ".join(f"{t} ({FORMAT_WORDS[data_format(t)]})" for t in TASKS)
