"""The one way the tests run the alignkit CLI in a subprocess.

* ``cli_argv()``: the command that starts the CLI. ``$ALIGNKIT_CLI`` when set (an installed ``alignkit``
  executable, e.g. from a wheel; split like a shell would), else ``python -m alignkit`` from this checkout.
* ``cli_env(env=None, env_extra=None, no_gpu=True)``: the environment for it: ``env`` (default
  ``os.environ``) without ``ALIGNKIT_DEBUG``, offline Hugging Face, wide ``COLUMNS`` (rich does not wrap),
  unbuffered output, ``CUDA_VISIBLE_DEVICES=""`` unless ``no_gpu=False``, this checkout first on
  ``PYTHONPATH`` (not when ``$ALIGNKIT_CLI`` points elsewhere, so the installed copy is the one tested), the
  training guard of tests/spawn_guard (see tests/conftest.py), then ``env_extra`` on top.
* ``run_cli(*args, ...)``: run it to the end, output captured as text, stdin closed, a timeout.
* ``popen_cli(*args, ...)``: start it in the background (``subprocess.Popen`` keywords pass through).
* ``invoke_cli(*args, ...)``: the same command in this process (no interpreter start), ended as the console
  entry point ends it: exit code, stdout and stderr as a user sees them.
* ``flat(text)``: whitespace collapsed (rich wraps long lines).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GUARD_DIR = Path(__file__).resolve().parent / "spawn_guard"
# set (to a log file) while a test that must not train runs; tests/spawn_guard/sitecustomize.py reads it
GUARD_VAR = "ALIGNKIT_TESTS_NO_TRAINING"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def installed_cli() -> str | None:
    """``$ALIGNKIT_CLI`` when it names an executable to test instead of this checkout."""
    return os.environ.get("ALIGNKIT_CLI", "").strip() or None


def cli_argv() -> list[str]:
    exe = installed_cli()
    return shlex.split(exe) if exe else [sys.executable, "-m", "alignkit"]


def cli_env(env: dict[str, str] | None = None, env_extra: dict[str, str] | None = None, *,
            no_gpu: bool = True) -> dict[str, str]:
    out = {k: v for k, v in (os.environ if env is None else env).items() if k != "ALIGNKIT_DEBUG"}
    out.update(OFFLINE)
    out.update({"COLUMNS": "400", "PYTHONUNBUFFERED": "1"})
    if no_gpu:
        out["CUDA_VISIBLE_DEVICES"] = ""
    mine = {str(REPO), str(GUARD_DIR)}
    rest = [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p and p not in mine]
    out["PYTHONPATH"] = os.pathsep.join([str(GUARD_DIR), *([] if installed_cli() else [str(REPO)]), *rest])
    # the guard follows the current test (tests/conftest.py sets it), whatever env was copied earlier
    if GUARD_VAR in os.environ:
        out[GUARD_VAR] = os.environ[GUARD_VAR]
    else:
        out.pop(GUARD_VAR, None)
    out.update(env_extra or {})
    return out


def run_cli(*args, env: dict[str, str] | None = None, env_extra: dict[str, str] | None = None, cwd=None,
            timeout: float = 180, input: str | None = None, no_gpu: bool = True) -> subprocess.CompletedProcess:
    """``alignkit ARGS`` to the end: exit code and streams as a user sees them."""
    return subprocess.run([*cli_argv(), *map(str, args)], env=cli_env(env, env_extra, no_gpu=no_gpu), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, input=input,
                          stdin=subprocess.DEVNULL if input is None else None)


def popen_cli(*args, env: dict[str, str] | None = None, env_extra: dict[str, str] | None = None, cwd=None,
              no_gpu: bool = True, **popen_kw) -> subprocess.Popen:
    """``alignkit ARGS`` started in the background; the caller waits (or kills) it."""
    popen_kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen([*cli_argv(), *map(str, args)], env=cli_env(env, env_extra, no_gpu=no_gpu), cwd=cwd,
                            **popen_kw)


def flat(text: str | None) -> str:
    """Whitespace collapsed: rich wraps long lines and paths."""
    return " ".join((text or "").split())


def invoke_cli(*args, env: dict[str, str] | None = None, env_extra: dict[str, str] | None = None, cwd=None,
               no_gpu: bool = True) -> subprocess.CompletedProcess:
    """``alignkit ARGS`` in this process, ended the way the console entry point ends it (``alignkit.cli.main``:
    an error is its message on stderr and its exit code, via ``alignkit.cli.report``): a fraction of a second
    instead of an interpreter start. The environment (``cli_env``) and the working directory are the call's and
    restored after; stdin is empty. For what needs a real process (signals, stdin, the installed executable,
    what gets imported), use ``run_cli``."""
    import contextlib
    import io

    from alignkit.cli import report

    environ = cli_env(env, env_extra, no_gpu=no_gpu)
    saved_env, saved_cwd, saved_stdin = dict(os.environ), os.getcwd(), sys.stdin
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(environ)
        if cwd is not None:
            os.chdir(cwd)
        sys.stdin = io.StringIO("")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                _command()(args=[str(a) for a in args], prog_name="alignkit")
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - what main() does with it
                code = report(exc)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.stdin = saved_stdin
    return subprocess.CompletedProcess(["alignkit", *map(str, args)], code, out.getvalue(), err.getvalue())


_COMMAND: list = []


def _command():
    """The click command typer builds from alignkit's app (``typer.main.get_command``), built once: building it
    is most of an in-process call's time, and the app does not change within a test session."""
    if not _COMMAND:
        import typer

        from alignkit.cli import app

        _COMMAND.append(typer.main.get_command(app))
    return _COMMAND[0]
