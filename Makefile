# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine: they create the
# venv, install torch 2.13.0 first (the CPU wheel here, the CUDA build on a GPU box), then alignkit.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.alignkit-installed

.PHONY: install demo test test-fast bench slurm-start slurm-stop clean

# pip prints a line per package it fetches; each step says first what it does and about how long it takes
# (a 2-core machine on a good connection: ~4 minutes and ~1.8 GB in all, once).
$(STAMP): pyproject.toml constraints.txt
	@echo "== 1/3 creating the virtual environment in $(VENV)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "== 2/3 installing torch 2.13.0 (the largest download: ~1-2 minutes)"
	$(PIP) install --disable-pip-version-check "torch==2.13.0"
	@echo "== 3/3 installing alignkit and its pinned stack: transformers, trl, accelerate, deepspeed... (~2 minutes)"
	$(PIP) install --disable-pip-version-check -c constraints.txt -e ".[dev]"
	$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(STAMP)
	@echo "== installed: $(VENV) (next time this step is skipped)"

install: $(STAMP)

## the tiny SFT -> DPO run on this CPU (models and summary in runs/demo)
demo: install
	$(VENV)/bin/alignkit demo --output runs/demo

## the whole test suite, as CI runs it (CPU, offline); pytest's "no tests collected" (5) counts as a failure.
## The local Slurm cluster (scripts/local-slurm.sh) is started first when this machine can run it, so the
## Slurm tests run instead of skipping, and stopped after (pass or fail, Ctrl-C too) unless it was
## already running. SLURM=0 leaves it alone (the Slurm tests then skip, saying why).
SLURM ?= 1
SLURM_SCRIPT ?= scripts/local-slurm.sh
SLURM_NODES ?= 2
test: install
	@slurm_was_up=0; slurm_tried=0; \
	if [ "$(SLURM)" != 0 ] && [ -x "$(SLURM_SCRIPT)" ]; then \
	  if "$(SLURM_SCRIPT)" status >/dev/null 2>&1; then slurm_was_up=1; fi; \
	  stop_slurm() { if [ "$$slurm_tried" = 1 ] && [ "$$slurm_was_up" = 0 ]; then slurm_tried=0; \
	    "$(SLURM_SCRIPT)" stop || true; fi; }; \
	  trap stop_slurm EXIT; trap 'exit 130' INT TERM; \
	  slurm_tried=1; \
	  if "$(SLURM_SCRIPT)" start --nodes $(SLURM_NODES); then \
	    eval "$$("$(SLURM_SCRIPT)" env)"; export SLURM_CONF; \
	  else \
	    echo "make test: the local Slurm cluster did not start; the Slurm tests will say why they skip" >&2; \
	  fi; \
	fi; \
	$(PY) -m pytest -q; code=$$?; \
	if [ $$code -eq 5 ]; then echo "no tests collected" >&2; exit 1; fi; exit $$code

## the suite without the end-to-end training runs and the Slurm tests: trains nothing (tests/conftest.py
## fails a test that would), spread over the CPU cores by pytest-xdist, a file per worker at a time (a
## module's fixtures are built once): under two minutes on an idle 2-core machine. `make test` stays
## sequential (its e2e tests kill runs and time resumes).
test-fast: install
	$(PY) -m pytest -q -m "not e2e and not slurm" -n auto --dist loadfile

bench: install
	$(PY) bench/run_all.py

slurm-start:
	$(SLURM_SCRIPT) start --nodes $(SLURM_NODES)

slurm-stop:
	$(SLURM_SCRIPT) stop

clean:
	rm -rf runs build *.egg-info .pytest_cache
