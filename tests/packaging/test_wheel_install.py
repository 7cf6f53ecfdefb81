"""The installed package is what is tested: the sdist and the wheel built from this checkout, the wheel
installed (not editable) into a fresh virtualenv, and alignkit run from there.

* the sdist holds every file of the package, and the wheel built from that sdist (the way pip builds one)
  holds every file of the package too; every non-Python file under alignkit/ is package data;
* every resource the code opens (``importlib.resources.files(...)``, ``Path(__file__)...``) is in the wheel,
  found by reading the code, so that a data folder that moves keeps being checked where it goes;
* from the fresh venv: ``alignkit --help``, ``--version``, ``recipes list``, a dry run of every shipped
  recipe × task × variant, ``validate``, and (e2e) one tiny real ``sft`` on this CPU.

The venv reuses the project venv's installed dependencies through a ``.pth`` line pointing at its
site-packages (``.pth`` files there, such as the editable alignkit's finder, are not run for a path added
that way), so nothing is downloaded; each test checks that ``alignkit`` is imported from the new venv.
Builds use setuptools' PEP 517 hooks in process (what ``python -m build --no-isolation`` calls): no
network, no `build` package needed.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "alignkit"
BUILD = """
import sys
from setuptools import build_meta
kind, out = sys.argv[1], sys.argv[2]
print((build_meta.build_sdist if kind == "sdist" else build_meta.build_wheel)(out))
"""


def _package_files() -> set[str]:
    """Every file of the package in this checkout, as 'alignkit/...' (no caches)."""
    return {p.relative_to(REPO).as_posix() for p in PKG.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")}


def _build(kind: str, src: Path, out: Path) -> Path:
    proc = subprocess.run([sys.executable, "-c", BUILD, kind, str(out)], cwd=src, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"building the {kind} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out / proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """sdist from a clean copy of the checkout, then the wheel from the unpacked sdist (pip's path)."""
    base = tmp_path_factory.mktemp("dist")
    src = base / "src"
    src.mkdir()
    shutil.copytree(PKG, src / "alignkit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    out = base / "dist"
    sdist = _build("sdist", src, out)
    with tarfile.open(sdist) as tar:
        tar.extractall(base / "unpacked", filter="data")
    (unpacked,) = (base / "unpacked").iterdir()
    wheel = _build("wheel", unpacked, out)
    return {"sdist": sdist, "wheel": wheel}


def _wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_sdist_and_wheel_hold_every_file_of_the_package(dist):
    expected = _package_files()
    assert any(not f.endswith(".py") for f in expected)
    with tarfile.open(dist["sdist"]) as tar:
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    missing_sdist = sorted(expected - in_sdist)
    assert not missing_sdist, f"the sdist lacks {missing_sdist}: add them to pyproject's package-data"
    missing = sorted(expected - _wheel_names(dist["wheel"]))
    assert not missing, f"the wheel lacks {missing}: add them to pyproject's [tool.setuptools.package-data]"


# --------------------------------------------------------------------------- resources the code opens

_FILES = re.compile(r"""resources\.files\(\s*["']([\w.]+)["']\s*\)((?:\s*\.joinpath\([^)]*\))*)""")
_PATH = re.compile(r"""Path\(__file__\)((?:\.resolve\(\)|\.parents\[\d\]|\.parent)*)((?:\s*/\s*["'][^"']+["'])*)""")
# occurrences whose target the scan cannot read from the code, each with where its file is checked instead
NOT_READ_FROM_CODE = {
    "alignkit/config/docs.py": "Path(__file__).with_name(FILE) writes field_docs.json (a maintainer's "
                               "regeneration step); the reader uses resources.files, scanned above",
}


def _literal_parts(call_args: str, constants: dict[str, str]) -> list[str]:
    """The strings of `.joinpath("a", NAME, f"{x}.yaml")...` chains (module-level string constants
    resolved), up to the first argument that is not known before run time."""
    parts: list[str] = []
    for args in re.findall(r"\.joinpath\(([^)]*)\)", call_args):
        for node in ast.parse(f"f({args})", mode="eval").body.args:
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                parts.append(node.value)
            elif isinstance(node, ast.Name) and node.id in constants:
                parts.append(constants[node.id])
            else:
                return parts
    return parts


def _constants(text: str) -> dict[str, str]:
    return {t.id: node.value.value for node in ast.parse(text).body if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            for t in node.targets if isinstance(t, ast.Name)}


def _resources_opened() -> dict[str, str]:
    """'alignkit/...' path (file or folder) -> where the code opens it. Fails on a form it cannot read."""
    found: dict[str, str] = {}
    unread: list[str] = []
    for py in sorted(PKG.rglob("*.py")):
        text = py.read_text(encoding="utf-8")
        rel = py.relative_to(REPO).as_posix()
        constants = _constants(text)
        for m in _FILES.finditer(text):
            target = Path(*m.group(1).split(".")).joinpath(*_literal_parts(m.group(2), constants))
            found[target.as_posix()] = rel
        for m in re.finditer(r"Path\(__file__\)", text):
            pm = _PATH.match(text, m.start())
            tail = pm.group(2) if pm else ""
            if not tail:
                if rel not in NOT_READ_FROM_CODE:
                    unread.append(f"{rel}: {text[m.start():m.start() + 80].splitlines()[0]}")
                continue
            up = sum(1 for _ in re.finditer(r"\.parent\b", pm.group(1)))
            up += sum(int(n) + 1 for n in re.findall(r"\.parents\[(\d)\]", pm.group(1)))
            here = py.parent
            for _ in range(max(up - 1, 0)):
                here = here.parent
            if up == 0:
                unread.append(f"{rel}: {pm.group(0)}")
                continue
            target = here.joinpath(*re.findall(r"""["']([^"']+)["']""", tail))
            found[target.relative_to(REPO).as_posix()] = rel
    assert not unread, ("a data file is opened in a way this scan cannot follow; use "
                        "importlib.resources.files('alignkit.x').joinpath('name') or add it to "
                        f"NOT_READ_FROM_CODE with the reason: {unread}")
    return found


def test_the_scan_finds_the_resources_the_code_opens():
    opened = _resources_opened()
    # what the code reads today, wherever it lives: defaults, recipes, profiles, field docs, templates
    for needle in ("defaults", "recipes", "profiles", "trl_fields.json", "field_docs.json", "templates"):
        assert any(needle in p for p in opened), (needle, opened)


def test_every_resource_the_code_opens_is_in_the_wheel(dist):
    names = _wheel_names(dist["wheel"])
    missing = []
    for path, where in sorted(_resources_opened().items()):
        if path not in names and not any(n.startswith(path + "/") for n in names):
            missing.append(f"{path} (opened in {where})")
    assert not missing, f"the wheel lacks what the code opens: {missing}"


# --------------------------------------------------------------------------- the installed wheel


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory) -> Path:
    """A fresh venv (the project's interpreter) with the wheel pip-installed, not editable; the project
    venv's dependencies reached through a .pth line."""
    root = tmp_path_factory.mktemp("wheel-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    py = root / "bin" / "python"
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                           "--disable-pip-version-check", "--quiet", str(dist["wheel"])],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_alignkit_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


def _env(run_dir: Path) -> dict[str, str]:
    """The test session's offline environment, without this checkout on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", CUDA_VISIBLE_DEVICES="",
               COLUMNS="200", HOME=str(run_dir))
    return env


def _alignkit(venv: Path, args: list[str], run_dir: Path, *, timeout: int = 300, expect: int = 0):
    proc = subprocess.run([str(venv / "bin" / "alignkit"), *args], cwd=run_dir, env=_env(run_dir),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == expect, (f"`alignkit {' '.join(args)}` exited {proc.returncode}\n"
                                       f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def test_the_venv_imports_the_installed_wheel_not_this_checkout(venv, tmp_path):
    proc = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import alignkit, importlib.metadata as m; print(alignkit.__file__); "
                           "print(m.distribution('alignkit').read_text('direct_url.json') or '')"],
                          cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, check=True)
    where, direct = proc.stdout.splitlines()[0], "\n".join(proc.stdout.splitlines()[1:])
    assert Path(where).resolve().is_relative_to(venv.resolve()), where
    assert '"editable": true' not in direct


def test_installed_cli_answers_and_dry_runs_every_shipped_recipe(venv, tmp_path):
    assert "Usage: alignkit" in _alignkit(venv, ["--help"], tmp_path).stdout
    assert _alignkit(venv, ["--version"], tmp_path).stdout.startswith("alignkit ")
    assert "zephyr-7b-beta" in _alignkit(venv, ["recipes", "list"], tmp_path).stdout
    shipped = json.loads(_alignkit(venv, ["recipes", "list", "--json"], tmp_path).stdout)
    assert {r["name"] for r in shipped} >= {"tiny", "zephyr-7b-beta"}
    for r in shipped:
        for variant in r["variants"]:
            proc = _alignkit(venv, [r["task"], "--recipe", r["name"], "--profile", variant, "--num-gpus", "1",
                                    "--dry-run", "--json", f"--output_dir={tmp_path}/{r['name']}-{r['task']}"],
                             tmp_path)
            assert json.loads(proc.stdout), (r, variant)
    # the README's dry run, as printed there
    _alignkit(venv, ["sft", "--recipe", "zephyr-7b-beta", "--profile", "full", "--num-gpus", "8", "--dry-run"],
              tmp_path)
    _alignkit(venv, ["validate", "--recipe", "zephyr-7b-beta", "--profile", "qlora"], tmp_path)
    _alignkit(venv, ["validate", "--recipe", "tiny", "--profile", "qlora,cpu"], tmp_path)
    assert "complete -o default -F _alignkit_completion alignkit" in subprocess.run(
        [str(venv / "bin" / "alignkit")], env={**_env(tmp_path), "_ALIGNKIT_COMPLETE": "source_bash"},
        capture_output=True, text=True, timeout=60).stdout


@pytest.mark.e2e
def test_installed_alignkit_trains_a_tiny_sft(venv, tmp_path, tiny_assets):
    out = tmp_path / "sft"
    proc = _alignkit(venv, ["sft", "--recipe", "tiny", "--profile", "cpu", f"--output_dir={out}", "--max_steps=3",
                            "--logging_steps=1", "--eval_strategy=no", "--save_strategy=no", "--report_to=none"],
                     tmp_path, timeout=600)
    assert "done:" in proc.stderr
    assert (out / "model.safetensors").is_file() and (out / "chat_template.jinja").is_file()
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    env = json.loads((out / "alignkit" / "env.json").read_text())
    # the training process ran on the venv's interpreter, importing the installed alignkit
    assert Path(env["python_executable"]).parent == venv / "bin", env["python_executable"]
    model = json.loads((out / "alignkit" / "model.json").read_text())
    assert model["trainable_params"] > 0
