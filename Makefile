# netreduce: `make run` (embedded single-machine default), `make test`, `make compose-test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test compose-test lint bench-baseline clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

run: setup
	$(BIN)/netreduce up

test: setup
	bash tests/e2e/ensure_chromium.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not compose"

# Builds the images and runs the stack of docker-compose.yml (tests/compose/; needs a Docker engine:
# skips without one, fails without one under CI=true or NETREDUCE_DOCKER=1).
compose-test: setup
	$(BIN)/python -m pytest -v -s -m compose tests/compose

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

bench-baseline: setup
	$(BIN)/python bench/baseline.py

clean:
	rm -rf $(VENV) var .pytest_cache
