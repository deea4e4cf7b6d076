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

.PHONY: help install run sample-data test lint format bench clean luigid browser regress

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

test: install browser lint ## lint, then the whole test suite (starts moto_server, luigid, ... by itself)
	$(BIN)/python -m pytest --junitxml=reports/junit.xml

# Every program spec with golden cases (docs/quality.md); override: make regress PROGRAMS=...
PROGRAMS ?= $(wildcard programs/*/program.toml)
REGRESS_EXECUTOR ?= local
regress: install ## run the golden cases of every program spec (PROGRAMS) through the wrapper
	@set -e; for spec in $(PROGRAMS); do \
	  $(BIN)/pipeline regress --program $$spec --executor $(REGRESS_EXECUTOR); \
	done

LUIGID_PORT ?= 8082
luigid: install ## run luigid on localhost:8082 (LUIGID_PORT); state, task history and log under $PIPELINE_HOME
	@mkdir -p '$(PIPELINE_HOME)/luigid' '$(PIPELINE_HOME)/logs/luigid'
	@echo "luigid: http://localhost:$(LUIGID_PORT)/static/visualiser/index.html (log: $(PIPELINE_HOME)/logs/luigid/luigi-server.log; Ctrl-C stops it and saves its state)"
	LUIGI_CONFIG_PATH=docker/luigid.local.cfg $(BIN)/luigid --port $(LUIGID_PORT) --address 127.0.0.1 --state-path '$(PIPELINE_HOME)/luigid/state.pickle' --logdir '$(PIPELINE_HOME)/logs/luigid'

browser: ## install Debian's chromium for the browser test if missing (as root; never fails)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "browser: could not install chromium; the browser test will be skipped"; \
	  else echo "browser: chromium missing and not root; the browser test will be skipped"; fi; }

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

# --- images, infrastructure, deploy (docker/, terraform/, jenkins/) ---
# jenkins/Jenkinsfile calls only these targets; they run the same on a laptop with AWS
# credentials, docker and terraform (docs/deploy.md walks through them).
ENV ?= staging
GIT_COMMIT ?= $(shell git rev-parse HEAD)
IMAGES := pipeline estimator
STACK_NAME_prod := survey-pipeline
STACK_NAME_staging := survey-pipeline-staging
STACK_NAME = $(STACK_NAME_$(ENV))
TF = terraform -chdir=terraform/envs/$(ENV)
AWS_REGION ?= $(shell aws configure get region)
AWS_ACCOUNT_ID ?= $(shell aws sts get-caller-identity --query Account --output text)
ECR_REGISTRY ?= $(AWS_ACCOUNT_ID).dkr.ecr.$(AWS_REGION).amazonaws.com
CHECKOV_VERSION := 3.3.30

.PHONY: lint-docker lint-tf images push-images tf-init tf-plan tf-apply roll-luigid cloud-run image-constraints check-env

check-env:
	@case "$(ENV)" in prod|staging) ;; *) echo "ENV must be prod or staging, not '$(ENV)'" >&2; exit 2;; esac

lint-docker: install ## hadolint on both Dockerfiles
	$(BIN)/hadolint docker/pipeline.Dockerfile docker/estimator.Dockerfile

# checkov lives in its own venv: its pins conflict with the project's.
$(TOOLS_VENV)/.checkov-$(CHECKOV_VERSION):
	test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

lint-tf: $(TOOLS_VENV)/.checkov-$(CHECKOV_VERSION) ## terraform fmt check and checkov (no failed check allowed)
	terraform fmt -check -recursive terraform
	$(TOOLS_VENV)/bin/checkov -d terraform --quiet --compact --skip-download

images: ## build both images, tagged survey-pipeline/<image>:$(GIT_COMMIT)
	for image in $(IMAGES); do \
	  docker build --platform linux/amd64 -f docker/$$image.Dockerfile \
	    -t survey-pipeline/$$image:$(GIT_COMMIT) . || exit 1; \
	done

push-images: check-env ## push both images to ENV's ECR as <name>/<image>:$(GIT_COMMIT) (tags are immutable)
	set -o pipefail; aws ecr get-login-password --region $(AWS_REGION) \
	  | docker login --username AWS --password-stdin $(ECR_REGISTRY)
	for image in $(IMAGES); do \
	  repo=$(STACK_NAME)/$$image; \
	  if aws ecr describe-images --region $(AWS_REGION) --repository-name $$repo \
	       --image-ids imageTag=$(GIT_COMMIT) >/dev/null 2>&1; then \
	    echo "$$repo:$(GIT_COMMIT) is already in ECR"; \
	  else \
	    docker tag survey-pipeline/$$image:$(GIT_COMMIT) $(ECR_REGISTRY)/$$repo:$(GIT_COMMIT) \
	      && docker push $(ECR_REGISTRY)/$$repo:$(GIT_COMMIT) || exit 1; \
	  fi; \
	done

tf-init: check-env
	$(TF) init -input=false -reconfigure -backend-config=backend.hcl

tf-plan: tf-init ## terraform validate and plan ENV=staging|prod for $(GIT_COMMIT), saved to tfplan
	$(TF) validate
	$(TF) plan -input=false -var image_tag=$(GIT_COMMIT) -out=tfplan

tf-apply: check-env ## apply the plan saved by tf-plan (ENV=staging|prod)
	@test -f terraform/envs/$(ENV)/tfplan || { echo "no saved plan: run make tf-plan ENV=$(ENV) first" >&2; exit 2; }
	$(TF) apply -input=false tfplan
	rm -f terraform/envs/$(ENV)/tfplan

roll-luigid: tf-init ## restart luigid on a fresh task (ENV=staging|prod) and wait until it is stable
	cluster=$$($(TF) output -raw cluster_name) && service=$$($(TF) output -raw luigid_service_name) \
	  && aws ecs update-service --cluster $$cluster --service $$service --force-new-deployment >/dev/null \
	  && aws ecs wait services-stable --cluster $$cluster --services $$service

cloud-run: tf-init ## run one date in the cloud now: make cloud-run ENV=prod RUN_DATE=YYYY-MM-DD
	@[[ "$(RUN_DATE)" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$$ ]] || { echo "RUN_DATE must be YYYY-MM-DD" >&2; exit 2; }
	input=$$($(TF) output -raw manual_run_task_input) \
	  && aws ecs run-task --cli-input-json "$${input//__RUN_DATE__/$(RUN_DATE)}" \
	       --query 'tasks[].taskArn' --output text

image-constraints: install ## re-pin every package the images install (docker/constraints/*.txt)
	$(BIN)/python docker/lock_constraints.py
