# The two commands of README.md: `make demo` (the smoke study on this machine) and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/python -m pip
EXTRAS  := train,eval,merge,collect,track,dev
STAMP   := $(VENV)/.installed

.PHONY: install assets demo test test-unit cluster-up cluster-down bench clean-demo lint

# torch first, pinned to the CPU build; then everything under requirements/constraints.txt.
$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c requirements/constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

# The offline assets the smoke study needs, rebuilt by their builders (assets/build/) only when
# missing: the committed files are the reference (the tiny model's weights differ in their last
# bits between CPUs). `make assets ASSETS=/tmp/a` rebuilds all three into another directory.
ASSETS  ?= assets
SMOKE_DATA := $(ASSETS)/smoke-data/pku-saferlhf/data/train.jsonl
TINY_LM    := $(ASSETS)/tiny-llama/model.safetensors
TINY_TOX   := $(ASSETS)/tiny-toxicity/model.safetensors

$(SMOKE_DATA): | $(STAMP)
	$(BIN)/python -m assets.build.smoke_data --out $(ASSETS)/smoke-data

$(TINY_LM): | $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m assets.build.tiny_model --out $(ASSETS)/tiny-llama

$(TINY_TOX): | $(STAMP)
	$(BIN)/python -m assets.build.tiny_classifier --out $(ASSETS)/tiny-toxicity

assets: $(SMOKE_DATA) $(TINY_LM) $(TINY_TOX)

# Runs the smoke study on submitit's local executor, shows live progress, then collects.
demo: install assets
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
# Two xdist workers: the cluster tests (tests/slurm, tests/e2e) keep to one of them, in order
# (tests/conftest.py), while the other runs unit tests; TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: install cluster-up
	ALIGNKIT_REQUIRE_SLURM=1 $(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup tests

test-unit: install
	$(BIN)/python -m pytest -q tests --ignore=tests/slurm --ignore=tests/e2e -m "not slow"

lint: install
	$(BIN)/ruff check alignkit jobs tests bench assets/build

# Benchmarks on this machine, and the CPU rehearsal of the GPU check (docs/gpu.md); not in `make test`.
bench: install
	$(BIN)/python bench/cli_speed.py
	bash bench/gpu_check.sh --tiny
