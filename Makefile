# Two commands on a fresh machine with Python 3.11+:  `make demo`  and  `make test`.
# Each creates .venv and installs the pinned requirements first (only when they changed).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-slow lab install benchmarks clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required" if sys.version_info < (3, 11) else 0)'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python run_all.py --profile demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n 2 --dist loadfile $(PYTEST_ARGS)

# JupyterLab at the project root with the project's kernel (the venv's python3, which imports dlm).
# LAB_ARGS passes more options, e.g. LAB_ARGS="--no-browser --port 8899".
LAB_ARGS ?=
lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $(LAB_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

benchmarks: $(STAMP)
	$(BIN)/python benchmarks/run_all_benchmarks.py

clean:
	rm -rf $(VENV) artifacts .pytest_cache
