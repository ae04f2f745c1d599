# The two set-up commands: `make run` (the whole stack on the embedded emulator) and
# `make test` (every test). Both create the virtualenv and install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
# The SAM CLI pins its own boto3 and friends: it gets a venv of its own, inside $(VENV).
SAM_VENV  = $(VENV)/sam
SAM_STAMP = $(SAM_VENV)/.installed

.PHONY: run test lint typecheck check validate clean prometheus bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/stratoq dev

# Prometheus (Debian: apt-get install prometheus) scraping `make run`'s metrics, with the
# alert rules, on http://127.0.0.1:9090. Dashboards: infra/grafana (docs/monitoring.md).
prometheus:
	prometheus --config.file=infra/prometheus/prometheus-dev.yml \
		--web.listen-address=127.0.0.1:9090 --storage.tsdb.path=.stratoq/prometheus

test: $(STAMP) lint typecheck validate
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check functions tests loadtests
	$(BIN)/ruff format --check functions tests loadtests
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

validate: $(STAMP) $(SAM_STAMP)
	$(BIN)/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 \
		$(SAM_VENV)/bin/sam validate --lint --template-file template.yaml
	$(BIN)/ruff check infra/docker
	$(BIN)/ruff format --check infra/docker

$(SAM_STAMP):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet 'aws-sam-cli>=1.120'
	touch $(SAM_STAMP)

# stratoq against Celery (kombu SQS) on one emulator; figures in docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m loadtests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .stratoq .pytest_cache .mypy_cache .ruff_cache
