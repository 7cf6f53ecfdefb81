"""`alignkit env` and `alignkit mix preview` of the tiny recipe answer in seconds: neither imports torch
(`env` asks nvidia-smi; `mix preview` builds the tokenizer class AutoTokenizer picked for that directory the
last time, without AutoConfig, whose imports pull in torch). bench/bench_cli.py times them."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imports(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `python -X importtime -m alignkit ARGS`; the top-level packages it imported."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "alignkit", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=300)
    mods = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in proc.stderr.splitlines()
            if line.startswith("import time:")}
    return proc, mods


def _fake_smi(tmp_path: Path, rows: str) -> str:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    smi = bindir / "nvidia-smi"
    smi.write_text("#!/bin/sh\ncat <<'END'\n" + rows + "END\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    return str(bindir)


def test_env_reports_gpus_without_importing_torch(tmp_path, tiny_env):
    proc, mods = _imports(["env", "--json"], tiny_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout)
    assert info["packages"]["torch"] and "gpus" in info and "cuda_available" in info
    assert "torch" not in mods and "transformers" not in mods


def test_gpu_info_from_nvidia_smi(tmp_path, monkeypatch):
    from alignkit.envinfo import gpu_info

    monkeypatch.setenv("PATH", _fake_smi(tmp_path, "0, NVIDIA H100 80GB HBM3, 9.0\n1, Tesla V100-SXM2-16GB, 7.0\n")
                       + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    info = gpu_info("2.13.0+cu128")
    assert info == {"cuda": "12.8", "cuda_available": True, "gpus": ["NVIDIA H100 80GB HBM3", "Tesla V100-SXM2-16GB"],
                    "bf16_supported": False}  # a V100 has no bf16
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert gpu_info("2.13.0+cu128")["gpus"] == ["NVIDIA H100 80GB HBM3"] and gpu_info("2.13.0+cu128")["bf16_supported"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_info("2.13.0+cu128")["cuda_available"] is False
    # a CPU build of torch sees no GPU, whatever nvidia-smi says
    assert gpu_info("2.13.0+cpu") == {"cuda": None, "cuda_available": False, "gpus": [], "bf16_supported": False}


def test_mix_preview_of_the_tiny_recipe_does_not_import_torch_the_second_time(tmp_path, tiny_env):
    env = dict(tiny_env, ALIGNKIT_CACHE=str(tmp_path / "cache"))
    # the same demo assets as the session's (a fresh cache would rebuild them)
    (tmp_path / "cache").mkdir()
    os.symlink(Path(tiny_env["ALIGNKIT_CACHE"]) / "demo", tmp_path / "cache" / "demo")
    args = ["mix", "preview", "--task", "sft", "--recipe", "tiny", "--profile", "cpu"]
    first, _ = _imports(args, env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (tmp_path / "cache" / "tokenizer-classes.json").is_file()
    second, mods = _imports(args, env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "torch" not in mods, "the tokenizer of a directory seen before is built without AutoConfig/torch"
    assert second.stdout == first.stdout  # the same preview, token counts included


def test_remembered_tokenizer_class_gives_what_autotokenizer_gives(tmp_path, monkeypatch, tiny_assets):
    import shutil

    from transformers import AutoTokenizer

    from alignkit.data import tokclass

    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "tok"
    shutil.copytree(tiny_assets.model_dir, d, ignore=shutil.ignore_patterns("*.safetensors"))
    auto = AutoTokenizer.from_pretrained(str(d))
    first = tokclass.load(str(d))  # through AutoTokenizer, remembered
    [(key, value)] = json.loads(tokclass.cache_path().read_text()).items()
    assert value == {"module": type(auto).__module__, "name": type(auto).__name__}
    second = tokclass.load(str(d), "main")  # a revision means nothing for a local dir
    text = [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "hi"}]
    for tok in (first, second):
        assert type(tok) is type(auto)
        assert tok.apply_chat_template(text, tokenize=False) == auto.apply_chat_template(text, tokenize=False)
        assert tok("a sheep, a cow")["input_ids"] == auto("a sheep, a cow")["input_ids"]
        assert (tok.bos_token, tok.eos_token, tok.pad_token) == (auto.bos_token, auto.eos_token, auto.pad_token)
    # a changed tokenizer_config.json is a new key: AutoTokenizer decides again
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    (d / "tokenizer_config.json").write_text(json.dumps({**cfg, "model_max_length": 77}))
    tokclass.load(str(d))
    assert len(json.loads(tokclass.cache_path().read_text())) == 2
