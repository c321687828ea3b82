# The asyncio course: two commands do everything.
#   make lab    build .venv/ on first use, then open JupyterLab on the course index
#   make test   build .venv/ on first use, then run the whole suite
# Other targets: make venv (only build), make exercises (regenerate exercises/ from solutions/),
# make index (regenerate the course map in notebooks/00_index.ipynb),
# make bench (print the tracing-overhead ratio), make bench-grader (grading times, sandbox cost),
# make bench-check (how long `asynclab check` takes, warm and cold kernels),
# make site (the read-only web edition of the lessons, into site/).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Jupyter refuses to run as root unless told to (containers, Binder-like machines).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
# The course's JupyterLab settings (no news pop-up, the notebook's kernel started without a
# dialog): JupyterLab reads overrides.json from <environment>/share/jupyter/lab/settings/.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
# The browser tests (tests/browser/) drive Debian's Chromium; without it they are skipped.
CHROMIUM := $(if $(ASYNCLAB_CHROMIUM),$(wildcard $(ASYNCLAB_CHROMIUM)),$(or $(shell command -v chromium 2>/dev/null),$(shell command -v chromium-browser 2>/dev/null)))
define BROWSER_NOTE
if [ -z "$(CHROMIUM)" ]; then \
  echo ""; \
  echo "************************************************************************"; \
  echo "*  BROWSER TESTS SKIPPED: Chromium is not installed, so tests/browser/  *"; \
  echo "*  (JupyterLab driven as a learner) did not run. Install it with:       *"; \
  echo "*      sudo apt-get install -y chromium                                 *"; \
  echo "*  or point ASYNCLAB_CHROMIUM at a Chromium/Chrome binary.              *"; \
  echo "************************************************************************"; \
  echo ""; \
fi
endef

# The grading sandbox (asynclab grade) is made with bubblewrap; without it tests/test_sandbox.py
# is skipped, and the grader tests run unsandboxed.
BWRAP := $(shell command -v bwrap 2>/dev/null)
define SANDBOX_NOTE
if [ -z "$(BWRAP)" ]; then \
  echo ""; \
  echo "************************************************************************"; \
  echo "*  SANDBOX TESTS SKIPPED: bubblewrap (bwrap) is not installed, so the   *"; \
  echo "*  grading sandbox (tests/test_sandbox.py) was not tested. Install it:  *"; \
  echo "*      sudo apt-get install -y bubblewrap                               *"; \
  echo "************************************************************************"; \
  echo ""; \
fi
endef

# Grading kernels write no bytecode (PYTHONDONTWRITEBYTECODE): the course package is compiled
# here, once, and again by make test for the files that changed since.
COMPILE_COURSE := $(BIN)/python -m compileall -q asynclab

.PHONY: venv lab test exercises index bench bench-grader bench-check site clean

venv: $(STAMP) $(LAB_SETTINGS)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "The course needs Python 3.11 or newer; run: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@$(COMPILE_COURSE)
	@touch $(STAMP)
	@echo "The course environment is ready in $(VENV)/"

$(LAB_SETTINGS): jupyter/overrides.json $(STAMP)
	@mkdir -p $(dir $@)
	cp jupyter/overrides.json $@

lab: $(STAMP) $(LAB_SETTINGS)
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks/00_index.ipynb $(ROOT_FLAG)

test: $(STAMP) $(LAB_SETTINGS)
	@$(COMPILE_COURSE)
	@$(BROWSER_NOTE)
	@$(SANDBOX_NOTE)
	@status=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || status=$$?; $(BROWSER_NOTE); $(SANDBOX_NOTE); exit $$status

# make test-pythons: the suite under every CPython 3.11+ on PATH (python3.11, python3.12, ...) or under pyenv
# (~/.pyenv/versions/3.X.Y), each in its own environment .venv-3.X/, built here on first use.
# Committed outputs come from 3.11; nbval compares the others' outputs with them. The browser
# tests are left out (they drive a JupyterLab, not a Python feature); `make test` runs them.
# TEST_PYTHONS_SKIP_VENV=1 skips the version of .venv/ (CI: make test has just run it there).
.PHONY: test-pythons
TEST_PYTHON_VERSIONS ?= 3.11 3.12 3.13
TEST_PYTHONS_ARGS ?= -n 2
define PYTHONS_NOTE
echo ""; \
echo "************************************************************************"; \
echo "*  make test-pythons: BROWSER TESTS (tests/browser/) NOT RUN here;       *"; \
echo "*  they run once, under .venv/, in make test.                           *"; \
echo "************************************************************************"; \
echo ""
endef

test-pythons:
	@$(PYTHONS_NOTE)
	@found=""; failed=""; skipped=""; \
	for v in $(TEST_PYTHON_VERSIONS); do \
	  py=""; \
	  for cand in "$$(command -v python$$v 2>/dev/null)" $$(ls -d $(HOME)/.pyenv/versions/$$v.*/bin/python$$v 2>/dev/null | sort -V -r); do \
	    if [ -n "$$cand" ] && "$$cand" -c 'import sys' >/dev/null 2>&1; then py="$$cand"; break; fi; \
	  done; \
	  if [ -z "$$py" ]; then echo "== Python $$v: not found (neither python$$v on PATH nor under ~/.pyenv/versions/)"; continue; fi; \
	  if [ -n "$(TEST_PYTHONS_SKIP_VENV)" ] && [ -x $(BIN)/python ] && [ "$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "$$v" ]; then \
	    echo "== Python $$v: skipped, make test ran it in $(VENV)/ (TEST_PYTHONS_SKIP_VENV)"; skipped="$$skipped $$v"; continue; \
	  fi; \
	  found="$$found $$v"; env=".venv-$$v"; \
	  echo "== Python $$v: $$py -> $$env/"; \
	  if [ ! -f $$env/.installed-stamp ] || [ requirements.txt -nt $$env/.installed-stamp ] || [ pyproject.toml -nt $$env/.installed-stamp ]; then \
	    "$$py" -m venv $$env && $$env/bin/python -m pip install --quiet --upgrade pip \
	    && $$env/bin/python -m pip install --quiet -r requirements.txt \
	    && $$env/bin/python -m pip install --quiet --no-deps -e . \
	    && touch $$env/.installed-stamp || { failed="$$failed $$v(install)"; continue; }; \
	  fi; \
	  ASYNCLAB_REQUIRE_BROWSER= $$env/bin/python -m pytest --ignore=tests/browser $(TEST_PYTHONS_ARGS) $(PYTEST_ARGS) \
	    || failed="$$failed $$v"; \
	done; \
	$(PYTHONS_NOTE); \
	if [ -z "$$found$$skipped" ]; then echo "test-pythons: no CPython 3.11+ found"; exit 1; fi; \
	if [ -n "$$skipped" ]; then echo "test-pythons: skipped (make test ran it):$$skipped"; fi; \
	if [ -n "$$failed" ]; then echo "test-pythons: FAILED on:$$failed (ran on:$$found)"; exit 1; fi; \
	echo "test-pythons: passed on:$${found:- nothing else}"

exercises: $(STAMP)
	$(BIN)/asynclab exercises

index: $(STAMP)
	$(BIN)/python scripts/build_index.py

bench: $(STAMP)
	$(BIN)/python scripts/bench_tracing.py

bench-grader: $(STAMP)
	$(BIN)/python scripts/bench_grader.py

bench-check: $(STAMP)
	$(BIN)/python scripts/bench_check.py

site: $(STAMP)
	$(BIN)/python scripts/build_site.py --out site

clean:
	rm -rf $(VENV) .venv-3.* build site
