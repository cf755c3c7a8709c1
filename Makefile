# Quick start: `make run` serves the example app, `make test` runs the tests.
# Each target creates the virtual environment it needs (.venv) on first use.

PYTHON ?= python3
VENV ?= .venv
PORT ?= 9000
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Wheels the packaging tests build the example's zips from, offline (Linux x86_64): CPython
# 3.12 for the built-in runtime, 3.10 with uvicorn for the web function.
WHEELHOUSE := .wheelhouse
EXAMPLE := examples/fastapi_app
# pip chooses marker-dependent requirements for the Python running it: pyenv's 3.10 and 3.12.
PYENV_ROOT ?= $(HOME)/.pyenv
PY310 ?= $(or $(lastword $(sort $(wildcard $(PYENV_ROOT)/versions/3.10.*/bin/python))),python3.10)
PY312 ?= $(or $(lastword $(sort $(wildcard $(PYENV_ROOT)/versions/3.12.*/bin/python))),python3.12)

.PHONY: run test lint format bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/fc-bridge serve examples.fastapi_app.main:handler --host 127.0.0.1 --port $(PORT)

# After the environment (order only): a new environment for another Python needs no new download.
$(WHEELHOUSE)/.downloaded: $(EXAMPLE)/requirements.txt $(EXAMPLE)/requirements-web.txt | $(STAMP)
	mkdir -p $(WHEELHOUSE)/cp312 $(WHEELHOUSE)/cp310
	grep -vi '^fc-bridge' $(EXAMPLE)/requirements.txt > $(WHEELHOUSE)/requirements.txt
	$(PY312) -m pip download --quiet --dest $(WHEELHOUSE)/cp312 --only-binary=:all: \
		--platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
		--implementation cp --python-version 3.12 -r $(WHEELHOUSE)/requirements.txt
	$(PY310) -m pip download --quiet --dest $(WHEELHOUSE)/cp310 --only-binary=:all: \
		--platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
		--implementation cp --python-version 3.10 -r $(WHEELHOUSE)/requirements.txt uvicorn
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
