"""Secrets and safety.

* With canary values in HF_TOKEN, HUGGING_FACE_HUB_TOKEN, OPENAI_API_KEY, WANDB_API_KEY and a judge key,
  every command that needs no GPU runs for real (dry-runs, env, validate, recipes, config, mix preview,
  slurm submit (dry and not), eval against local servers — one of which echoes the key back in its error —,
  report, and a tiny real sft run): no canary in stdout, stderr or any file written.
* YAML is only ever read by SafeLoader subclasses.
* trust_remote_code is off unless set, and the summary says so loudly when it is on.
* What alignkit writes stays inside the output dir: a hostile ../../x output dir becomes an absolute path
  and nothing lands outside it; a symlinked run file is replaced, never followed; names (job names,
  model ids) never become paths outside their directory.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
from pathlib import Path

import pytest
import yaml

from tests.eval_support import FakeJudge, write_mtbench_files
from tests.helpers import flat, run_cli
from tests.robustness.conftest import CANARIES, with_canaries
from tests.robustness.test_atomic_writes import events, spy

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "alignkit"


def leaked(text: str) -> list[str]:
    return [name for name, value in CANARIES.items() if value in (text or "")]


def leaked_files(root: Path) -> list[str]:
    found = []
    for p in Path(root).rglob("*"):
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            found += [f"{p}: {name}" for name, value in CANARIES.items() if value.encode() in data]
    return found


# --------------------------------------------------------------------------- every command, with canaries


def _commands(d: Path, served: dict[str, str]) -> dict[str, list[str]]:
    mt = write_mtbench_files(d / "mt")
    mt_args = ["--questions", mt["questions"], "--references", mt["references"], "--judge-prompts",
               mt["judge_prompts"], "--max-new-tokens", "4", "--limit", "2"]
    run = d / "a-run"
    run.mkdir()
    (run / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}]}))
    return {
        "sft-dry-run": ["sft", "--recipe", "zephyr-7b-beta", "--profile", "full", "--num-gpus", "8", "--dry-run"],
        "sft-dry-run-json": ["sft", "--recipe", "zephyr-7b-beta", "--profile", "qlora", "--dry-run", "--json",
                             "--report_to=wandb", "--push-to-hub"],
        "dpo-dry-run": ["dpo", "--recipe", "tiny", "--profile", "lora,cpu", "--dry-run", "--push-to-hub"],
        # a token pasted into a config value by mistake is masked wherever it is shown
        "token-as-a-value": ["sft", "--recipe", "tiny", "--profile", "cpu", "--dry-run", "--json",
                             f"--hub_model_id={CANARIES['HF_TOKEN']}", f"--run_name={CANARIES['WANDB_API_KEY']}"],
        "validate": ["validate", "--recipe", "tiny"],
        "env": ["env"],
        "env-json": ["env", "--json"],
        "recipes-show": ["recipes", "show", "zephyr-7b-beta", "--task", "dpo", "--explain"],
        "config-fields": ["config", "fields", "--task", "dpo", "--search", "hub"],
        "mix-preview": ["mix", "preview", "--task", "sft", "--recipe", "tiny", "--json"],
        "slurm-dry-run": ["slurm", "submit", "--task", "sft", "--recipe", "tiny", "--profile", "cpu", "-G", "1",
                          "--dry-run", f"--output_dir={d}/slurm-dry", "--push_to_hub=true"],
        # not dry: writes the run files and the sbatch script, then sbatch refuses (a fake one: no cluster here)
        "slurm-submit": ["slurm", "submit", "--task", "sft", "--recipe", "tiny", "--profile", "cpu", "-G", "1",
                         f"--output_dir={d}/slurm-out", "--push_to_hub=true"],
        "eval-mt-bench": ["eval", "mt-bench", "--model", "served", "--model-base-url", served["model"],
                          "--model-api-key-env", "OPENAI_API_KEY", "--judge-model", "judge",
                          "--judge-base-url", served["judge"], "--judge-api-key-env", "MY_JUDGE_KEY", *mt_args,
                          "--output", f"{d}/mt-out"],
        "eval-judge-echoes-the-key": ["eval", "mt-bench", "--model", "served", "--model-base-url", served["model"],
                                      "--judge-model", "judge", "--judge-base-url", served["echo"],
                                      "--judge-api-key-env", "MY_JUDGE_KEY", "--max-retries", "0", *mt_args,
                                      "--output", f"{d}/mt-echo"],
        "report": ["report", str(run), f"{d}/mt-out", "--output", f"{d}/report"],
    }


@pytest.fixture(scope="module")
def canary_runs(tmp_path_factory, tiny_env):
    """Every command above, in order (report reads mt-bench's results), with the canaries set."""
    d = tmp_path_factory.mktemp("secrets")
    with FakeJudge(lambda body: "Rating: [[7]]") as model, FakeJudge(lambda body: "Rating: [[7]]") as judge, \
            FakeJudge() as echo:
        echo.always = "echo-auth"  # a server that puts the Authorization header into its error message
        served = {"model": model.base_url, "judge": judge.base_url, "echo": echo.base_url}
        env = with_canaries(tiny_env)
        fake = d / "bin"  # an sbatch that refuses at once (a real one without a cluster retries for a minute)
        fake.mkdir()
        (fake / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: no cluster here' >&2\nexit 1\n")
        (fake / "sbatch").chmod(0o755)
        env["PATH"] = f"{fake}{os.pathsep}{env.get('PATH', '')}"
        from concurrent.futures import ThreadPoolExecutor

        def run(args):
            return run_cli(*args, env=env, cwd=d, timeout=300)

        commands = _commands(d, served)
        report = commands.pop("report")  # reads what eval-mt-bench writes
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = dict(zip(commands, pool.map(run, commands.values())))
        results["report"] = run(report)
        # the keys were really used (else this test would prove nothing)
        assert any(h.get("Authorization") == f"Bearer {CANARIES['MY_JUDGE_KEY']}" for h in judge.headers)
        assert any(h.get("Authorization") == f"Bearer {CANARIES['MY_JUDGE_KEY']}" for h in echo.headers)
        assert any(h.get("Authorization") == f"Bearer {CANARIES['OPENAI_API_KEY']}" for h in model.headers)
    return d, results


NAMES = ["sft-dry-run", "sft-dry-run-json", "dpo-dry-run", "token-as-a-value", "validate", "env", "env-json",
         "recipes-show", "config-fields", "mix-preview", "slurm-dry-run", "slurm-submit", "eval-mt-bench",
         "eval-judge-echoes-the-key", "report"]
FAILS = {"slurm-submit": 1, "eval-judge-echoes-the-key": 1}  # sbatch refuses; a judge that says 400


@pytest.mark.parametrize("name", NAMES)
def test_no_canary_in_what_a_command_prints(name, canary_runs):
    _, results = canary_runs
    proc = results[name]
    assert proc.returncode == FAILS.get(name, 0), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not leaked(proc.stdout), (leaked(proc.stdout), proc.stdout[-2000:])
    assert not leaked(proc.stderr), (leaked(proc.stderr), proc.stderr[-2000:])


def test_masked_values_still_show_where_they_were(canary_runs):
    _, results = canary_runs
    plan = json.loads(results["token-as-a-value"].stdout)
    assert plan["config"]["train"]["hub_model_id"] == "***"  # masked, and the JSON still parses
    echo = flat(results["eval-judge-echoes-the-key"].stderr)
    assert "denied for Bearer ***" in echo or "***" in echo, echo[-2000:]


@pytest.mark.e2e  # scans the files of a real (tiny) training run: the shared reference_run
def test_no_canary_in_any_file_written(canary_runs, reference_run, _offline_session):
    d, results = canary_runs
    assert (d / "slurm-out" / "alignkit" / "run.yaml").is_file()  # the non-dry submit wrote its files
    assert list((d / "slurm-out" / "alignkit").glob("*.sbatch"))
    assert (d / "mt-out" / "results.json").is_file() and (d / "report" / "report.md").is_file()
    ref = reference_run.wait()  # a tiny real sft run with the canaries in its environment
    assert (ref.output_dir / "alignkit" / "env.json").is_file() and (ref.output_dir / "README.md").is_file()
    assert not leaked(ref.stdout) and not leaked(ref.stderr)
    roots = [d, ref.root, Path(_offline_session["HF_HOME"]), Path(_offline_session["ALIGNKIT_CACHE"])]
    found = [hit for root in roots if root.exists() for hit in leaked_files(root)]
    assert not found, found


# --------------------------------------------------------------------------- YAML: safe loaders only


def yaml_load_calls() -> list[tuple[str, int, str, str | None]]:
    """(module, line, function, Loader expression) of every yaml.load/load_all/full_load/unsafe_load call."""
    calls = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "yaml" \
                    and node.func.attr in ("load", "load_all", "full_load", "full_load_all", "unsafe_load",
                                           "unsafe_load_all"):
                loader = next((ast.unparse(k.value) for k in node.keywords if k.arg == "Loader"),
                              ast.unparse(node.args[1]) if len(node.args) > 1 else None)
                calls.append((module, node.lineno, node.func.attr, loader))
    return calls


def test_yaml_is_only_read_by_safe_loaders():
    text = "\n".join(p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py"))
    for unsafe in ("yaml.Loader", "yaml.UnsafeLoader", "yaml.FullLoader", "yaml.unsafe_load", "yaml.full_load",
                   "CLoader", "yaml.BaseLoader"):
        assert unsafe not in text, unsafe
    calls = yaml_load_calls()
    assert calls, "the scan finds the package's yaml.load calls (config/yamlio.py has them)"
    for module, line, func, loader in calls:
        assert func in ("load", "load_all") and loader, (module, line, func)
        cls = eval(loader, vars(importlib.import_module(module)))  # noqa: S307 - a name from our own source
        assert isinstance(cls, type) and issubclass(cls, yaml.SafeLoader), (module, line, loader)


def test_python_tags_in_a_config_are_refused_not_run(tmp_path):
    from alignkit.config.yamlio import load_value, parse_yaml
    from alignkit.errors import ConfigError

    marker = tmp_path / "ran"
    doc = f'!!python/object/apply:os.system ["touch {marker}"]'
    with pytest.raises(ConfigError):
        parse_yaml(doc, "x.yaml")
    with pytest.raises(Exception):  # an override value goes through the same safe loader
        load_value(doc)
    assert not marker.exists()


# --------------------------------------------------------------------------- trust_remote_code


def test_trust_remote_code_is_off_unless_set_and_the_summary_flags_it(tiny_env):
    from alignkit.config.resolve import resolve_config
    for recipe, task in (("tiny", "sft"), ("tiny", "dpo"), ("zephyr-7b-beta", "sft"), ("zephyr-7b-beta", "dpo")):
        assert resolve_config(task, recipe=recipe, profile="cpu").config.model.trust_remote_code is False
    off = run_cli("sft", "--recipe", "tiny", "--profile", "cpu", "--dry-run", env=tiny_env)
    on = run_cli("sft", "--recipe", "tiny", "--profile", "cpu", "--dry-run", "--trust_remote_code=true", env=tiny_env)
    assert off.returncode == on.returncode == 0
    assert "trust_remote_code" not in off.stderr
    assert "trust_remote_code is ON: the model repository's Python code will run" in flat(on.stderr)
    src = "\n".join(p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py"))
    assert "trust_remote_code=True" not in src.replace(" ", "")


def test_eval_and_mix_default_to_no_remote_code():
    import inspect

    from alignkit.commands import eval as eval_cmd, mix as mix_cmd

    for fn in (eval_cmd.mt_bench, eval_cmd.alpaca_eval, eval_cmd.lm_eval_cmd):
        assert inspect.signature(fn).parameters["trust_remote_code"].default is False, fn.__name__
    assert mix_cmd.MixInputs.__dataclass_fields__["trust_remote_code"].default is False


# --------------------------------------------------------------------------- nothing written outside


def test_a_hostile_output_dir_is_absolute_and_nothing_is_written_outside_it(tmp_path, tiny_env):
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    proc = spy(["sft", "--recipe", "tiny", "--profile", "cpu", "--output_dir=../../x", "--max_steps=1"], tiny_env,
               tmp_path / "spy.jsonl", no_child=True, cwd=cwd)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    out = (tmp_path / "x").resolve()
    run = yaml.safe_load((out / "alignkit" / "run.yaml").read_text())
    assert run["config"]["train"]["output_dir"] == str(out)  # absolute: the child never re-resolves ../../x
    assert f"--run {out}/alignkit/run.yaml" in (out / "alignkit" / "command.sh").read_text()
    cache = Path(tiny_env["ALIGNKIT_CACHE"]).resolve()
    written = {e["path"] for e in events(tmp_path / "spy.jsonl") if e["op"] == "open"}
    written |= {e["dst"] for e in events(tmp_path / "spy.jsonl") if e["op"] == "rename"}
    outside = [p for p in written if not (p.startswith(f"{out}/") or p.startswith(f"{cache}/") or p == "/dev/null")]
    assert not outside, outside
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "spy.jsonl", "x"]


def test_a_symlinked_run_file_is_replaced_not_followed(tmp_path, tiny_env):
    victim = tmp_path / "victim.yaml"
    victim.write_text("precious: true\n")
    out = tmp_path / "out"
    (out / "alignkit").mkdir(parents=True)
    (out / "alignkit" / "run.yaml").symlink_to(victim)
    args = ["sft", "--recipe", "tiny", "--profile", "cpu", f"--output_dir={out}", "--max_steps=1"]
    refused = spy(args, tiny_env, tmp_path / "spy1.jsonl", no_child=True)
    _, err = refused.communicate(timeout=300)
    assert refused.returncode == 2 and "different config" in flat(err), err[-2000:]
    again = spy([*args, "--overwrite"], tiny_env, tmp_path / "spy2.jsonl", no_child=True)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-2000:]
    assert victim.read_text() == "precious: true\n"
    assert not (out / "alignkit" / "run.yaml").is_symlink()


def test_names_never_become_paths_outside_their_dir(tmp_path, tiny_env):
    from alignkit.eval.bench import default_output

    for model_id in ("../../x", "/etc/cron.d/x", "..", "a/../../b"):
        out = default_output("served-model", model_id, "mt-bench")
        assert not out.is_absolute() and out.parts[:2] == ("eval", "mt-bench") and len(out.parts) == 3, out
        assert ".." not in out.parts
    proc = run_cli("slurm", "submit", "--task", "sft", "--recipe", "tiny", "--profile", "cpu", "-G", "1", "--dry-run",
                   f"--output_dir={tmp_path}/out", "--job-name", "../../../etc/x", env=tiny_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    would = flat(proc.stderr).split("would write ", 1)[1].split(" and submit", 1)[0]
    assert Path(would).parent == tmp_path / "out" / "alignkit" and ".." not in Path(would).name
