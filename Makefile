# Playbook as Code. `make run` and `make test` do all set-up themselves.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV   := .venv
PY     := $(VENV)/bin/python
NODE   := .tools/node/node_modules/.bin
export PATH := $(CURDIR)/$(NODE):$(PATH)
export PYTHONDONTWRITEBYTECODE := 1
PYTEST := $(PY) -m pytest -p no:cacheprovider
# Test files run side by side (pytest-xdist, a file per worker at a time): the apply tests
# spend most of their time waiting on the API, so three workers keep two cores busy.
TEST_WORKERS ?= 3

.PHONY: help setup run demo synth check list test test-unit test-synth test-terraform test-e2e test-checkov lint bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: ## install everything (.venv, .venv-checkov, Node 22 for jsii); idempotent
	@bash scripts/setup.sh

run: setup ## install, synthesise + check the example environment, draw it, write its pipelines, then the local incident demo
	$(PY) main.py synth --env example
	$(PY) main.py diagram --env example
	$(PY) main.py pipeline --env example
	$(PY) main.py check
	$(PY) main.py demo

demo: setup ## the GuardDuty -> WAF playbook against a local moto server (about 2 minutes)
	$(PY) main.py demo

synth: setup ## synthesise every module and environment into dist/
	$(PY) main.py synth --all

check: setup ## terraform validate + checkov on dist/
	$(PY) main.py check

list: setup ## modules with their inputs, environments with their stacks
	$(PY) main.py list

test: setup ## install, then run every test layer
	$(PYTEST) -n $(TEST_WORKERS) --dist loadfile tests

test-unit: setup ## remediator logic against moto
	$(PYTEST) -m unit tests
test-synth: setup ## assertions on the synthesised JSON, determinism, bad input
	$(PYTEST) -m synth tests
test-terraform: setup ## terraform init/validate of every module and stack
	$(PYTEST) -m terraform tests
test-e2e: setup ## apply into a moto server, remediators against the result
	$(PYTEST) -m e2e tests
test-checkov: setup ## checkov on dist/, zero failed checks
	$(PYTEST) -m checkov tests

lint: setup ## ruff + mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup ## benchmarks; figures go to docs/benchmarks.md
	$(PY) benchmarks/run.py --write docs/benchmarks.md

clean: ## remove build output and caches (not the virtual environments)
	rm -rf dist .cache/check tests/terraform/*/.terraform* tests/terraform/*/tf_resources.json
