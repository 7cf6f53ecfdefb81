"""The `data` section: what a run trains and evaluates on.

One meaning of a mixture (docs/data.md has the long form):

* each source is ``{id or path, config, split, columns, weight}``;
* ``weight`` is the fraction of that source's rows taken after a shuffle seeded with ``mix_seed``
  (``0.5`` = half the rows, ``1.0`` = all of them, ``2.0`` = every row twice; a fractional part
  above 1 takes that fraction of a further shuffled pass);
* train sources are concatenated and shuffled with ``mix_seed``;
* test sources (split name containing ``test``, or ``test: true``) are never subsampled and never
  end up in train;
* ``test_split_size`` carves an eval split out of train only when no test source is given.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator


class DataSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="Hub dataset id, e.g. HuggingFaceH4/ultrachat_200k.")
    path: str | None = Field(
        None,
        description="Local data instead of a hub id: a json/jsonl/parquet/csv file, a glob, or a "
        "directory written by save_to_disk or `alignkit mix build`.",
    )
    config: str | None = Field(None, description="Dataset config (subset) name.")
    split: str = Field("train", description="Split to read, e.g. train_sft or test_prefs.")
    revision: str | None = Field(None, description="Hub revision (commit, tag or branch) to pin.")
    columns: list[str] | None = Field(
        None, description="Columns to keep; sources in one split must end up with the same columns."
    )
    keep_columns: list[str] | None = Field(
        None,
        description="Keep only those of these columns the source has, drop the rest (what the old handbook "
        "scripts did to every dataset_mixer source: messages, chosen, rejected, prompt, completion, label). "
        "Unlike `columns`, a listed column the source lacks is no error.",
    )
    weight: float = Field(
        1.0,
        gt=0,
        description="Fraction of this source taken after a seeded shuffle (>1 repeats rows). "
        "Ignored for test sources, which are never subsampled.",
    )
    test: bool | None = Field(
        None, description="Mark this source as evaluation data. Default: split name contains 'test'."
    )

    @model_validator(mode="after")
    def _one_location(self) -> "DataSource":
        if (self.id is None) == (self.path is None):
            raise ValueError("give exactly one of 'id' (a hub dataset) or 'path' (local data)")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        # keep_columns only appears where set: run files and mix fingerprints of other configs are unchanged
        out = handler(self)
        if isinstance(out, dict) and out.get("keep_columns") is None:
            out.pop("keep_columns", None)
        return out

    @property
    def name(self) -> str:
        return self.id or self.path or "?"

    @property
    def is_test(self) -> bool:
        return self.test if self.test is not None else ("test" in self.split)


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mixture: list[DataSource] = Field(
        default_factory=list, description="The sources to mix (see docs/data.md for what weight means)."
    )
    mix_seed: int = Field(42, description="Seed for subsampling, shuffling and carving the eval split.")
    test_split_size: float | int | None = Field(
        None,
        description="Carve an eval split from train: a fraction in (0, 1) or a row count. "
        "Only allowed when no test source is given.",
    )
    preprocessing_num_workers: int | None = Field(
        None, ge=1, description="Processes for dataset mapping (tokenizing, templating)."
    )
    chat_template: str | None = Field(
        None,
        description="Chat template overriding the tokenizer's: a Jinja string, a path to a .jinja "
        "file, or a built-in name (zephyr, chatml, llama3).",
    )
    chat_template_fallback: Literal["zephyr", "chatml", "none"] = Field(
        "zephyr",
        description="Template used when the tokenizer has none and chat_template is unset; "
        "'none' makes a missing template an error.",
    )
    auto_insert_empty_system_msg: bool = Field(
        False, description="Insert an empty system turn where a conversation has none."
    )
    skip_invalid: bool = Field(
        False, description="Drop invalid rows (reported per source) instead of stopping with an error."
    )
    text_column: str | None = Field(
        None,
        description="Continued pretraining (`alignkit cpt`) only: the column holding each row's text "
        "(default: text; the handbook's text_column).",
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        # text_column only appears where set: run files and mix fingerprints of SFT/DPO configs are unchanged
        out = handler(self)
        if isinstance(out, dict) and out.get("text_column") is None:
            out.pop("text_column", None)
        return out

    def plan_notes(self) -> list[str]:
        """What a dry run says about the mixture that the fields alone do not show."""
        notes = []
        for i, s in enumerate(self.mixture):
            if s.is_test and "weight" in s.model_fields_set and s.weight != 1.0:
                notes.append(f"data.mixture[{i}] ({s.name} {s.split}): weight {s.weight:g} ignored: test sources "
                             "are evaluated whole, never subsampled")
        return notes

    @model_validator(mode="after")
    def _test_split(self) -> "DataConfig":
        size = self.test_split_size
        if size is not None:
            if isinstance(size, float) and not (0 < size < 1):
                raise ValueError("test_split_size as a fraction must be in (0, 1); as a count, an integer >= 1")
            if isinstance(size, int) and size < 1:
                raise ValueError("test_split_size as a count must be >= 1")
            if any(s.is_test for s in self.mixture):
                raise ValueError(
                    "test_split_size carves an eval split from train, but the mixture already has a "
                    "test source; remove test_split_size or the test source"
                )
        seen: dict[tuple, str] = {}
        for s in self.mixture:
            key = (s.name, s.config, s.split)
            if key in seen:
                raise ValueError(f"source {s.name} split {s.split} is listed twice")
            seen[key] = s.split
        return self
