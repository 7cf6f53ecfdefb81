"""Imports run top-down: no module of the alignkit package imports one from a higher layer.

Read from the source (ast, nothing is imported): every ``import alignkit...`` / ``from alignkit... import``
/ relative import / ``importlib.import_module("alignkit...")``, at module level and inside functions
(lazy imports count: they run too). The layers and the same-layer rules are the tables below;
docs/architecture.md draws them and says why. A new top-level module or package must be placed in
LAYERS, or this test fails.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "alignkit"

# the top-level modules and packages of alignkit, bottom (0) to top (5)
LAYERS: dict[str, int] = {
    # 0, the ground floor: no alignkit imports above it
    "errors": 0, "fsutil": 0, "ui": 0, "secrets": 0,
    # 1: the config models, layers, recipes and profiles (profiles are config layers)
    "config": 1,
    # 2: what a run is made of
    "data": 2, "launch": 2, "memory": 2, "train": 2, "modeling": 2, "envinfo": 2,
    # 3: what works on runs and models
    "client": 3, "eval": 3, "aif": 3, "demo": 3, "sweep": 3,
    # 4: one module per CLI command
    "commands": 4,
    # 5: the typer app
    "cli": 5,
}
# neither imports nor is imported by layer: the package's __init__ (its version) and `python -m alignkit`
EXCLUDED = {"__init__", "__main__"}
LAYER_NAMES = {0: "ground floor", 1: "config", 2: "run parts", 3: "run users", 4: "commands", 5: "cli"}

# imports inside one layer are allowed except these (importer -> what it must not import)
SAME_LAYER_FORBIDDEN: dict[str, set[str]] = {
    "data": {"launch", "train", "memory"},  # data is read by preflight and the trainer: it knows neither
    "launch": {"train"},                    # the parent starts the child by command line, never imports it
    "memory": {"launch", "train", "data"},  # the estimator works from a config and a hardware description
    "train": {"launch"},                    # the child: only the run contract (below) from launch
    "client": {"eval", "aif", "demo", "sweep"},  # the shared HTTP client is what eval and aif both use
}
# exceptions to SAME_LAYER_FORBIDDEN: (importer, dotted prefix below alignkit it may import)
SAME_LAYER_ALLOWED: set[tuple[str, str]] = {
    ("train", "launch.run"),        # the run file and run-dir layout: the child loads the run with one call
    ("train", "launch.preflight"),  # what the parent's preflight produced (the data build) is read back
}


@dataclass(frozen=True)
class Import:
    source: str   # file, relative to the repository
    line: int
    importer: str  # dotted name below alignkit of the importing module, e.g. "config.resolve"
    target: str    # dotted name below alignkit of what it imports, e.g. "launch.profiles"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _exists(root: Path, dotted: str) -> bool:
    base = root.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _resolve(root: Path, dotted: str, names: list[str]) -> list[str]:
    """``from alignkit.<dotted> import names``: a name that is a module itself is that module."""
    out = []
    for name in names:
        sub = f"{dotted}.{name}" if dotted else name
        out.append(sub if name != "*" and _exists(root, sub) else dotted)
    return [t for t in out if t]


def package_imports(root: Path = PACKAGE) -> list[Import]:
    """Every import of an alignkit module inside the package under ``root`` (a dir named alignkit)."""
    found: list[Import] = []
    pkg = root.name
    for path in sorted(root.rglob("*.py")):
        importer = _module_name(path, root)
        is_pkg = path.name == "__init__.py"
        rel = path.relative_to(root.parent).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), rel)
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == pkg or alias.name.startswith(pkg + "."):
                        targets.append(alias.name[len(pkg) + 1:])
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the importer's package, `level` steps up
                    here = importer.split(".") if is_pkg else importer.split(".")[:-1]
                    up = here[:len(here) - (node.level - 1)] if node.level > 1 else here
                    base = ".".join([*up, *([node.module] if node.module else [])])
                elif node.module == pkg or (node.module or "").startswith(pkg + "."):
                    base = node.module[len(pkg) + 1:]
                else:
                    continue
                targets += _resolve(root, base, [a.name for a in node.names])
            elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
                  and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
                  and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                  and node.args[0].value.startswith(pkg + ".")):
                targets.append(node.args[0].value[len(pkg) + 1:])
            found += [Import(rel, node.lineno, importer, t) for t in dict.fromkeys(targets) if t]
    return found


def top(dotted: str) -> str:
    return dotted.split(".")[0] or "__init__"


def unplaced(root: Path = PACKAGE) -> list[str]:
    names = {p.stem for p in root.glob("*.py")} | {p.name for p in root.iterdir() if (p / "__init__.py").is_file()}
    return sorted(n for n in names - EXCLUDED if n not in LAYERS)


def violation(imp: Import) -> str | None:
    """Why ``imp`` breaks the layering, or None."""
    src, dst = top(imp.importer), top(imp.target)
    if src in EXCLUDED or dst in EXCLUDED or src == dst or src not in LAYERS or dst not in LAYERS:
        return None
    if LAYERS[dst] > LAYERS[src]:
        return (f"{src} (layer {LAYERS[src]}, {LAYER_NAMES[LAYERS[src]]}) imports {dst} (layer {LAYERS[dst]}, "
                f"{LAYER_NAMES[LAYERS[dst]]}): a lower layer must not import a higher one")
    if LAYERS[dst] == LAYERS[src] and dst in SAME_LAYER_FORBIDDEN.get(src, set()):
        if any(imp.target == p or imp.target.startswith(p + ".")
               for s, p in SAME_LAYER_ALLOWED if s == src):
            return None
        allowed = [p for s, p in sorted(SAME_LAYER_ALLOWED) if s == src and top(p) == dst]
        return (f"{src} must not import {dst} (same layer, SAME_LAYER_FORBIDDEN)"
                + (f"; only {', '.join('alignkit.' + a for a in allowed)}" if allowed else ""))
    return None


def report(root: Path = PACKAGE) -> list[str]:
    lines = [f"alignkit/{n}: a top-level module/package not placed in LAYERS (tests/unit/test_layers.py); "
             "put it in a layer (docs/architecture.md)" for n in unplaced(root)]
    for imp in package_imports(root):
        why = violation(imp)
        if why:
            lines.append(f"{imp.source}:{imp.line}: alignkit.{imp.importer} -> alignkit.{imp.target}: {why}")
    return lines


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
    problems = report()
    assert not problems, (f"{len(problems)} layering violation(s) (layers and rules: tests/unit/test_layers.py, "
                          "docs/architecture.md):\n  " + "\n  ".join(problems))


# --------------------------------------------------------------------------- the checker itself


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "alignkit"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checker_sees_every_form_of_import(tmp_path):
    root = _package(tmp_path, {
        "errors.py": "",
        "ui.py": "def f():\n    from alignkit.commands import train\n",            # lazy, from-import of a module
        "config/__init__.py": "",
        "config/resolve.py": "from ..launch import profiles\n",                     # relative, two levels
        "config/model.py": "from . import resolve\nimport alignkit.errors\n",        # relative sibling: fine
        "launch/__init__.py": "", "launch/profiles.py": "from alignkit.config.resolve import x\n",
        "launch/spawn.py": "import importlib\nm = importlib.import_module('alignkit.train.sft')\n",
        "launch/run.py": "",
        "train/__init__.py": "", "train/sft.py": "from alignkit.launch.run import load\n",  # allowed exception
        "train/common.py": "from alignkit.launch import spawn\n",                      # not allowed
        "data/__init__.py": "", "data/mix.py": "from alignkit import launch\n",
        "commands/__init__.py": "", "commands/train.py": "from alignkit.cli import app\n",
        "cli.py": "from alignkit import __version__\nfrom alignkit.commands import train\n",
        "newthing.py": "",
    })
    got = {(i.importer, i.target) for i in package_imports(root)}
    assert got == {("ui", "commands.train"), ("config.resolve", "launch.profiles"), ("config.model", "config.resolve"),
                   ("config.model", "errors"), ("launch.profiles", "config.resolve"),
                   ("launch.spawn", "train.sft"), ("train.sft", "launch.run"), ("train.common", "launch.spawn"),
                   ("data.mix", "launch"), ("commands.train", "cli"), ("cli", "commands.train")}
    bad = "\n".join(report(root))
    assert "alignkit/newthing: a top-level module/package not placed in LAYERS" in bad
    for pair in ("alignkit.ui -> alignkit.commands.train", "alignkit.config.resolve -> alignkit.launch.profiles",
                 "alignkit.launch.spawn -> alignkit.train.sft", "alignkit.train.common -> alignkit.launch.spawn",
                 "alignkit.data.mix -> alignkit.launch", "alignkit.commands.train -> alignkit.cli"):
        assert pair in bad, (pair, bad)
    for fine in ("alignkit.train.sft ->", "alignkit.launch.profiles ->", "alignkit.config.model ->",
                 "alignkit.cli ->"):
        assert fine not in bad, (fine, bad)
    assert len(report(root)) == 7


def test_every_layer_and_rule_names_a_placed_module():
    assert set(LAYER_NAMES) == set(LAYERS.values())
    for src, dsts in SAME_LAYER_FORBIDDEN.items():
        assert src in LAYERS and dsts <= set(LAYERS)
        assert all(LAYERS[d] == LAYERS[src] for d in dsts), (src, dsts)  # across layers the layer rule decides
    assert all(s in SAME_LAYER_FORBIDDEN and top(p) in SAME_LAYER_FORBIDDEN[s] for s, p in SAME_LAYER_ALLOWED)
