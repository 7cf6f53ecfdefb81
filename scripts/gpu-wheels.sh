#!/usr/bin/env bash
# Prepare the wheels folder that scripts/gpu-check.sh installs from on a GPU machine without network:
# alignkit's dependencies at the versions CI tests (the installed closure of pyproject's dependencies in
# this venv, constraints.txt's pins among them), as wheels for the GPU machine's Python (default 3.12,
# manylinux x86_64). torch, triton and NVIDIA's CUDA packages are left out: the GPU machine brings its own.
# A package published only as an sdist (deepspeed) is built into a wheel here (pure Python: any Python).
#
#   scripts/gpu-wheels.sh DIR                          # the whole closure (what a bare Python needs)
#   scripts/gpu-wheels.sh DIR trl deepspeed datasets   # only these (what the GPU machine lacks), same pins
#   GPU_PYTHON_VERSION=3.11 scripts/gpu-wheels.sh DIR  # another Python on the GPU machine
#
# Needs network (PyPI) here; run from a checkout whose venv has `make install` done. docs/gpu.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: scripts/gpu-wheels.sh DIR [NAME ...]" >&2; exit 2; }
DIR="$1"; shift
PY="${PYTHON:-.venv/bin/python}"
PV="${GPU_PYTHON_VERSION:-3.12}"
mkdir -p "$DIR"
# NAME==VERSION of every installed package alignkit needs (walking Requires-Dist), minus the GPU's own stack
"$PY" - "$@" > "$DIR/requirements.txt" <<'PYEOF'
import importlib.metadata as md, re, sys, tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canon
SKIP = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
wanted = [canon(n) for n in sys.argv[1:]]
todo = [Requirement(r) for r in project["dependencies"]] if not wanted else [Requirement(n) for n in wanted]
seen = {}
while todo:
    req = todo.pop()
    name = canon(req.name)
    if name in seen or SKIP.match(name) or (req.marker and not req.marker.evaluate({"extra": ""})):
        continue
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        sys.exit(f"{name} is not installed in this venv: run `make install` first")
    seen[name] = dist.version
    if not wanted:
        todo += [Requirement(r) for r in dist.requires or [] if "extra ==" not in r]
for name, version in sorted(seen.items()):
    print(f"{name}=={version}")
PYEOF
PLATFORMS=()
for p in manylinux_2_39 manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 \
         manylinux_2_17 manylinux2014 manylinux1; do PLATFORMS+=(--platform "${p}_x86_64"); done
built=()
while read -r req; do
  if ! "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version "$PV" \
       --implementation cp "${PLATFORMS[@]}" -d "$DIR" "$req" 2>/dev/null; then
    # no wheel for that Python on PyPI: build one here (pure-Python packages such as deepspeed)
    "$PY" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation -w "$DIR" "$req"
    built+=("$req")
  fi
done < "$DIR/requirements.txt"
for req in "${built[@]}"; do
  name="${req%%==*}"
  ls "$DIR" | grep -i "^${name//-/_}-.*-py3-none-any.whl$" >/dev/null \
    || echo "warning: $req was built here for this machine's Python only; build it on the GPU machine" >&2
done
echo "$(ls "$DIR"/*.whl | wc -l) wheels in $DIR ($(du -sh "$DIR" | cut -f1)); on the GPU machine:" >&2
echo "  scripts/gpu-check.sh --wheels $DIR" >&2
