"""`alignkit plan` on the command line: table and JSON, exit codes (0 fits, 3 does not fit, 2 bad input),
overrides passed through like `alignkit sft`, and no heavy import.

Most tests build an app with `alignkit.commands.plan.register` — the one line cli.py uses — so they exercise the
command's real signature; `test_wired_into_the_alignkit_cli` runs the installed entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from alignkit.commands import plan as plan_cmd
from tests.helpers import run_cli

REPO = Path(__file__).resolve().parents[2]
ZEPHYR = ["plan", "--recipe", "zephyr-7b-beta"]


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

    @app.callback()
    def _root() -> None:
        pass

    plan_cmd.register(app)
    return app


APP = _app()


def invoke(*args: str):
    """Like alignkit.cli.main: an AlignkitError becomes its message on stderr and its exit code."""
    from alignkit import ui
    from alignkit.errors import AlignkitError

    runner = CliRunner()
    result = runner.invoke(APP, list(args), env={"COLUMNS": "200", "CUDA_VISIBLE_DEVICES": ""})
    if isinstance(result.exception, AlignkitError):
        ui.err_console.cache_clear()
        return result.exception.exit_code, result.stdout, result.exception.render()
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


def test_fits_exit_0_with_a_table():
    code, out, _ = invoke(*ZEPHYR, "--profile", "full", "--num-gpus", "8", "--gpu-mem-gb", "80")
    assert code == 0, out
    for text in ("weights", "optimizer states", "activations", "LM head", "peak estimate", "fits:",
                 "Mistral-7B-v0.1", "ZeRO-3 over 8", "32 per device x 2 accumulation x 8 = 512"):
        assert text in out, text


def test_does_not_fit_exit_3_with_the_changes_that_would_fit():
    code, out, _ = invoke(*ZEPHYR, "--profile", "full", "--num-gpus", "1", "--gpu-mem-gb", "24")
    assert code == plan_cmd_exit_does_not_fit() == 3
    assert "does not fit" in out and "to make it fit" in out and "--profile qlora" in out


def plan_cmd_exit_does_not_fit() -> int:
    from alignkit.memory import EXIT_DOES_NOT_FIT

    return EXIT_DOES_NOT_FIT


def test_json_is_one_object_on_stdout():
    code, out, _ = invoke(*ZEPHYR, "--task", "sft", "--profile", "qlora", "--num-gpus", "1", "--gpu-mem-gb", "24",
                          "--json")
    assert code == 0
    data = json.loads(out)
    assert data["fits"] is True and data["settings"]["adaptation"] == "qlora"
    assert data["memory_per_device_gib"] == 24 and data["world_size"] == 1


def test_overrides_and_model_size_pass_through():
    code, out, _ = invoke(*ZEPHYR, "--task", "dpo", "--profile", "full", "--num-gpus", "8", "--json",
                          "--per_device_train_batch_size=2", "--max_length=512", "--model", "13b")
    assert code == 0
    data = json.loads(out)
    s = data["settings"]
    assert (s["per_device_train_batch_size"], s["max_length"], s["rows_per_forward"]) == (2, 512, 4)
    assert s["global_batch_size"] == 64  # accumulation recomputed to keep the recipe's global batch
    assert data["model"]["source"].startswith("size 13b") and data["task"] == "dpo"
    assert data["memory_source"].startswith("assumed 80")  # no GPU here: the default, said so


@pytest.mark.parametrize("model", [
    "google/gemma-7b", "mistral-community/Mixtral-8x22B-v0.1", "bigcode/starcoder2-15b", "HuggingFaceTB/SmolLM-135M",
    "HuggingFaceTB/SmolLM-360M", "HuggingFaceTB/SmolLM2-1.7B", "HuggingFaceTB/SmolLM3-3B",
])
def test_plans_the_handbook_recipe_families(model):
    """Gemma, Mixtral MoE, StarCoder2 and SmolLM 1/2/3 (issue 14): planned offline from alignkit's table."""
    from alignkit.memory import resolve_arch

    code, out, err = invoke(*ZEPHYR, "--profile", "full", "--num-gpus", "8", "--gpu-mem-gb", "80", "--model", model,
                            "--json")
    assert code in (0, 3), err
    data = json.loads(out)
    assert data["model"]["name"] == model and data["model"]["source"] == "alignkit's table of known models"
    assert data["model"]["params"] == data["model"]["trainable_params"] == resolve_arch(model).total_params
    assert data["fits"] is (code == 0)
    moe = model.startswith("mistral-community/")
    assert (data["model"]["active_params"] < data["model"]["params"]) is moe
    assert data["model"]["arch"]["experts"] == (8 if moe else 1)


