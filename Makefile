# Every target runs the same on a laptop and in Jenkins (jenkins/Jenkinsfile calls them).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TOOLS_VENV ?= .venv-tools
export PIPELINE_HOME ?= $(CURDIR)/var
RUN_DATE ?= $(shell date +%F)
WORKERS ?= 4

.PHONY: help install run sample-data test lint format bench clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/.installed: setup.cfg pyproject.toml programs/estimator/setup.cfg programs/estimator/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]' -e programs/estimator
	touch $@

install: $(BIN)/.installed ## create .venv and install the pipeline, the estimator and the test tools

sample-data: install ## write sample raw data into $PIPELINE_HOME/raw unless some is there
	@if [ -z "$$(ls -A '$(PIPELINE_HOME)/raw' 2>/dev/null)" ]; then \
	  $(BIN)/pipeline sample-data --out '$(PIPELINE_HOME)/raw'; \
	else echo "using the raw export already in $(PIPELINE_HOME)/raw"; fi

run: sample-data ## run the whole pipeline for every sample cohort on embedded defaults
	$(BIN)/pipeline run --run-date $(RUN_DATE) --workers $(WORKERS) --local-scheduler

test: install ## run the whole test suite (starts moto_server, luigid, ... by itself)
	$(BIN)/python -m pytest

lint: install ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install ## run every benchmark in bench/ and rewrite docs/benchmarks.md
	$(BIN)/python -m bench

clean: ## remove generated data (var/) but keep .venv
	rm -rf var
