"""The descriptions `alignkit sft|dpo --help` shows are the pydantic fields' own (snapshot is current)."""

import subprocess
import sys

from alignkit.config import docs


def test_snapshot_matches_the_models():
    assert docs.load() == docs.build(), "run: python -m alignkit.config.docs"


def test_help_lists_the_keys_with_their_descriptions():
    out = subprocess.run([sys.executable, "-m", "alignkit", "dpo", "--help"], capture_output=True, text=True,
                         env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"}).stdout
    assert "train.beta:" in out and "launch.global_batch_size:" in out
    assert docs.build()["dpo"]["lora.r"] in out
