# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine: they create the
# venv, install torch 2.13.0 first (the CPU wheel here, the CUDA build on a GPU box), then alignkit.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.alignkit-installed

.PHONY: install demo test test-fast bench slurm-start slurm-stop clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check "torch==2.13.0"
	$(PIP) install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(STAMP)

install: $(STAMP)

## the tiny SFT -> DPO run on this CPU (models and summary in runs/demo)
demo: install
	$(VENV)/bin/alignkit demo --output runs/demo

## the whole test suite (CPU, offline); pytest's "no tests collected" (5) counts as a failure
test: install
	$(PY) -m pytest -q; code=$$?; if [ $$code -eq 5 ]; then echo "no tests collected" >&2; exit 1; fi; exit $$code

## the suite without the end-to-end training runs
test-fast: install
	$(PY) -m pytest -q -m "not e2e and not slurm"

bench: install
	$(PY) bench/run_all.py

slurm-start:
	scripts/local-slurm.sh start --nodes 2

slurm-stop:
	scripts/local-slurm.sh stop

clean:
	rm -rf runs build *.egg-info .pytest_cache
