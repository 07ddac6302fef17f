# xsell: two commands for a newcomer, `make run` and `make test`; both install what they need.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9
VENV := .venv
STAMP := $(VENV)/.installed
XSELL := $(VENV)/bin/xsell
DATA ?= data/online_retail_sample.parquet
# PROFILE=production: Redis online store, MLflow server on PostgreSQL, 12 partitions, 3 offer and 2
# delivery instances, API workers; xsell derives them from XSELL_PROFILE (xsell/settings.py
# production_values; explicit variables win)
PROFILE ?= local
ifeq ($(PROFILE),production)
export XSELL_PROFILE := production
run: production-deps
endif

.PHONY: help install system-deps test-deps run stop lint test chaos bench bench-train audit lock clean production-deps test-production

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

system-deps:  ## Debian packages the stack needs (Java runtime and Maven for the Kafka broker)
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  echo "installing Java and Maven from Debian's packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless maven; }

test-deps:  ## Debian packages the tests need: headless Chromium (browser test), promtool (alert rules)
	@command -v chromium >/dev/null || { echo "installing Chromium from Debian's packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }
	@# Debian ships promtool only inside the prometheus package, whose install also sets up (and under
	@# systemd starts) a Prometheus server: take the one binary out of the package instead
	@command -v promtool >/dev/null || { echo "installing promtool from Debian's prometheus package"; \
	  scratch=$$(mktemp -d) && chmod 755 $$scratch && apt-get update -qq && \
	  (cd $$scratch && apt-get download -qq prometheus) && \
	  dpkg-deb --fsys-tarfile $$scratch/prometheus_*.deb | tar -x -C $$scratch ./usr/bin/promtool && \
	  install -m 0755 $$scratch/usr/bin/promtool /usr/local/bin/promtool; status=$$?; rm -rf $$scratch; exit $$status; }

production-deps:  ## Debian packages of the production profile (Redis server, PostgreSQL); skipped when present
	@dpkg -s redis-server postgresql >/dev/null 2>&1 || { echo "installing Redis and PostgreSQL from Debian's packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server postgresql; }

$(STAMP): pyproject.toml requirements.lock
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	@$(VENV)/bin/uv pip sync -q --python $(VENV)/bin/python requirements.lock
	@$(VENV)/bin/uv pip install -q --python $(VENV)/bin/python --no-deps -e .
	@touch $@

install: system-deps $(STAMP)  ## venv with the locked dependencies, xsell installed in it

run: install  ## the main job on embedded defaults (see README)
	@$(XSELL) run

stop:  ## stop whatever `make run` started
	@if [ -x $(XSELL) ]; then $(XSELL) stack down; else echo "nothing installed, nothing to stop"; fi

LINTED := cli services training models features infra xsell tests bench

lint: install  ## ruff (format and rules), mypy (pyproject.toml), the layer contract (import-linter: entry points > services | training > models > features > infra > contracts)
	@$(VENV)/bin/ruff format --check -q $(LINTED)
	@$(VENV)/bin/ruff check -q $(LINTED)
	@$(VENV)/bin/mypy --no-error-summary
	@$(VENV)/bin/lint-imports --no-cache

test: install test-deps production-deps  ## the whole suite: lint, unit, integration (real services), production profile, fault injection
	@$(MAKE) --no-print-directory lint
	@$(VENV)/bin/pytest
	@$(MAKE) --no-print-directory test-production
	@$(MAKE) --no-print-directory chaos

bench-train: install  ## full retrain and backfill alone, timed with peak memory, at generated sizes S, M, L (SIZES=S,M); DATA=file for one file
	@test -x /usr/bin/time || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time; }
	@$(VENV)/bin/python -m bench.train $(if $(filter command line environment,$(origin DATA)),--data $(DATA),$(if $(SIZES),--sizes $(SIZES)))

chaos: install  ## fault injection alone (part of make test): broker restart, kill -9, SMTP/MLflow/Feast down, prints figures
	@$(VENV)/bin/pytest -p no:cacheprovider -o addopts="-ra" -s tests/chaos

bench: install  ## measured figures, one JSON line per benchmark, the whole pipeline last (DATA=file to use another data set)
	@$(VENV)/bin/python -m bench.ingest --data $(DATA)
	@$(VENV)/bin/python -m bench.features --data $(DATA)
	@$(VENV)/bin/python -m bench.offers --data $(DATA)
	@$(VENV)/bin/python -m bench.kinds
	@$(VENV)/bin/python -m bench.fusion
	@$(VENV)/bin/python -m bench.api --data $(DATA)
	@$(VENV)/bin/python -m bench.pipeline --data $(DATA)

audit: install  ## known vulnerabilities in the locked dependencies (pip-audit; needs the PyPI or OSV advisory service)
	@$(VENV)/bin/uv tool run pip-audit==2.10.1 -r requirements.lock --no-deps --disable-pip --progress-spinner off

test-production: install production-deps  ## the production profile against real Redis, PostgreSQL, MLflow server, Kafka
	@XSELL_PRODUCTION_TESTS=1 $(VENV)/bin/pytest -p no:cacheprovider -o addopts="-ra" tests/production

lock:  ## re-resolve requirements.lock from pyproject.toml
	@$(VENV)/bin/uv pip compile -q pyproject.toml -o requirements.lock --python-version 3.11

clean: stop  ## remove the venv and local state (with PostgreSQL's data in /var/lib/xsell if a private clone put it there)
	@if [ -x $(VENV)/bin/python ]; then rm -rf "$$(XSELL_HOME=$(CURDIR)/.xsell $(VENV)/bin/python -m infra.server_state)"; fi
	rm -rf $(VENV) .xsell
