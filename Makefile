# The two commands a newcomer needs:  `make run`  and  `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test test-slow claims bench clean

setup:
	@bash scripts/setup.sh

## Install everything and run the main job: the quickstart comparison on Fashion-MNIST.
run: setup
	$(BIN)/selbench $(ARGS)

## Install everything and run the default test suite (a few minutes on 2 cores).
test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## The minutes-long behaviour checks on real data.
test-slow: setup
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

## The benchmark suite: ratio tables (method cost vs erm, harness overhead, gradient throughput, scaling).
bench: setup
	$(BIN)/python -m bench $(BENCH_ARGS)

## Run every documented claim's preset (SCALE=small by default, SCALE=debug for a smoke pass; SEEDS, PRESETS,
## JOBS, EXTRA: see scripts/claims.sh), then the verdict table.  docs/claims.md is one such pass.
SCALE ?= small
claims: setup
	VENV=$(VENV) SCALE=$(SCALE) bash scripts/claims.sh $(or $(RESULTS),results/claims-$(SCALE))

clean:
	rm -rf results .pytest_cache
