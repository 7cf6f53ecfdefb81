"""Nothing alignkit writes is ever left half-written.

* Static: every place in the package that writes a file is listed here with the reason it is safe
  (temp file + rename, a temp dir renamed into place, an append-only log, the run lock); a new write
  site fails this test until it uses alignkit.fsutil or is reviewed and listed, and a listed site that
  no longer exists (moved, renamed, now through fsutil) fails it until the entry is updated.
* Dynamic: real commands run under tests/robustness/write_spy.py, which records every file opened for
  writing: each is renamed into place afterwards (or is an append-only log / the lock).
* Kills: writers are SIGKILLed half-way through a write (write_spy stalls it there): the target holds
  the old content or nothing, never half of the new; append-only logs lose at most the line being
  written, and the reader repairs it.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.eval_support import FakeJudge, write_mtbench_files
from tests.helpers import cli_env
from tests.robustness.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "alignkit"

# --------------------------------------------------------------------------- static: every write site

WRITE_ATTRS = {"write_text", "write_bytes", "savefig", "write_table", "save_to_disk", "save_pretrained", "save_model"}
PATH_WRITERS = {"to_parquet", "to_json", "to_csv"}  # only with a path argument
SHUTIL = {"copyfile", "copy", "copy2", "copytree", "move"}

TEMP_DIR = "written inside a temp dir that is renamed into place as a whole"
REVIEWED = {
    # the primitives
    ("alignkit/fsutil.py", "write_bytes_atomic", "os.fdopen:wb"): "mkstemp in the target's dir, fsync, os.replace",
    ("alignkit/fsutil.py", "append_jsonl", "append:a"): "one JSON line per call, flushed and fsynced",
    ("alignkit/eval/sources.py", "fetch", "open:wb"): "downloads to a .part sibling, then os.replace",
    ("alignkit/data/fingerprint.py", "HashCache.save", "os.fdopen:w"): "mkstemp, then os.replace",
    ("alignkit/commands/recipes.py", "copy", "write_text"): "a .yaml.tmp sibling, then shutil.move (a rename)",
    ("alignkit/commands/recipes.py", "copy", "shutil.move"): "the rename of the .yaml.tmp file",
    # in-memory first, then one of the primitives
    ("alignkit/eval/report.py", "_save_png", "savefig"): "into a BytesIO, then fsutil.write_bytes_atomic",
    ("alignkit/sweep/report.py", "_save", "savefig"): "into a BytesIO, then fsutil.write_bytes_atomic",
    ("alignkit/demo/plot.py", "plot_loss_curves", "savefig"): "into a BytesIO, then fsutil.write_bytes_atomic",
    # whole directories built aside and renamed into place
    ("alignkit/data/build.py", "_write_parquet", "write_table"): TEMP_DIR + " (build_mixture)",
    ("alignkit/data/build.py", "build_mixture", "write_text"): TEMP_DIR,
    ("alignkit/aif/manifest.py", "write_dataset_dir", "save_to_disk"): TEMP_DIR,
    ("alignkit/aif/manifest.py", "write_dataset_dir", "write_text"): TEMP_DIR,
    ("alignkit/aif/binarize.py", "binarize.extra", "open:w"): TEMP_DIR + " (the extra(tmp) hook)",
    ("alignkit/aif/binarize.py", "plot_scores", "savefig"): TEMP_DIR + " (called from binarize.extra)",
    ("alignkit/demo/assets.py", "_write_jsonl", "open:w"): TEMP_DIR + " (ensure_demo_assets)",
    ("alignkit/demo/assets.py", "_build", "write_text"): TEMP_DIR,
    ("alignkit/demo/assets.py", "_build_tokenizer", "save_pretrained"): TEMP_DIR,
    ("alignkit/demo/assets.py", "_build_model", "save_pretrained"): TEMP_DIR,
    ("alignkit/train/loading.py", "merge_adapter", "save_pretrained"): "a mkdtemp dir, then os.replace",
    # append-only logs, locks
    ("alignkit/client/log.py", "JsonlLog._load", "append:ab"): "repair: ends a complete last line with its newline",
    ("alignkit/client/log.py", "JsonlLog._load", "open:r+b"): "repair: cuts an interrupted last line off",
    ("alignkit/demo/assets.py", "_lock", "append:a+"): "an flock file; nothing is written to it",
    ("alignkit/demo/run.py", "quiet_libraries", "append:a"): "demo.log: library warnings appended as they come "
    "(a log, not a result)",
    ("alignkit/demo/run.py", "run_stage", "open:w"): "the stage's log, streamed as the child prints (a log, not a result)",
    ("alignkit/launch/spawn.py", "_acquire_lock", "os.open"): "the run lock: O_CREAT|O_EXCL is the lock itself; a "
    "lock left empty by a kill reads as stale",
    ("alignkit/launch/spawn.py", "_acquire_lock", "os.fdopen:w"): "the owner written into the lock just created",
    # the Trainer's final save
    ("alignkit/train/common.py", "save", "save_model"): "the final model, by the Trainer; status.json says "
    "'completed' (atomically) only after it, and a re-run redoes an interrupted save",
    ("alignkit/train/common.py", "save", "save_pretrained"): "the tokenizer, before status 'completed' (see save_model)",
}


def _mode(call: ast.Call):
    if len(call.args) > 1:
        return call.args[1]
    return next((k.value for k in call.keywords if k.arg == "mode"), None)


def write_sites(root: Path = PACKAGE) -> dict[tuple[str, str, str], list[int]]:
    """(file, enclosing function, kind) -> lines, for every call in the package that writes a file."""
    found: dict[tuple[str, str, str], list[int]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        stack: list[str] = []

        def kind_of(node: ast.Call) -> str | None:
            f = node.func
            if (isinstance(f, ast.Name) and f.id == "open") or (
                    isinstance(f, ast.Attribute) and f.attr == "open" and isinstance(f.value, ast.Name)
                    and f.value.id in ("io", "builtins")):
                m = _mode(node)
                if m is None:
                    return None
                if not (isinstance(m, ast.Constant) and isinstance(m.value, str)):
                    return "open:?"
                if m.value.startswith("a"):
                    return f"append:{m.value}"
                return f"open:{m.value}" if any(c in m.value for c in "wx+") else None
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "os":
                if f.attr == "fdopen":
                    m = _mode(node)
                    return f"os.fdopen:{m.value if isinstance(m, ast.Constant) else '?'}"
                if f.attr == "open" and any(x in ast.unparse(node) for x in ("O_WRONLY", "O_RDWR", "O_CREAT")):
                    return "os.open"
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "shutil" \
                    and f.attr in SHUTIL:
                return f"shutil.{f.attr}"
            if isinstance(f, ast.Attribute) and f.attr in WRITE_ATTRS:
                return f.attr
            if isinstance(f, ast.Attribute) and f.attr in PATH_WRITERS and (node.args or node.keywords):
                return f.attr
            return None

        class Visitor(ast.NodeVisitor):
            def visit_FunctionDef(self, node):
                stack.append(node.name)
                self.generic_visit(node)
                stack.pop()

            visit_AsyncFunctionDef = visit_FunctionDef
            visit_ClassDef = visit_FunctionDef

            def visit_Call(self, node):
                kind = kind_of(node)
                if kind:
                    found.setdefault((rel, ".".join(stack) or "<module>", kind), []).append(node.lineno)
                self.generic_visit(node)

        Visitor().visit(tree)
    return found


def test_the_scanner_sees_the_kinds_of_writes_it_looks_for(tmp_path):
    pkg = tmp_path / "alignkit"
    pkg.mkdir()
    (pkg / "m.py").write_text(
        "import os, shutil\n"
        "def a(p):\n    open(p, 'w').write('x')\n"
        "def b(p):\n    p.write_text('x')\n"
        "class C:\n    def c(self, fig, p):\n        fig.savefig(p)\n"
        "def d(p):\n    fd = os.open(p, os.O_WRONLY | os.O_CREAT)\n    os.fdopen(fd, 'w')\n"
        "def e(p):\n    open(p, 'a')\n    open(p)\n    open(p, 'rb')\n    shutil.copy(p, p)\n"
        "def f(ds, p):\n    ds.to_json(p)\n    ds.to_json()\n"
    )
    assert write_sites(pkg) == {
        ("alignkit/m.py", "a", "open:w"): [3], ("alignkit/m.py", "b", "write_text"): [5],
        ("alignkit/m.py", "C.c", "savefig"): [8], ("alignkit/m.py", "d", "os.open"): [10],
        ("alignkit/m.py", "d", "os.fdopen:w"): [11], ("alignkit/m.py", "e", "append:a"): [13],
        ("alignkit/m.py", "e", "shutil.copy"): [16], ("alignkit/m.py", "f", "to_json"): [18],
    }


def test_every_write_site_in_the_package_is_atomic_or_reviewed():
    new = {k: v for k, v in write_sites().items() if k not in REVIEWED}
    assert not new, (
        "files written without alignkit.fsutil (write_atomic / write_bytes_atomic / write_json_atomic / "
        "append_jsonl) and not reviewed: " + "; ".join(f"{f}:{lines} in {fn} ({kind})" for (f, fn, kind), lines
                                                     in sorted(new.items()))
        + ". Use fsutil, or write into a temp dir renamed into place and add the site to REVIEWED with the reason."
    )


def test_every_reviewed_write_site_still_exists():
    """A stale entry (the code moved, was renamed or now uses fsutil) would let a new, unreviewed write in
    the same (file, function, kind) slot pass unseen: the table lists exactly the sites there are."""
    sites = write_sites()
    stale = sorted(k for k in REVIEWED if k not in sites)
    assert not stale, (
        "REVIEWED lists write sites that are no longer in the package: "
        + "; ".join(f"{f} in {fn} ({kind})" for f, fn, kind in stale)
        + ". Remove them from REVIEWED, or move them to the site's new file/function (and check the reason "
        "still holds there)."
    )


# --------------------------------------------------------------------------- dynamic: what real commands open


def spy(args: list[str], env, log: Path, *, stall: str | None = None, stall_min: int = 2, no_child: bool = False,
        cwd=None, code: str | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tests.robustness.write_spy", str(log)]
    if stall:
        cmd += ["--stall", stall, "--stall-min", str(stall_min)]
    if no_child:
        cmd.append("--no-child")
    if code is not None:
        cmd += ["--exec", code]
    else:
        cmd += ["--", *map(str, args)]
    env = cli_env(env)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env["PYTHONPATH"]])  # write_spy is in tests/, not installed
    return subprocess.Popen(cmd, env=env, cwd=cwd or REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


def unsafe_writes(evts: list[dict], under: Path) -> list[dict]:
    """Files under `under` opened for writing that were neither renamed into place afterwards (themselves or
    a parent dir) nor append-only, a no-name O_TMPFILE, or the run lock."""
    bad = []
    for i, e in enumerate(evts):
        if e["op"] != "open" or not e["path"].startswith(str(under)):
            continue
        mode, path = e["mode"], e["path"]
        if mode.startswith("a") or mode == "tmpfile" or path.endswith("/alignkit/lock"):
            continue
        renamed = any(r["op"] == "rename" and (path == r["src"] or path.startswith(r["src"] + "/"))
                      for r in evts[i + 1:])
        if not renamed:
            bad.append(e)
    return bad


@pytest.fixture(scope="module")
def served():
    with FakeJudge(lambda body: "Rating: [[6]]") as judge:
        yield judge.base_url


def _run_dir_with_results(d: Path) -> Path:
    run = d / "run"
    run.mkdir(parents=True)
    (run / "trainer_state.json").write_text(json.dumps({"log_history": [
        {"step": s, "loss": 2.0 / s, "learning_rate": 1e-3} for s in range(1, 6)] + [{"step": 5, "eval_loss": 0.9}]}))
    (run / "eval").mkdir()
    (run / "eval" / "results.json").write_text(json.dumps({"benchmark": "mt-bench", "overall": 6.0, "turn_1": 6.0,
                                                          "turn_2": 6.0, "categories": {"math": {"overall": 6.0}}}))
    return run


COMMANDS = {
    # the run files of a 2-process ZeRO-3 launch: run.yaml, accelerate.yaml, deepspeed.json, command.sh, lock
    "sft-run-files": lambda d, m, s: ["sft", "--recipe", "tiny", "--profile", "full,cpu", "--num-gpus", "2",
                                      "--per_device_train_batch_size=8", f"--output_dir={d}/out"],
    "report": lambda d, m, s: ["report", str(_run_dir_with_results(d)), "--output", f"{d}/out"],
    "eval-mt-bench": lambda d, m, s: ["eval", "mt-bench", "--model", "served", "--model-base-url", s,
                                      "--judge-model", "j", "--judge-base-url", s, "--max-new-tokens", "4",
                                      *[x for k, v in write_mtbench_files(d / "mt").items()
                                        for x in (f"--{k.replace('_', '-')}", v)], "--output", f"{d}/out"],
    "mix-build": lambda d, m, s: ["mix", "build", "--task", "sft", "--recipe", "tiny", "--output", f"{d}/out"],
    "recipes-copy": lambda d, m, s: ["recipes", "copy", "tiny", f"{d}/out"],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_real_commands_write_every_file_by_temp_and_rename(name, tmp_path, tiny_env, tiny_model_dir, served):
    log = tmp_path / "spy.jsonl"
    args = COMMANDS[name](tmp_path, tiny_model_dir, served)
    proc = spy(args, tiny_env, log, no_child=True)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-4000:]
    evts = events(log)
    written = [e["path"] for e in evts if e["op"] == "open" and e["path"].startswith(str(tmp_path))]
    assert written, f"{name} wrote nothing? {evts}"
    assert not unsafe_writes(evts, tmp_path), unsafe_writes(evts, tmp_path)
    # and what is there is whole
    for f in (tmp_path / "out").rglob("*"):
        if f.is_file() and not f.name.startswith("."):
            if f.suffix == ".json":
                json.loads(f.read_text())
            elif f.suffix in (".yaml", ".yml"):
                yaml.safe_load(f.read_text())
            elif f.suffix == ".jsonl":
                assert all(json.loads(line) is not None for line in f.read_text().splitlines())
            elif f.suffix == ".png":
                assert f.read_bytes().endswith(b"IEND\xaeB`\x82")
    if name == "sft-run-files":
        rdir = tmp_path / "out" / "alignkit"
        assert {"run.yaml", "accelerate.yaml", "deepspeed.json", "command.sh"} <= {p.name for p in rdir.iterdir()}


# --------------------------------------------------------------------------- kills half-way through a write


def stall_and_kill(proc: subprocess.Popen, timeout: float = 180) -> str:
    """Wait for write_spy to say it stalled a write, SIGKILL it there; return the path it was writing."""
    import threading

    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()

    def stalled():
        found = next((ln for ln in list(lines) if ln.startswith("STALLED ")), None)
        if found is None and proc.poll() is not None:
            reader.join(5)
            raise AssertionError(f"the writer ended (exit {proc.returncode}) before stalling:\n{''.join(lines)[-3000:]}")
        return found

    try:
        line = wait_for(stalled, timeout, "the write to stall")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return line.split(" ", 1)[1].strip()


BIG = "x" * 4_000_000  # big enough that half of it is plainly not the whole
WRITERS = {
    "fsutil.write_atomic": "from alignkit.fsutil import write_atomic as w; w(TARGET, NEW)",
    "fsutil.write_bytes_atomic": "from alignkit.fsutil import write_bytes_atomic as w; w(TARGET, NEW.encode())",
    "fsutil.write_json_atomic": "from alignkit.fsutil import write_json_atomic as w; w(TARGET, {'big': NEW})",
    "eval.bench.write_results": "from alignkit.eval.bench import write_results as w; w(Path(TARGET), {'big': NEW})",
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_writer_killed_half_way_leaves_the_old_file(writer, tmp_path, tiny_env):
    target = tmp_path / "results.json"
    old = json.dumps({"old": True}) + "\n"
    target.write_text(old)
    code = (f"from pathlib import Path\nTARGET = {str(target)!r}\nNEW = 'x' * {len(BIG)}\n" + WRITERS[writer])
    proc = spy([], tiny_env, tmp_path / "spy.jsonl", stall="*results.json*", code=code)
    stalled = stall_and_kill(proc)
    assert Path(stalled) != target, "the target itself was opened for writing"
    assert 0 < Path(stalled).stat().st_size < len(BIG), "the kill did not land half-way"
    assert target.read_text() == old


@pytest.mark.parametrize("writer", ["fsutil.append_jsonl", "client.JsonlLog"])
def test_an_append_killed_half_way_loses_only_that_line(writer, tmp_path, tiny_env):
    log_file = tmp_path / "answers.jsonl"
    if writer == "fsutil.append_jsonl":
        setup = "from alignkit.fsutil import append_jsonl\nadd = lambda r: append_jsonl(TARGET, r)\n"
    else:
        setup = "from alignkit.client import JsonlLog\nadd = JsonlLog(Path(TARGET), key=lambda r: r['i']).append\n"
    code = (f"from pathlib import Path\nTARGET = {str(log_file)!r}\n{setup}"
            "for i in range(3):\n    add({'i': i, 'text': 'y' * 100})\n"
            "add({'i': 3, 'text': 'x' * 200000})\n")
    # only the 4th record is big enough to be stalled: the kill lands inside it
    stall_and_kill(spy([], tiny_env, tmp_path / "spy.jsonl", stall="answers.jsonl", stall_min=100_000, code=code))
    text = log_file.read_text()
    *whole, cut = text.split("\n")
    assert [json.loads(x)["i"] for x in whole] == [0, 1, 2]
    assert cut and cut.startswith('{"i": 3'), "the kill did not land inside the 4th line"
    from alignkit.client import JsonlLog

    reopened = JsonlLog(log_file, key=lambda r: r["i"])  # the reader drops the cut line and repairs the file
    assert sorted(r["i"] for r in reopened.values()) == [0, 1, 2] and reopened.repaired
    reopened.append({"i": 3})
    assert [json.loads(x)["i"] for x in log_file.read_text().splitlines()] == [0, 1, 2, 3]


def test_a_report_killed_while_writing_a_plot_leaves_no_half_png(tmp_path, tiny_env):
    run = _run_dir_with_results(tmp_path)
    out = tmp_path / "rep"
    proc = spy(["report", str(run), "--output", str(out)], tiny_env, tmp_path / "spy.jsonl", stall="*loss.png*")
    stalled = stall_and_kill(proc)
    assert Path(stalled).parent == out and Path(stalled).name != "loss.png"
    assert not (out / "loss.png").exists() and not (out / "report.md").exists()
    again = spy(["report", str(run), "--output", str(out)], tiny_env, tmp_path / "spy2.jsonl")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    assert (out / "loss.png").read_bytes().endswith(b"IEND\xaeB`\x82") and (out / "report.md").is_file()


def test_an_sft_killed_while_writing_its_run_file_starts_clean_next_time(tmp_path, tiny_env):
    out = tmp_path / "out"
    args = ["sft", "--recipe", "tiny", "--profile", "cpu", f"--output_dir={out}", "--max_steps=1"]
    proc = spy(args, tiny_env, tmp_path / "spy.jsonl", stall="*run.yaml*", no_child=True)
    stalled = stall_and_kill(proc)
    rdir = out / "alignkit"
    assert Path(stalled).parent == rdir and Path(stalled).name != "run.yaml"
    assert not (rdir / "run.yaml").exists()
    assert (rdir / "lock").exists()  # left by the killed parent: stale now
    again = spy(args, tiny_env, tmp_path / "spy2.jsonl", no_child=True)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    assert "cleared a stale lock" in err and "starting" in err
    assert yaml.safe_load((rdir / "run.yaml").read_text())["config"]["train"]["max_steps"] == 1
    assert not (rdir / "lock").exists()
