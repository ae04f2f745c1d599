# The two set-up commands: `make run` (the whole stack on the embedded emulator) and
# `make test` (every test). Both create the virtualenv and install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
# The SAM CLI pins its own boto3 and friends: it gets a venv of its own, inside $(VENV).
SAM_VENV  = $(VENV)/sam
SAM_STAMP = $(SAM_VENV)/.installed

.PHONY: run test pytest test-unit test-integration test-e2e lint typecheck check validate clean \
	prometheus bench

# uv (from PyPI, into the venv) resolves and installs in a third of pip's time (cold cache:
# 21 s against 48 s here); the venv keeps pip for those who use it.
UV = $(BIN)/uv pip install --quiet

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet 'uv>=0.4'
	$(UV) --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/stratoq dev

# Prometheus (Debian: apt-get install prometheus) scraping `make run`'s metrics, with the
# alert rules, on http://127.0.0.1:9090. Dashboards: infra/grafana (docs/monitoring.md).
prometheus:
	prometheus --config.file=infra/prometheus/prometheus-dev.yml \
		--web.listen-address=127.0.0.1:9090 --storage.tsdb.path=.stratoq/prometheus

# The tests run on xdist workers, each with its own emulator: one more than the cores, as
# end-to-end tests spend much of their time waiting on the processes they drive (on 2
# cores, 3 workers took 5.0 min where 2 took over 6.4). worksteal hands a worker that runs
# dry the pending tests of another. Serial: make test XDIST=
XDIST ?= -n $(shell echo $$(( $$(nproc) + 1 ))) --dist worksteal

# Every validator runs once: cfn-lint and `sam validate --lint` (template.yaml), shellcheck,
# hadolint, `compose config` and kubernetes-validate run inside the tests that assert on
# them (tests/unit/test_artifacts_*.py), which the SAM CLI venv keeps from skipping.
# The linters and mypy (about 15 s of one core) run beside the tests, which leave a core
# idle now and then while they wait on the processes they drive.
test: $(STAMP) $(SAM_STAMP)
	$(MAKE) --no-print-directory -j3 lint typecheck pytest

# Without make's variables: the tests run make themselves (scaffolded projects), which
# must not see this make's job server.
pytest: $(STAMP) $(SAM_STAMP)
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL $(BIN)/pytest -q $(XDIST)

# One tier (tests/conftest.py marks each test by its directory).
test-unit test-integration test-e2e: test-%: $(STAMP) $(SAM_STAMP)
	$(BIN)/pytest -q $(XDIST) -m $*

lint: $(STAMP)
	$(BIN)/ruff check functions tests loadtests infra/docker
	$(BIN)/ruff format --check functions tests loadtests infra/docker
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# The deployment artefacts alone, through their validators.
validate: $(STAMP) $(SAM_STAMP)
	$(BIN)/pytest -q tests/unit/test_artifacts_*.py

$(SAM_STAMP): $(STAMP)
	$(PYTHON) -m venv --without-pip $(SAM_VENV)
	$(UV) --python $(SAM_VENV)/bin/python 'aws-sam-cli>=1.120'
	touch $(SAM_STAMP)

# stratoq against Celery (kombu SQS) on one emulator; figures in docs/benchmarks.md.
bench: $(STAMP)
	$(UV) --python $(BIN)/python -e '.[bench]'
	$(BIN)/python -m loadtests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .stratoq .pytest_cache .mypy_cache .ruff_cache
