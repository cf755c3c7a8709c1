# Quick start: `make run` serves the example app, `make test` runs the tests.
# Each target creates the virtual environment it needs (.venv) on first use.

PYTHON ?= python3
VENV ?= .venv
PORT ?= 9000
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Wheels the packaging test builds the example's zip from, offline: Linux x86_64, CPython 3.12.
WHEELHOUSE := .wheelhouse/cp312

.PHONY: run test lint format bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/fc-bridge serve examples.fastapi_app.main:handler --host 127.0.0.1 --port $(PORT)

$(WHEELHOUSE)/.downloaded: $(STAMP) examples/fastapi_app/requirements.txt
	mkdir -p $(WHEELHOUSE)
	grep -vi '^fc-bridge' examples/fastapi_app/requirements.txt > $(WHEELHOUSE)/requirements.txt
	$(BIN)/python -m pip download --quiet --dest $(WHEELHOUSE) --only-binary=:all: \
		--platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
		--implementation cp --python-version 3.12 -r $(WHEELHOUSE)/requirements.txt
	touch $@

test: $(STAMP) $(WHEELHOUSE)/.downloaded
	$(BIN)/python -m coverage erase
	$(BIN)/python -m coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m coverage combine --quiet
	$(BIN)/python -m coverage report

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .wheelhouse .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache
