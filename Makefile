# Developer entry points. `make run` serves the demo features; `make test` runs every test.
# Both set up what they need first (scripts/setup.sh is idempotent and fast when nothing
# changed): `run` only the venv with the runtime dependencies (setup-serve), every other
# target the venv with the dev extras and the test tools (setup).

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SETTINGS ?= config/demo.toml
JUNIT := build/test-results.xml
PYTEST_ARGS ?=
# grpcurl and grpc_health_probe for the e2e tests, installed by scripts/setup.sh.
TEST_PATH := $(CURDIR)/.tools/bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup setup-serve proto lint services services-stop test run clean soak bench stress

setup:
	@VENV=$(VENV) bash scripts/setup.sh dev

setup-serve:
	@VENV=$(VENV) bash scripts/setup.sh serve

proto: setup
	PYTHON=$(PY) bash scripts/gen_proto.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

services: setup
	@bash scripts/services.sh start

services-stop:
	@bash scripts/services.sh stop

# pytest's own exit code (5 = no test collected) fails the run, and so does any
# skipped test: scripts/check_no_skips.py reads the JUnit XML.
test: setup services lint
	@mkdir -p build && rm -f $(JUNIT)
	@rc=0; \
	PATH="$(TEST_PATH)" $(VENV)/bin/pytest -q -p no:cacheprovider -rs --strict-markers \
	  --junitxml=$(JUNIT) $(PYTEST_ARGS) tests/ || rc=$$?; \
	$(PY) scripts/check_no_skips.py $(JUNIT) || { [ $$rc -ne 0 ] || rc=1; }; \
	exit $$rc

# 10-minute soak with a fault schedule (tests/soak); `make test` runs the 60 s version.
soak: setup services
	PATH="$(TEST_PATH)" FETCHER_SOAK_SECONDS=600 $(VENV)/bin/pytest -q -p no:cacheprovider \
	  --timeout 900 tests/soak && tail -n 1 build/reliability.jsonl

# The integration, e2e and faults packages 3 times beside 2 busy loops (~20 min): no test
# may race a timer a busy machine can miss. STRESS_ARGS="1 2" for one run.
STRESS_ARGS ?=
stress: setup services
	bash scripts/stress_check.sh $(STRESS_ARGS)

run: setup-serve
	$(VENV)/bin/fetcher demo --settings $(SETTINGS)
	$(VENV)/bin/fetcher serve --settings $(SETTINGS)

# Side-by-side benchmark against Feast (bench/run.py): its own redis-server on 6450,
# Feast in build/bench/feast-venv, results in build/bench/results.md (~20 min).
# BENCH_ARGS="--seconds 3 --runs 1" for a quick look; --smoke is what CI runs.
BENCH_ARGS ?=
bench: setup
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	@bash scripts/services.sh stop || true
	rm -rf build data
