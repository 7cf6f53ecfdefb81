"""Shared fixtures: offline Hugging Face, a private cache, and the tiny demo assets.

* ``_offline_session`` (autouse, session): HF_HUB_OFFLINE / HF_DATASETS_OFFLINE / TRANSFORMERS_OFFLINE = 1,
  HF_HOME and ALIGNKIT_CACHE in a session temp dir (restored afterwards). Subprocesses started
  with the default environment inherit all of it.
* ``tiny_assets`` (session): the demo model + data built once per session (``DemoAssets``).
* ``tiny_model_dir`` (session): ``str(tiny_assets.model_dir)``.
* ``tiny_env`` (session): a copy of os.environ for subprocesses, with the variables above set
  and this checkout first on PYTHONPATH.
* ``load_jsonl``: ``load_jsonl(path) -> list[dict]``.
* pytest-xdist (`make test-fast` runs ``-n auto``): each worker, and every process it starts, gets its share of
  the CPU cores as OpenMP threads (``OMP_NUM_THREADS``, unless set): torch's default of one thread per core in
  every worker oversubscribes the machine, and waiting OpenMP threads spin, which made a tiny model's forward
  passes several times slower.
* ``_fresh_consoles`` (autouse): alignkit.ui's cached rich consoles are dropped before each test, so a console
  made by an earlier test (its width from that test's COLUMNS) never decides how this one's output wraps,
  whatever order the tests run in (pytest-xdist gives each worker its own order).
* ``_training_guard`` (autouse): a test not marked e2e (or slurm) that starts training (``accelerate launch``,
  ``python -m alignkit.train.*``), itself or in any Python process below it, fails: tests/spawn_guard. In a
  run that deselects e2e (``-m "not e2e ..."``, `make test-fast`) the guard covers the whole session, fixture
  set-up included.

Running the CLI in a subprocess: tests/helpers.py (``run_cli``, ``popen_cli``, ``cli_env``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pytest

from tests.helpers import GUARD_DIR, GUARD_VAR

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
    env.pop(GUARD_VAR, None)  # tests/helpers.py adds the guard of the test that runs
    return env


def _load_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def load_jsonl():
    return _load_jsonl


@pytest.fixture(autouse=True)
def _fresh_consoles():
    ui = sys.modules.get("alignkit.ui")
    if ui is not None:
        ui.err_console.cache_clear()
        ui.out_console.cache_clear()
    yield


def pytest_configure(config):
    # never let a test reach a hub, even before the session fixture runs (collection imports)
    for key, value in _OFFLINE.items():
        os.environ.setdefault(key, value)
    _share_cores_between_workers()
    _configure_training_guard(config)


def _share_cores_between_workers() -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)  # set in each pytest-xdist worker
    if workers and not os.environ.get("OMP_NUM_THREADS"):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        os.environ["OMP_NUM_THREADS"] = str(max(1, cores // workers))


# --------------------------------------------------------------------------- no training outside e2e


def _load_guard():
    spec = importlib.util.spec_from_file_location("_alignkit_spawn_guard", GUARD_DIR / "sitecustomize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_GUARD = _load_guard()
_GUARD_LOG: Path | None = None


def _deselects_e2e(config) -> bool:
    return bool(re.search(r"\bnot\s+e2e\b", config.getoption("markexpr", "") or ""))


def _configure_training_guard(config) -> None:
    global _GUARD_LOG
    import tempfile

    fd, name = tempfile.mkstemp(prefix="alignkit-training-guard-", suffix=".log")
    os.close(fd)
    _GUARD_LOG = Path(name)
    # every Python process the tests start loads tests/spawn_guard/sitecustomize.py (a no-op without the
    # variable); this process checks its own spawns with the same audit hook
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(GUARD_DIR), os.environ.get("PYTHONPATH", "")) if p)
    _GUARD.install()
    if _deselects_e2e(config):
        os.environ[GUARD_VAR] = name


def pytest_unconfigure(config):
    if _GUARD_LOG is not None:
        _GUARD_LOG.unlink(missing_ok=True)


def _training_seen() -> str:
    text = _GUARD_LOG.read_text(encoding="utf-8") if _GUARD_LOG and _GUARD_LOG.exists() else ""
    if text and _GUARD_LOG:
        _GUARD_LOG.write_text("")
    return text


@pytest.fixture(autouse=True)
def _training_guard(request, monkeypatch):
    if request.node.get_closest_marker("e2e") or request.node.get_closest_marker("slurm"):
        monkeypatch.delenv(GUARD_VAR, raising=False)
        yield
        return
    seen = _training_seen()  # started by a fixture set up for this test (session-wide guard)
    monkeypatch.setenv(GUARD_VAR, str(_GUARD_LOG))
    yield
    seen += _training_seen()
    if seen:
        pytest.fail(f"{request.node.nodeid} is not marked e2e but started training (mark it "
                    f"@pytest.mark.e2e, or stop it before the trainer):\n{seen}", pytrace=False)
