# archive-service developer targets. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install serve lint test test-unit test-integration bench bench-throughput format clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the service with its dev tools

serve: $(STAMP)  ## start the API on 127.0.0.1:8000 with the one-machine defaults (state in ./var)
	$(BIN)/archive-service serve

lint: $(STAMP)  ## ruff, mypy (strict on core/ and services/) and import-linter (the layer contract)
	$(BIN)/ruff check archive_service tests bench
	$(BIN)/ruff format --check archive_service tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(STAMP) lint  ## the whole suite: lint, then every test
	$(BIN)/pytest $(TESTS)

test-unit: $(STAMP)  ## unit tests only (no sockets, no services)
	$(BIN)/pytest tests/unit $(TESTS)

test-integration: $(STAMP)  ## integration tests only
	$(BIN)/pytest tests/integration $(TESTS)

bench: $(STAMP)  ## benchmarks (print tables; never part of the test suite)
	$(BIN)/python bench/ingest.py

bench-throughput: $(STAMP)  ## 200 dossiers through API, PostgreSQL, Celery and a private Ceph, 1 then 2 workers (~10 min)
	$(BIN)/python bench/throughput.py $(BENCH_ARGS)

format: $(STAMP)  ## reformat the code
	$(BIN)/ruff format archive_service tests bench
	$(BIN)/ruff check --fix archive_service tests bench

clean:  ## remove the virtualenv and caches (./var is kept)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
