"""Rebuild tests/fixtures/handbook/<label>/ from a clone of huggingface/alignment-handbook.

Each recipe YAML the handbook shipped at the chosen commits (recipes/**/*.yaml, not accelerate configs) is
parsed and written back with its keys and values only: comments and layout are not kept. The manifest
(INDEX.json) records each commit's hash and date and each file's task (the recipes/<model>/<task>/ folder).

    git clone https://github.com/huggingface/alignment-handbook /tmp/ah
    python scripts/handbook_fixtures.py /tmp/ah            # rewrite tests/fixtures/handbook/
    python scripts/handbook_fixtures.py /tmp/ah --check    # exit 1 when the fixtures differ
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

# label -> commit: the handbook's first Zephyr commit on main (merge of PR #11), mid-2024 (SmolLM, with
# zephyr-141b ORPO, gpt2-nl CPT), the last state before the TrlParser refactor (SmolLM3) and HEAD.
COMMITS = {
    "2023-11-10": "e4f98e7d8fb7c13e5e894c71b340cb509c93b1a7",
    "2024-08-19": "73dce0c35d7d12345239f4082ab2d2bde5c1c122",
    "2025-07-11": "c8f5bdf6de2d22bcd1fe9aec892985bd7276cf5d",
    "2025-07-29": "925acdfe4b2b4e38c3dabd1851bc418f0b656351",
}
TASKS = ("sft", "dpo", "orpo", "cpt")
HEADER = "# Keys and values of the alignment-handbook's {path} at {commit} (comments not kept).\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def recipe_files(repo: Path, commit: str) -> list[str]:
    names = git(repo, "ls-tree", "-r", "--name-only", commit, "--", "recipes").split()
    return sorted(n for n in names if n.endswith((".yaml", ".yml")) and "accelerate_configs" not in n)


def task_of(path: str) -> str:
    parts = path.split("/")  # recipes/<model>/<task>/<file>.yaml
    if len(parts) != 4 or parts[2] not in TASKS:
        raise SystemExit(f"{path}: not recipes/<model>/<task>/<file>.yaml with a task in {TASKS}")
    return parts[2]


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str):
    # chat templates stay readable as blocks (PyYAML quotes them again where a block cannot hold them)
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def render(path: str, commit: str, text: str) -> str:
    data = yaml.safe_load(text)
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False,
                     width=10_000)
    if yaml.safe_load(body) != data:
        raise SystemExit(f"{path} at {commit}: the rebuilt file does not read back to the same values")
    return HEADER.format(path=path, commit=commit[:12]) + body


def build(repo: Path) -> dict[Path, str]:
    out: dict[Path, str] = {}
    index: dict = {"source": "https://github.com/huggingface/alignment-handbook", "commits": {}}
    for label, commit in COMMITS.items():
        date = git(repo, "log", "-1", "--format=%ad", "--date=iso-strict", commit).strip()
        subject = git(repo, "log", "-1", "--format=%s", commit).strip()
        files = {}
        for path in recipe_files(repo, commit):
            out[Path(label) / path] = render(path, commit, git(repo, "show", f"{commit}:{path}"))
            files[path] = {"task": task_of(path)}
        index["commits"][label] = {"commit": commit, "date": date, "subject": subject, "files": files}
    out[Path("INDEX.json")] = json.dumps(index, indent=2) + "\n"
    out[Path("INDEX.md")] = index_md(index)
    return out


def index_md(index: dict) -> str:
    lines = ["# The alignment-handbook's recipe files (keys and values, comments not kept)", "",
             f"Source: {index['source']}. Rebuilt by `scripts/handbook_fixtures.py`; INDEX.json is the same list.",
             "", "| folder | commit | date | subject | files |", "|---|---|---|---|---|"]
    for label, c in index["commits"].items():
        lines.append(f"| {label} | {c['commit']} | {c['date']} | {c['subject']} | {len(c['files'])} |")
    lines += ["", "| folder | file | task |", "|---|---|---|"]
    for label, c in index["commits"].items():
        lines += [f"| {label} | {path} | {meta['task']} |" for path, meta in c["files"].items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("repo", type=Path, help="a clone (or bare git dir) of huggingface/alignment-handbook")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/fixtures/handbook")
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args()
    files = build(args.repo)
    differ = [p for p, text in files.items() if not (args.out / p).is_file() or (args.out / p).read_text() != text]
    if args.check:
        for p in differ:
            print(f"differs: {p}")
        return 1 if differ else 0
    for p, text in files.items():
        (args.out / p).parent.mkdir(parents=True, exist_ok=True)
        (args.out / p).write_text(text)
    print(f"wrote {len(files)} files under {args.out} ({len(differ)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
