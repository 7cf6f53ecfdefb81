"""Shared fixtures: offline Hugging Face, a private cache, and the tiny demo assets.

* ``_offline_session`` (autouse, session): HF_HUB_OFFLINE / HF_DATASETS_OFFLINE / TRANSFORMERS_OFFLINE = 1,
  HF_HOME and ALIGNKIT_CACHE in a session temp dir (restored afterwards). Subprocesses started
  with the default environment inherit all of it.
* ``tiny_assets`` (session): the demo model + data built once per session (``DemoAssets``).
* ``tiny_model_dir`` (session): ``str(tiny_assets.model_dir)``.
* ``tiny_env`` (session): a copy of os.environ for subprocesses, with the variables above set
  and this checkout first on PYTHONPATH.
* ``load_jsonl``: ``load_jsonl(path) -> list[dict]``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

_OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="session", autouse=True)
def _offline_session(tmp_path_factory):
    base = tmp_path_factory.mktemp("session-env")
    values = dict(_OFFLINE)
    values["HF_HOME"] = str(base / "hf-home")
    values["ALIGNKIT_CACHE"] = str(base / "alignkit-cache")
    mp = pytest.MonkeyPatch()
    for key, value in values.items():
        mp.setenv(key, value)
    try:
        yield values
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def tiny_assets(_offline_session):
    from alignkit.demo.assets import ensure_demo_assets

    return ensure_demo_assets()


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_assets) -> str:
    return str(tiny_assets.model_dir)


@pytest.fixture(scope="session")
def tiny_env(_offline_session, tiny_assets) -> dict[str, str]:
    env = dict(os.environ)
    env.update(_offline_session)
    # children run `python -m alignkit` from this checkout even when it is not pip-installed
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    return env


def _load_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def load_jsonl():
    return _load_jsonl


def pytest_configure(config):
    # never let a test reach a hub, even before the session fixture runs (collection imports)
    for key, value in _OFFLINE.items():
        os.environ.setdefault(key, value)
