# The two commands of README.md: `make demo` (the smoke study on this machine) and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/python -m pip
EXTRAS  := train,eval,merge,collect,track,dev
STAMP   := $(VENV)/.installed

.PHONY: install demo test test-unit cluster-up cluster-down bench clean-demo lint

# torch first, pinned to the CPU build; then everything under requirements/constraints.txt.
$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c requirements/constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

# Runs the smoke study on submitit's local executor, shows live progress, then collects.
demo: install
	$(BIN)/alignkit submit sweeps/smoke.yaml --executor local
	$(BIN)/alignkit status runs/smoke --watch
	$(BIN)/alignkit collect runs/smoke --show

clean-demo:
	rm -rf runs/smoke

cluster-up:
	bash slurm/dev-cluster/start.sh

cluster-down:
	bash slurm/dev-cluster/stop.sh

# The whole suite, the real SLURM tests included (they fail, not skip, when CI=true and no cluster).
test: install cluster-up
	ALIGNKIT_REQUIRE_SLURM=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests

test-unit: install
	$(BIN)/python -m pytest -q tests/unit -m "not slow"

lint: install
	$(BIN)/ruff check alignkit jobs tests bench

# Benchmarks on this machine, and the CPU rehearsal of the GPU check (docs/gpu.md); not in `make test`.
bench: install
	$(BIN)/python bench/cli_speed.py
	bash bench/gpu_check.sh --tiny
