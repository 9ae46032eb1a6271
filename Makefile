# gamenode developer tasks. Everything runs from the virtual environment in
# $(VENV), created and (re)installed on demand: `make test` on a fresh clone
# is enough. Override e.g. `make test PYTEST_ARGS='-k store -x'`, `make VENV=/tmp/venv test`.

VENV ?= .venv
PY ?= python3
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.DEFAULT_GOAL := test
.PHONY: venv $(VENV) test demo lint proto bench clean

# The venv is (re)installed when it is missing, has no pip, or pyproject.toml
# is newer than the stamp. `python -m venv` on an existing directory keeps
# what is installed and only restores what is missing (pip included).
venv $(VENV): $(STAMP)

$(STAMP): pyproject.toml
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar off --upgrade pip
	$(BIN)/python -m pip install --progress-bar off -e '.[test,dev]'
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/gamenode demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# Regenerate proto/*_pb2.py, *_pb2_grpc.py, *_pb2.pyi from proto/*.proto
# (`python -m proto.generate --check` only compares).
proto: $(STAMP)
	$(BIN)/python -m proto.generate

bench: $(STAMP)
	$(BIN)/python bench/store_bench.py

# Build outputs and tool caches; the venv stays (rm -rf $(VENV) for that).
clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name '*.egg-info' -prune -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
