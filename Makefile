# The two commands: `make run` (the local platform on the embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PACKAGES := functions shared events shovel bench

.PHONY: install run test lint format bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED)

run: $(INSTALLED)
	$(BIN)/workbench run

lint: $(INSTALLED)
	$(BIN)/ruff check $(PACKAGES) tests
	$(BIN)/ruff format --check $(PACKAGES) tests
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

# The benchmarks (not part of `make test`): prints the table and writes var/bench/results.json.
# rclone (a baseline), wrk (the load generator of api_throughput), and Podman with runc and the static
# busybox (stack_start's engine and image) come from Debian's packages.
bench: $(INSTALLED)
	@command -v rclone >/dev/null && command -v wrk >/dev/null && command -v podman >/dev/null \
	  && command -v runc >/dev/null && [ -x /bin/busybox ] \
	  || apt-get install -y -q rclone wrk podman runc busybox-static >/dev/null
	$(BIN)/python -m bench $(BENCH)

format: $(INSTALLED)
	$(BIN)/ruff format $(PACKAGES) tests
	$(BIN)/ruff check --fix $(PACKAGES) tests

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
