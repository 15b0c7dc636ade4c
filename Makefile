# Two commands from a fresh clone:
#   make demo   a virtual environment, the CPU torch wheel, neuneu, then a prediction on the bundled
#               example (neuneu/examples/) with fan charts and a score, under runs/demo/
#   make test   the same setup, then the test suite in two processes (PYTEST_ARGS, default -n 2:
#               pytest-xdist); it fails when pytest collects no test
#
# The setup runs once: a stamp in the virtual environment records it, and is redone only when
# pyproject.toml changes (or the environment is deleted). `make setup` does just that step.
#
# TORCH is what pip installs first. `torch==2.13.0` needs a CPU wheel of torch 2.13.0 that pip can
# find (a local wheel directory or index in the pip configuration, as on the project's machines);
# without one pip fetches the default torch build, which is the multi-GB CUDA one on Linux. Point it
# at your own CPU wheel source with e.g. make demo TORCH="torch --index-url URL".

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PYTEST_ARGS ?= -n 2
BIN := $(VENV)/bin
STAMP := $(VENV)/.neuneu-setup
EXAMPLE := neuneu/examples
DEMO := runs/demo

.PHONY: demo test setup

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(TORCH)
	$(BIN)/pip install -e ".[dev]"
	touch $@

# --truth prints each method's MAE, 80% coverage and skill vs persistence on the held-back rows.
demo: $(STAMP)
	$(BIN)/neuneu predict $(EXAMPLE)/demo_runs.csv --method neuneu,persistence,power_law \
		-o $(DEMO)/predictions.csv --plot $(DEMO)/plots --plot-n 15 --truth $(EXAMPLE)/demo_truth.csv
	@echo "demo: predictions in $(DEMO)/predictions.csv, fan charts in $(DEMO)/plots/; your own file: $(BIN)/neuneu predict RUNS.csv"

# Run as if the environment were activated (its neuneu and python first on PATH). pytest's exit
# code 5 means no test was collected: that is a failure here, not a pass.
test: $(STAMP)
	@PATH="$(abspath $(BIN)):$$PATH" VIRTUAL_ENV="$(abspath $(VENV))" $(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests; failing." >&2; exit 1; fi; \
	exit $$status
