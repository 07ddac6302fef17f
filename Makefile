# xsell: two commands for a newcomer, `make run` and `make test`; both install what they need.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9
VENV := .venv
STAMP := $(VENV)/.installed
XSELL := $(VENV)/bin/xsell
DATA ?= data/online_retail_sample.parquet

.PHONY: help install system-deps test-deps run stop test bench lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

system-deps:  ## Debian packages the stack needs (Java runtime and Maven for the Kafka broker)
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  echo "installing Java and Maven from Debian's packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless maven; }

test-deps:  ## Debian packages the browser test needs (headless Chromium)
	@command -v chromium >/dev/null || { echo "installing Chromium from Debian's packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

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

test: install test-deps  ## the whole suite: unit tests first, then integration tests against real services
	@$(VENV)/bin/pytest

bench: install  ## measured figures, one JSON line per benchmark (DATA=file to use another data set)
	@$(VENV)/bin/python -m bench.ingest --data $(DATA)
	@$(VENV)/bin/python -m bench.features --data $(DATA)

lock:  ## re-resolve requirements.lock from pyproject.toml
	@$(VENV)/bin/uv pip compile -q pyproject.toml -o requirements.lock --python-version 3.11

clean: stop  ## remove the venv and local state
	rm -rf $(VENV) .xsell
