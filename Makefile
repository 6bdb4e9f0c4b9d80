# Modelyard's verbs. `make demo` and `make test` are the two a newcomer needs; each installs what
# it needs on first use (virtualenv, packages, cached cluster binaries).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY ?= $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help install test-deps lock lint format crds test test-unit test-integration test-adversarial test-chaos test-e2e demo bench bench-quick

help: ## list the verbs
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# Re-install only when the dependency list changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## create the virtualenv and install the package with dev tools

test-deps: ## apt-install the tools the tests run besides Python: lua5.1, redis-server, git, postgresql (root)
	hack/install-deps.sh test

lock: install ## re-resolve uv.lock from pyproject.toml, export each image's requirements.txt (PyPI)
	hack/lock.sh

lint: install ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check operator tests
	$(VENV)/bin/ruff format --check operator tests
	$(VENV)/bin/mypy

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix operator tests
	$(VENV)/bin/ruff format operator tests

crds: install ## regenerate crds/, docs/api.md and the reason tables of docs/operations.md from the code
	$(VENV)/bin/modelyard crds --output-dir crds --docs docs/api.md
	$(VENV)/bin/modelyard crds --output-dir charts/modelyard/files/crds
	$(PY) -m modelyard.reasonsdoc docs/operations.md

test-unit: install test-deps ## pure tests: models, CRD rendering, builders (no network)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install test-deps ## against a real kube-apiserver and S3 server started by the tests
	$(PY) -m pytest tests/integration -m integration $(PYTEST_ARGS)

test-adversarial: install test-deps ## tenants attacking each other through the operator (real API and S3 servers)
	$(PY) -m pytest tests/adversarial -m adversarial $(PYTEST_ARGS)

test-e2e: install test-deps ## the whole chain on the local node (root; builds images); MODELYARD_EXAMPLES=all: every example
	$(PY) -m pytest tests/e2e -m e2e $(PYTEST_ARGS)

test-chaos: install test-deps ## faults: operator kills, API server restarts, peering (MODELYARD_CHAOS_FULL=1: full size)
	$(PY) -m pytest tests/chaos -m chaos $(PYTEST_ARGS)

test: lint test-unit test-integration test-adversarial test-chaos test-e2e ## everything CI runs

demo: install ## the quickstart end to end: cluster, S3, images, chart, a prediction
	hack/demo.sh

BENCH_SUITES ?= serving operator workloads distributed images chain

bench: install ## benchmarks against peers; writes docs/benchmarks/ (long: see docs/benchmarks/README.md)
	for suite in $(BENCH_SUITES); do $(PY) -m tests.bench.$$suite || exit 1; done
	$(PY) -m tests.bench.report

bench-quick: install ## the same benchmarks at reduced sizes, a smoke run of a few minutes each
	for suite in $(BENCH_SUITES); do $(PY) -m tests.bench.$$suite --quick || exit 1; done
	$(PY) -m tests.bench.report

-include hack/cluster.mk
