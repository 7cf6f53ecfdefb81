"""Layers of the run path read top-down: config imports neither launch, demo nor commands; launch and the
training processes import neither demo nor commands (lazy imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "alignkit"
FORBIDDEN = {
    "alignkit.config": ("alignkit.launch", "alignkit.demo", "alignkit.commands", "alignkit.train", "alignkit.cli"),
    "alignkit.launch": ("alignkit.demo", "alignkit.commands", "alignkit.train", "alignkit.cli"),
    "alignkit.train": ("alignkit.demo", "alignkit.commands", "alignkit.cli"),
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_no_import_runs_upward_from_config_launch_or_train():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for layer, above in FORBIDDEN.items():
            if module == layer or module.startswith(layer + "."):
                bad += [f"{module} imports {name}" for name in _imports(path)
                        if any(name == a or name.startswith(a + ".") for a in above)]
    assert not bad, "\n".join(bad)


def test_the_run_dir_layout_is_cheap_to_import():
    """`alignkit slurm status/logs` read run-dir paths: alignkit.launch.run pulls in neither pydantic nor config."""
    import subprocess
    import sys

    code = "import sys, alignkit.launch.run; print(sorted(m for m in sys.modules if m.startswith(('pydantic', 'alignkit.config', 'torch'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout.strip()
    assert out == "[]", out