def test_moe_table_says_how_many_parameters_are_active():
    code, out, _ = invoke(*ZEPHYR, "--profile", "full", "--num-gpus", "8", "--gpu-mem-gb", "80", "--model",
                          "mistral-community/Mixtral-8x22B-v0.1")
    assert code == 3  # 141B with full fine-tuning needs more than 8 x 80 GB
    out = " ".join(out.split())  # rich may wrap the model line where the terminal is narrow
    assert "MoE 2 of 8 experts (39.2B active)" in out and "140.62B params" in out


def test_bad_input_exit_2():
    code, _, err = invoke(*ZEPHYR, "--profile", "fulll", "--num-gpus", "8")
    assert code == 2 and "--profile" in err
    code, _, err = invoke(*ZEPHYR, "--model", "acme/unknown-model")
    assert code == 2 and "--model" in err and "7b" in err
    code, _, err = invoke(*ZEPHYR, "--task", "kto")
    assert code == 2 and "--task" in err
    code, _, err = invoke(*ZEPHYR, "--task", "orpo")  # a task the recipe has no step for
    assert code == 2 and "has no orpo step" in err
    code, _, err = invoke(*ZEPHYR, "--gpu-mem-gb", "0")
    assert code == 2 and "--gpu-mem-gb" in err
    code, _, err = invoke(*ZEPHYR, "--lerning_rate=1e-5")
    assert code == 2 and "learning_rate" in err


def test_help_names_the_exit_codes():
    result = CliRunner().invoke(APP, ["plan", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("--gpu-mem-gb", "--model", "--num-nodes", "--json", "3 does not fit"):
        assert text in result.stdout, text


def test_plan_imports_nothing_heavy():
    probe = textwrap.dedent("""
        import sys
        from typer.testing import CliRunner
        import typer
        from alignkit.commands import plan
        app = typer.Typer()
        @app.callback()
        def _r(): pass
        plan.register(app)
        r = CliRunner().invoke(app, ["plan", "--recipe", "zephyr-7b-beta", "--profile", "qlora", "--num-gpus", "1",
                                     "--gpu-mem-gb", "24", "--json"])
        assert r.exit_code == 0, r.output
        heavy = [m for m in ("torch", "transformers", "trl", "peft", "datasets", "bitsandbytes", "deepspeed")
                 if m in sys.modules]
        print(heavy)
    """)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_wired_into_the_alignkit_cli():
    """The real entry point (alignkit/cli.py must call plan.register(app))."""
    proc = run_cli(*ZEPHYR, "--profile", "full", "--num-gpus", "1", "--gpu-mem-gb", "24", "--json", timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["fits"] is False
    assert "Traceback" not in proc.stderr


def test_a_whole_memory_size_is_printed_as_given():
    code, out, _ = invoke(*ZEPHYR, "--task", "sft", "--profile", "qlora", "--num-gpus", "1", "--gpu-mem-gb", "24")
    assert code == 0, out
    assert "24 GiB per GPU (--gpu-mem-gb)" in out and " of 24 GiB per GPU" in out
    assert "24.0 GiB" not in out
    code, out, _ = invoke(*ZEPHYR, "--task", "sft", "--profile", "qlora", "--num-gpus", "1", "--gpu-mem-gb", "23.5")
    assert "23.5 GiB per GPU" in out
