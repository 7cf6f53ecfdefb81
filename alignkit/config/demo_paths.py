"""Where the embedded demo's assets live, and what a `demo:` path in a config means (paths only).

``demo:model`` or ``demo:data/sft_train.jsonl`` in a recipe names a file of the demo's cache; config
resolution expands it here, without importing the demo. Building the assets is alignkit.demo.assets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from alignkit.errors import ConfigError, Problem, did_you_mean

PREFIX = "demo:"
DEMO_VERSION = "v1"
MODEL_DIR = "model"
SFT_TRAIN = "data/sft_train.jsonl"
SFT_TEST = "data/sft_test.jsonl"
PREFS_TRAIN = "data/prefs_train.jsonl"
PREFS_TEST = "data/prefs_test.jsonl"
#: the names a recipe may use after ``demo:``
ASSET_NAMES = (MODEL_DIR, SFT_TRAIN, SFT_TEST, PREFS_TRAIN, PREFS_TEST)


def demo_root(env: Mapping[str, str] | None = None) -> Path:
    """``$ALIGNKIT_CACHE/demo/v1``, or ``~/.cache/alignkit/demo/v1`` when ALIGNKIT_CACHE is unset.

    ``env`` is the environment to read (default: this process's), e.g. a child process's.
    """
    base = (os.environ if env is None else env).get("ALIGNKIT_CACHE") or ""
    cache = Path(base).expanduser() if base.strip() else Path.home() / ".cache" / "alignkit"
    return (cache / "demo" / DEMO_VERSION).absolute()


def demo_path(rel: str) -> str:
    """The absolute path of demo asset ``rel`` (``"model"``, ``"data/sft_train.jsonl"``, ...).

    Pure string work: it does not build anything (``ensure_demo_assets`` does). A file inside the
    model directory (``"model/config.json"``) is accepted too. Anything else is a ConfigError.
    """
    name = rel.strip().strip("/")
    if name.startswith("demo:"):
        name = name[len("demo:") :]
    parts = Path(name).parts
    ok = bool(parts) and ".." not in parts and not Path(name).is_absolute()
    ok = ok and (name in ASSET_NAMES or (parts[0] == MODEL_DIR and len(parts) > 1))
    if not ok:
        hint = did_you_mean(name, ASSET_NAMES)
        raise ConfigError(
            Problem(
                where=f"demo:{rel}",
                message="not a demo asset",
                fix=(hint + " " if hint else "")
                + "use one of: "
                + ", ".join(f"demo:{n}" for n in ASSET_NAMES),
            )
        )
    return str(demo_root() / name)
