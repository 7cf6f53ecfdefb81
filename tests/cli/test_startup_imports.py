"""`alignkit --version`, `--help` of every command and subcommand, and the dry-run paths answer without
importing the heavy stack (torch, transformers, trl, peft, datasets, bitsandbytes, deepspeed).

Checked in a fresh subprocess via ``sys.modules``: the test process itself has imported all sorts of
things by the time this runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

HEAVY = ["torch", "transformers", "trl", "peft", "datasets", "bitsandbytes", "deepspeed"]

PROBE = textwrap.dedent(
    """
    import json, sys
    HEAVY = %r
    results = []

    def heavy():
        return sorted(m for m in HEAVY if m in sys.modules)

    from alignkit.cli import app, main
    import typer
    from typer.testing import CliRunner

    runner = CliRunner()

    def walk(cmd, path):
        yield path
        for name, sub in sorted((getattr(cmd, "commands", None) or {}).items()):
            yield from walk(sub, path + [name])

    for args in [["--version"]] + [p + ["--help"] for p in walk(typer.main.get_command(app), [])]:
        res = runner.invoke(app, args)
        results.append({"args": args, "code": res.exit_code, "out": res.stdout[:400],
                        "exc": repr(res.exception) if res.exception and res.exit_code else None,
                        "heavy": heavy()})

    for args in (["sft", "--recipe", "zephyr-7b-beta", "--profile", "full", "--num-gpus", "8", "--dry-run"],
                 ["dpo", "--recipe", "zephyr-7b-beta", "--profile", "qlora", "--dry-run", "--json"],
                 ["validate", "--recipe", "tiny", "--profile", "qlora,cpu"],
                 ["recipes", "list"], ["recipes", "show", "zephyr-7b-beta", "--task", "dpo"],
                 ["config", "fields", "--task", "dpo", "train", "-s", "beta"], ["config", "schema"]):
        res = runner.invoke(app, args)
        results.append({"args": args, "code": res.exit_code, "out": "", "exc": repr(res.exception)
                        if res.exception else None, "heavy": heavy()})
    print(json.dumps(results))
    """
) % (HEAVY,)


def _probe() -> list[dict]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_help_version_and_dry_runs_import_nothing_heavy():
    results = _probe()
    helps = [r for r in results if r["args"][-1] == "--help"]
    # every command group and leaf of the app was walked
    walked = {" ".join(r["args"][:-1]) for r in helps}
    for expected in ("", "sft", "dpo", "validate", "env", "demo", "recipes", "recipes list", "recipes show",
                     "recipes copy", "config", "config fields", "config schema", "mix", "eval", "slurm"):
        assert expected in walked, expected
    assert len(helps) >= 30
    failures = [(r["args"], r["code"], r["exc"]) for r in results if r["code"] != 0]
    assert not failures, failures
    for r in helps:
        assert "Usage:" in r["out"], r["args"]
    version = results[0]
    assert version["args"] == ["--version"]
    from alignkit import __version__

    assert version["out"].strip() == f"alignkit {__version__}"
    imported = [(r["args"], r["heavy"]) for r in results if r["heavy"]]
    assert not imported, f"heavy modules imported at start-up: {imported[:3]}"


def test_the_probe_would_see_a_heavy_import():
    # the sys.modules check is real: importing one heavy module is seen by the same mechanism
    code = "import sys, json; import alignkit.cli; import datasets; print(json.dumps([m for m in %r if m in sys.modules]))"
    proc = subprocess.run([sys.executable, "-c", code % (HEAVY,)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "datasets" in json.loads(proc.stdout.strip().splitlines()[-1])


def test_console_entry_help_in_a_real_process():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "alignkit", "--help"], capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0
    assert "Usage: alignkit" in proc.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "typer" in imported  # the import log is read correctly
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
