# The asyncio course: two commands do everything.
#   make lab    build .venv/ on first use, then open JupyterLab on the course index
#   make test   build .venv/ on first use, then run the whole suite
# Other targets: make venv (only build), make exercises (regenerate exercises/ from solutions/),
# make index (regenerate the course map in notebooks/00_index.ipynb),
# make bench (print the tracing-overhead ratio).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Jupyter refuses to run as root unless told to (containers, Binder-like machines).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: venv lab test exercises index bench clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "The course needs Python 3.11 or newer; run: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)
	@echo "The course environment is ready in $(VENV)/"

lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks/00_index.ipynb $(ROOT_FLAG)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

exercises: $(STAMP)
	$(BIN)/asynclab exercises

index: $(STAMP)
	$(BIN)/python scripts/build_index.py

bench: $(STAMP)
	$(BIN)/python scripts/bench_tracing.py

clean:
	rm -rf $(VENV) build site
