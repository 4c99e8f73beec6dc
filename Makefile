# Entry points: `make demo`, `make test` (the default tiers), `make test-system` (the system tier and
# every `slow` test), `make bench` (measurements) and `make docs` (the documentation site, into site/).
# Each creates .venv when it is missing.
# CI (.ci/run) runs `make test` and then `make test-system`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.docs-installed
# Parallel test workers (pytest-xdist). make test sends whole modules to a worker (loadfile), so a
# module-scoped fixture (a trained job) is built once. make test-system sends single tests (load): its
# few long modules (multiparty_services, faults) would otherwise keep one worker busy to the end, and
# its module fixtures (real services, PostgreSQL, namespaces) are per process, so a second copy is safe.
# Measured on this 2-core machine while shared (load 3-6): make test 397 s with loadfile against 453 s in
# one process (means of two runs each, interleaved); make test-system 374 s with load, 499 s with loadfile.
# Not --dist loadgroup: with pytest 9.2 it silently stops grouping (pytest-xdist issue #1386).
# XDIST= or XDIST_SYSTEM= runs in one process.
XDIST        ?= -n auto --dist loadfile
XDIST_SYSTEM ?= -n auto --dist load
PYTEST := $(BIN)/python -m pytest

.PHONY: demo test test-system install bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(DOCS_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

# The layers' contracts (pyproject.toml), then unit, protocol, service and cluster (tests/<tier>/); under
# 10 minutes on 2 cores.
test: $(STAMP)
	$(BIN)/lint-imports
	$(PYTEST) $(XDIST) -m "not (system or slow or benchmark)"

# tests/system/ (real processes, netns, PostgreSQL, Chromium) and every test marked `slow`. The system tier
# also runs scripts/prefect_flow.py under Prefect's test harness: it installs the `orchestrate` extra first.
ORCHESTRATE_STAMP := $(VENV)/.installed-orchestrate
$(ORCHESTRATE_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,orchestrate]'
	touch $(ORCHESTRATE_STAMP)

test-system: $(ORCHESTRATE_STAMP)
	$(PYTEST) $(XDIST_SYSTEM) -m "(system or slow) and not benchmark"

demo: $(STAMP)
	$(BIN)/vfl demo --report demo-report.html

# Measurements only (the figures are in scripts/bench*.py); no correctness test is marked benchmark.
# pytest exits 5 when no test is selected: that is not a failure here.
bench: $(STAMP)
	$(PYTEST) -m benchmark; status=$$?; [ $$status -eq 5 ] && echo "no test is marked benchmark" || exit $$status

# The documentation site (MkDocs, Material theme; mkdocs.yml) into site/: open site/index.html. --strict fails
# on any warning: a broken link or anchor, a page missing from the nav. The site needs no network to build
# or to read (no web fonts, no CDN); the troubleshooting page's errors and the REST/CLI reference are
# generated from the code at each build (scripts/docs_hooks.py).
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info site
