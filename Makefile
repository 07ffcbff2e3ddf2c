# Two commands on a fresh machine with Python 3.11+:  `make demo`  and  `make test`.
# Each creates .venv and installs the pinned requirements first (only when they changed).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# pip's progress bars in a terminal; one line per step when the output is a log (CI, a pipe).
PIP_QUIET = $$([ -t 1 ] || echo --quiet)
PYTEST_ARGS ?=

.PHONY: demo test test-slow lab install benchmarks gpu-smoke-bundle clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required" if sys.version_info < (3, 11) else 0)'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing the pinned requirements into $(VENV) (about 3 minutes and 1.8 GB on a fresh machine) ..."
	$(BIN)/python -m pip install $(PIP_QUIET) --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)
	@echo "Installed: $(VENV)"

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python run_all.py --profile demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n 2 --dist loadfile $(PYTEST_ARGS)

# JupyterLab at the project root with the project's kernel (the venv's python3, which imports dlm).
# LAB_ARGS passes more options, e.g. LAB_ARGS="--no-browser --port 8899". As root (a container, a
# cluster node) Jupyter refuses to start without --allow-root, which is then added.
LAB_ARGS ?=
lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -rs -m slow $(PYTEST_ARGS)

benchmarks: $(STAMP)
	$(BIN)/python benchmarks/run_all_benchmarks.py

gpu-smoke-bundle: $(STAMP)
	PYTHON=$(BIN)/python benchmarks/gpu_smoke_bundle.sh .whl

clean:
	rm -rf $(VENV) artifacts .pytest_cache
