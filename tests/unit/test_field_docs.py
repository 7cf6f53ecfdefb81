"""The descriptions `alignkit sft|dpo --help` shows are the pydantic fields' own (snapshot is current)."""

from alignkit.config import docs
from tests.helpers import run_cli


def test_snapshot_matches_the_models():
    assert docs.load() == docs.build(), "run: python -m alignkit.config.docs"


def test_help_lists_the_keys_with_their_descriptions():
    # a bare environment: the help needs nothing from the user's
    out = run_cli("dpo", "--help", env={"PATH": "/usr/bin:/bin"}, env_extra={"COLUMNS": "200"}).stdout
    assert "train.beta:" in out and "launch.global_batch_size:" in out
    assert docs.build()["dpo"]["lora.r"] in out
