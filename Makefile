# Every target installs what it needs first, so each one works on a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
UV     := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PACKAGES := -e shared -e services/auth -e services/history -e services/chat-gateway -e clients/python
PYTEST_ARGS ?=

.PHONY: help install run test lint fmt lock bench chaos k8s-check clean

help:
	@echo "make run        start the whole system on the embedded stack (Ctrl-C stops it)"
	@echo "make test       install what is missing and run every test"
	@echo "make lint       ruff and mypy"
	@echo "make bench      load benchmark against a fresh embedded stack (JSON summary)"
	@echo "make chaos      long fault-injection run checked by the promise checker"
	@echo "make k8s-check  render and validate deploy/k8s"
	@echo "make lock       re-resolve dependencies and export requirements.lock"

$(UV):
	PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --user uv

$(STAMP): requirements.lock shared/pyproject.toml services/*/pyproject.toml clients/python/pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing --python 3.11 $(VENV)
	$(UV) pip install --quiet --python $(PY) --require-hashes -r requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps $(PACKAGES)
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(PY) -m chat_shared.devstack

test: $(STAMP)
	$(MAKE) --no-print-directory k8s-check
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared/chat_shared services/auth/chat_auth services/history/chat_history services/chat-gateway/chat_gateway clients/python/chat_client bench

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

lock: | $(UV)
	$(UV) lock
	$(UV) export --format requirements-txt --no-emit-workspace --no-header --hashes --all-groups -o requirements.lock --quiet
	$(UV) export --format requirements-txt --no-emit-workspace --no-header --hashes --no-dev -o requirements-runtime.lock --quiet

bench: $(STAMP)
	$(PY) -m bench.run

chaos: $(STAMP)
	$(PY) -m bench.chaos

k8s-check: $(STAMP)
	$(PY) -m deploy.check

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
