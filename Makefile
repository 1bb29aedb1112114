# orderflow: `make up` runs the whole pipeline, `make test` runs every check and test.
# Needs only python3 and make: the environment is built from uv.lock by a pinned uv.

PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .venv-tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
STATE ?= .state
PROTOS := $(wildcard libs/orderflow_contracts/*/v1/*.proto)
# One test per document generated from the code (`make docs`), failing when the committed one is stale,
# and one failing when a page names a file, test or link that does not exist (or cites a test twice).
DOCS_DRIFT_TESTS := tests/unit/gateway/test_openapi_document.py tests/unit/gateway/test_errors_document.py \
	tests/unit/contracts/test_asyncapi_document.py tests/unit/docs/test_doc_references.py

.PHONY: help up test lint unit integration e2e chaos stubs openapi docs clean

help:
	@echo "make up     start infrastructure and the four services (Ctrl-C stops everything)"
	@echo "make test   lint, type-check, import rules, contract drift, then every test"
	@echo "make lint   only the static checks"
	@echo "make chaos  the fault-injection suite: break the running pipeline, then reconcile"
	@echo "make bench  the pipeline under load: orders/s, latency, CPU per order (docs/benchmarks.md)"
	@echo "make stubs  regenerate the gRPC stubs from the protos"
	@echo "make openapi  rewrite docs/openapi.json from the gateway (a test compares them)"
	@echo "make docs   rewrite every document generated from the code: openapi.json, asyncapi.json, errors.md's tables"
	@echo "make bench-protocols  gRPC, HTTP/1.1 JSON, NATS and JetStream alone: docs/benchmarks.md, Protocols"
	@echo "make screenshots  run the browser tests and save their screenshots in docs/screenshots (the README's)"

$(UV):
	$(PYTHON) -m venv .venv-tools
	.venv-tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The environment holds exactly what uv.lock pins (uv sync removes anything else). Its bytecode is
# compiled once here: with PYTHONDONTWRITEBYTECODE set, every process (each service a test starts)
# would otherwise compile its dependencies anew, about 3 s of CPU a start.
$(VENV)/.synced: uv.lock pyproject.toml libs/pyproject.toml devstack/pyproject.toml | $(UV)
	UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 $(UV) sync --frozen --python $(PYTHON)
	touch $@

up: $(VENV)/.synced
	$(BIN)/orderflow up --state-dir $(STATE)

lint: $(VENV)/.synced
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy apps libs devstack tests
	$(BIN)/lint-imports
	$(BIN)/buf lint
	@# Breaking changes to the protos, against the main branch as committed (buf.yaml says which rules).
	@if git rev-parse --verify --quiet main >/dev/null; then \
		$(BIN)/buf breaking --against '.git#branch=main,subdir=libs'; \
	else echo "buf breaking skipped: no main branch in this clone"; fi
	@# The committed generated documents are the code's (their drift tests; `make docs` fixes them),
	@# and the pages point only at what exists.
	$(BIN)/pytest -q -p no:cacheprovider -o addopts= $(DOCS_DRIFT_TESTS)

test: lint
	$(BIN)/pytest

unit: $(VENV)/.synced
	$(BIN)/pytest tests/unit

integration: $(VENV)/.synced
	$(BIN)/pytest tests/integration

e2e: $(VENV)/.synced
	$(BIN)/pytest tests/e2e

# Only the fault-injection suite (also part of `make test`): break the running pipeline, reconcile.
chaos: $(VENV)/.synced
	$(BIN)/pytest tests/chaos -s

# The pipeline under load (docs/benchmarks.md); flags in BENCH_ARGS, e.g. BENCH_ARGS="--duration 10 --scenario open"
# or BENCH_ARGS="--gateway http://127.0.0.1:8000" to bench a `make up` started with ORDERFLOW_RATE_LIMITS_ENABLED=false.
.PHONY: bench
bench: $(VENV)/.synced
	$(BIN)/orderflow bench $(BENCH_ARGS)

stubs: $(VENV)/.synced
	$(BIN)/python -m grpc_tools.protoc -I libs --python_out=libs --pyi_out=libs --grpc_python_out=libs $(PROTOS)

# The gateway's API as committed: tests/unit/gateway/test_openapi_document.py fails when it drifts.
openapi: $(VENV)/.synced
	$(BIN)/python -m gateway.openapi_document > docs/openapi.json

# Every document generated from the code (DOCS_DRIFT_TESTS fail when one is not current).
docs: openapi
	$(BIN)/python -m orderflow_contracts.asyncapi_document > docs/asyncapi.json
	$(BIN)/python -m gateway.errors_document docs/errors.md

# The protocols alone, in Python on this machine (about 110 s); `orderflow bench-protocols --help` for options.
.PHONY: bench-protocols
bench-protocols: $(VENV)/.synced
	$(BIN)/orderflow bench-protocols

# The browser tests, saving their screenshots where the README shows them (other runs use a temp folder).
.PHONY: screenshots
screenshots: $(VENV)/.synced
	ORDERFLOW_SCREENSHOTS_DIR=docs/screenshots $(BIN)/pytest tests/browser

clean:
	rm -rf $(VENV) .venv-tools $(STATE) .mypy_cache .pytest_cache .ruff_cache
