# Flywheel's set-up and everyday commands. `make demo` and `make test` work on a fresh machine:
# each creates the virtual environment if it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install demo test dev lint clean

install: $(STAMP)

# torch 2.13.0 (CPU build) first: any other torch request pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@if $(BIN)/python -m pip list 2>/dev/null | grep -i '^nvidia-'; then \
		echo "error: CUDA packages were installed; torch must be the 2.13.0 CPU build" >&2; exit 1; fi
	touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	touch $@

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python scripts/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest

dev: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dg dev --host 127.0.0.1 --port 3000

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf .flywheel .dagster_home
