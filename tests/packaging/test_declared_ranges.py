"""Declared ranges are true: pyproject's `requires-python` and dependency ranges match what is tested.

* constraints.txt is the set CI tests: each of its pins lies inside pyproject's range for that package;
* each range's lower bound is the minor release constraints.txt pins (what is tested), or the GPU box's
  preinstalled release that scripts/gpu-check.sh and the CUDA tests run on (GPU_BOX), and never below
  what another declared dependency requires of it (TRL 1.16 needs datasets >= 4.7, typer rich >= 13.8);
  each range has an upper bound;
* `requires-python` starts where the dependencies' own Requires-Python do (TRL 1.16: >= 3.11);
* the optional extras exist and the README's install section names each one.
Read from the installed distributions' metadata: no network.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
DEPS = {canonicalize_name(r.name): r for r in map(Requirement, PROJECT["dependencies"])}
# the GPU box's own stack (shared notes, stack-facts: torch 2.11, transformers 5.17): gpu-check installs
# alignkit on it without replacing them, so the ranges must hold them
GPU_BOX = {"torch": Version("2.11"), "transformers": Version("5.17")}
EXTRAS = ("flash-attn", "liger", "vllm", "eval", "serving")


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def _lower(spec: SpecifierSet) -> Version | None:
    found = [Version(s.version) for s in spec if s.operator in (">=", "==", "~=")]
    return max(found) if found else None


def test_every_dependency_is_pinned_in_the_tested_set_and_inside_its_range():
    pins = _pins()
    for name, req in DEPS.items():
        assert name in pins, f"constraints.txt (the tested set) pins no version of {name}"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"{name}: constraints.txt tests {pins[name]}, outside pyproject's {req.specifier}"
    for extra, reqs in PROJECT["optional-dependencies"].items():
        for req in map(Requirement, reqs):
            name = canonicalize_name(req.name)
            if name in pins:
                assert req.specifier.contains(pins[name]), (extra, str(req), pins[name])


def test_each_range_starts_at_a_tested_release_and_has_an_upper_bound():
    pins = _pins()
    for name, req in DEPS.items():
        low = _lower(req.specifier)
        assert low is not None and any(s.operator in ("<", "<=") for s in req.specifier), \
            f"{name}: declare a range with both bounds, not {req.specifier}"
        tested = [pins[name].release[:2]] + ([GPU_BOX[name].release[:2]] if name in GPU_BOX else [])
        assert low.release[:2] in tested, \
            f"{name}: the range starts at {low}, but the tested releases are {tested} (constraints.txt, GPU box)"


def test_no_lower_bound_is_below_what_another_dependency_requires():
    env = default_environment()
    env["extra"] = ""
    problems = []
    for name in DEPS:
        try:
            requires = md.distribution(name).requires or []
        except md.PackageNotFoundError:  # pragma: no cover - the project venv has every dependency
            pytest.fail(f"{name} is not installed: run `make install`")
        for text in requires:
            req = Requirement(text)
            other = canonicalize_name(req.name)
            if other not in DEPS or (req.marker and not req.marker.evaluate(env)):
                continue
            low = _lower(DEPS[other].specifier)
            if req.specifier and not req.specifier.contains(low, prereleases=True):
                problems.append(f"{name} requires {req}; alignkit's {other} range starts at {low}")
    assert not problems, problems


def test_requires_python_starts_where_the_dependencies_do():
    declared = SpecifierSet(PROJECT["requires-python"])
    assert declared.contains(".".join(map(str, sys.version_info[:3]))), "this interpreter is outside the range"
    needed = []
    for name in DEPS:
        spec = md.distribution(name).metadata.get("Requires-Python")
        if spec:
            low = _lower(SpecifierSet(spec))
            if low:
                needed.append((low.release[:2], name))
    floor, who = max(needed)
    assert _lower(declared).release[:2] == floor, \
        f"requires-python starts at {_lower(declared)}, but {who} requires Python >= {'.'.join(map(str, floor))}"


def test_extras_exist_and_the_readme_install_section_names_each():
    extras = PROJECT["optional-dependencies"]
    readme = (REPO / "README.md").read_text()
    section = re.search(r"^## Install\n(.*?)(?=^## )", readme, re.S | re.M)
    assert section, "README.md has no '## Install' section"
    for extra in EXTRAS:
        assert extras.get(extra), f"pyproject declares no [{extra}] extra"
        assert f"alignkit[{extra}]" in section.group(1), f"README's install section does not name alignkit[{extra}]"
    for way in ("pip install alignkit", "pipx install alignkit", "-e \".[dev]\""):
        assert way in section.group(1), way


def test_readme_keeps_its_two_commands_first_and_they_need_no_extra():
    readme = (REPO / "README.md").read_text()
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in first_block.strip().splitlines()] == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    # make demo/test install `.[dev]` only: none of the optional extras
    installs = re.findall(r'-e "\.\[([^\]]*)\]"', makefile)
    assert installs == ["dev"], installs
    dev = " ".join(PROJECT["optional-dependencies"]["dev"])
    for extra in EXTRAS:
        for req in PROJECT["optional-dependencies"][extra]:
            name = Requirement(req).name
            if name != "transformers":  # [serving] is transformers' own extra, which dev includes on purpose
                assert name not in dev, (extra, name)
