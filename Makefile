# The two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
export UV_PYTHON_DOWNLOADS := never
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test test-later lint typecheck bench system-deps clean

# .venv from the lock file; nothing else installed by hand. Compiled to bytecode
# up front: where PYTHONDONTWRITEBYTECODE is set, every command would otherwise
# compile its imports again from source (a CLI start took 4 s instead of 1.5 s).
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml uv.lock
	@$(PYTHON) -m uv --version 2>/dev/null | grep -q "$(UV_VERSION)" || \
		$(PYTHON) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(UV) sync --frozen --compile-bytecode
	@touch $@

# Migrate the SQLite database under ./var, create demo data on first run, serve.
run: install
	$(BIN)/agentmessage demo
	$(BIN)/agentmessage serve

# System packages the tests need (PostgreSQL 15, Redis, Chromium); installed only when missing.
system-deps:
	@bash scripts/system-deps.sh

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

test: install system-deps lint typecheck
	$(BIN)/pytest

# The suite again with every process's clock (the server's, PostgreSQL's, Redis's)
# years ahead, through libfaketime (the PyPI package, locked like the rest): a test
# that mixes the real clock with a frozen date passes today and fails on a later
# one; here it fails the day it is written. Monotonic time is left alone: with it
# faked, timed lock and condition waits never wake.
LATER ?= +7y
FAKETIME_LIB = $(shell $(BIN)/python -c 'import libfaketime, pathlib; print(pathlib.Path(libfaketime.__file__).parent / "vendor/libfaketime/src/libfaketime.so.1")')
test-later: install system-deps
	LD_PRELOAD="$(FAKETIME_LIB)" FAKETIME="$(LATER)" FAKETIME_DONT_FAKE_MONOTONIC=1 \
		$(BIN)/pytest -p no:cacheprovider

# Every benchmark at the performance issue's sizes, written into bench/RESULTS.md
# (the better part of an hour). `make bench BENCH_ARGS=--quick`: a smoke test in
# minutes, written to bench/out/RESULTS-quick.md.
bench: install system-deps
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
