# Kizuna — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install dev demo test lint format bench kafka migrate clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is required"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

install: $(INSTALLED) ## Create .venv and install Kizuna with its dev tools

dev: $(INSTALLED) ## Run the whole platform on the embedded default (Ctrl-C stops it)
	$(BIN)/kizuna dev

demo: $(INSTALLED) ## With `make dev` running: a demo shop, its journeys and live traffic
	$(BIN)/kizuna demo

test: $(INSTALLED) ## Run the full suite against real PostgreSQL and a real Kafka broker
	@command -v java >/dev/null || { echo "Java 17+ is required for the Kafka broker"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is required to fetch the Kafka broker"; exit 1; }
	$(BIN)/python -m pytest

lint: $(INSTALLED) ## ruff and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy kizuna services tests bench

format: $(INSTALLED) ## Format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(INSTALLED) ## Run the benchmarks in bench/ (each prints a JSON line last)
	@set -e; for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

kafka: $(INSTALLED) ## Start a local Kafka broker in the foreground and print its address
	$(BIN)/python -m kizuna.localkafka

migrate: $(INSTALLED) ## Apply schema migrations to KIZUNA_DATABASE_URL
	$(BIN)/kizuna migrate

clean: ## Remove the virtualenv and local data (.kizuna/)
	rm -rf $(VENV) .kizuna .pytest_cache .mypy_cache .ruff_cache
