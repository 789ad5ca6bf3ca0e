# The one command surface: make run, make test, make check, make gen, make bench.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv gen check test run bench services clean

help:
	@echo "make run    start PostgreSQL, Redis, the server (127.0.0.1:50051), Envoy (127.0.0.1:8080), metrics (127.0.0.1:9464)"
	@echo "make test   the same setup, then the whole test suite"
	@echo "make check  ruff, mypy, buf lint/format/breaking, codegen drift, envoy validate"
	@echo "make gen    regenerate gen/ from protos/"
	@echo "make bench  run the benchmarks in bench/"

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	# The repo root and gen/python are import roots (server, amesa.*, buf.validate).
	echo -e "$(CURDIR)\n$(CURDIR)/gen/python\n$(CURDIR)/clients/python" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/amesa-paths.pth"
	touch $(STAMP)

gen: venv
	scripts/gen.sh

check: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy server tests migrations clients/python bench
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	scripts/buf_breaking.sh
	scripts/gen.sh --check
	$(BIN)/envoy --mode validate -c envoy/envoy.yaml --log-level warn >/dev/null
	cd clients/typescript && npx --no-install tsc -p tsconfig.json

services: venv
	scripts/services.sh

test: venv
	source scripts/services.sh && $(BIN)/pytest $(PYTEST_ARGS)

run: venv
	source scripts/services.sh && $(BIN)/python -m server.devrun

bench: venv
	source scripts/services.sh && $(BIN)/python -m bench

clean:
	scripts/services.sh stop || true
