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

.PHONY: help install install-dev run sample-data test lint format bench clean luigid assistant browser regress

# Help texts are printed as written (no make expansion): name variables as <words>.
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# Two stamps: running needs only the pipeline and the estimator (make run, make luigid);
# the test and lint tools come on top of that for make test, make lint and the like.
RUN_STAMP := $(BIN)/.installed-run
DEV_STAMP := $(BIN)/.installed-dev

$(RUN_STAMP): setup.cfg pyproject.toml programs/estimator/setup.cfg programs/estimator/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e . -e programs/estimator
	@# An editable install compiles nothing: byte-compile now, as a wheel install does, so
	@# that no run compiles the package again (with PYTHONDONTWRITEBYTECODE, every run would).
	$(BIN)/python -m compileall -q pipeline
	touch $@

$(DEV_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,lint]' -e programs/estimator
	touch $@

install: $(RUN_STAMP) ## create .venv and install what running needs: the pipeline and the estimator

install-dev: $(DEV_STAMP) ## install, plus the test and lint tools (make test and make lint do this)

sample-data: install ## write sample raw data into $PIPELINE_HOME/raw unless some is there
	@if [ -z "$$(ls -A '$(PIPELINE_HOME)/raw' 2>/dev/null)" ]; then \
	  $(BIN)/pipeline sample-data --out '$(PIPELINE_HOME)/raw'; \
	else echo "using the raw export already in $(PIPELINE_HOME)/raw"; fi

run: sample-data ## run the whole pipeline for every sample cohort on embedded defaults
	$(BIN)/pipeline run --run-date $(RUN_DATE) --workers $(WORKERS) --local-scheduler

test: install-dev browser lint checkov ## lint, checkov, then the whole test suite (starts moto_server, luigid, ... by itself)
	$(BIN)/python -m pytest --junitxml=reports/junit.xml

# Every program spec and variant with golden cases (docs/quality.md, docs/variants.md);
# override: make regress PROGRAMS=...
# The result is recorded where `pipeline approve` looks for it: the storage root (on a
# laptop $PIPELINE_HOME/work), or REGRESS_ROOT=<root>, or REGRESS_ENVS=<env>[,<env>...]:
# the storage root of each of those stacks (Terraform output storage_root), as Jenkins
# does for the stacks it deploys. A branch stack not deployed yet is skipped with a note.
PROGRAMS ?= $(wildcard programs/*/program.toml programs/variants/*.toml)
REGRESS_EXECUTOR ?= local
REGRESS_ROOT ?=
REGRESS_ENVS ?=
regress: install ## run the golden cases of every program spec (PROGRAMS) and record them where approve looks (REGRESS_ROOT, REGRESS_ENVS=prod,staging)
	@set -e; roots='$(REGRESS_ROOT)'; \
	for env in $$(echo '$(REGRESS_ENVS)' | tr ',' ' '); do \
	  $(MAKE) --no-print-directory tf-init ENV=$$env >&2; \
	  stack=$$($(MAKE) -s --no-print-directory stack-name ENV=$$env); \
	  if root=$$(TF_DATA_DIR=.terraform/$$stack terraform -chdir=$(TF_DIR) output -raw storage_root); then \
	    roots="$$roots $$root"; \
	  elif [ "$$env" = branch ]; then \
	    echo "regress: $$stack is not deployed yet: after its deploy, record for it with make regress REGRESS_ENVS=branch" >&2; \
	  else echo "regress: no storage_root output of the $$env stack $$stack" >&2; exit 2; fi; \
	done; \
	run() { for spec in $(PROGRAMS); do \
	  $(BIN)/pipeline regress --program $$spec --executor $(REGRESS_EXECUTOR) "$$@"; done; }; \
	if [ -z "$${roots// }" ]; then run; else for root in $$roots; do run --root "$$root"; done; fi

LUIGID_PORT ?= 8082
luigid: install ## run luigid on localhost:8082 (LUIGID_PORT); state, task history and log under $PIPELINE_HOME
	@mkdir -p '$(PIPELINE_HOME)/luigid' '$(PIPELINE_HOME)/logs/luigid'
	@echo "luigid: http://localhost:$(LUIGID_PORT)/static/visualiser/index.html (log: $(PIPELINE_HOME)/logs/luigid/luigi-server.log; Ctrl-C stops it and saves its state)"
	LUIGI_CONFIG_PATH=docker/luigid.local.cfg $(BIN)/luigid --port $(LUIGID_PORT) --address 127.0.0.1 --state-path '$(PIPELINE_HOME)/luigid/state.pickle' --logdir '$(PIPELINE_HOME)/logs/luigid'

# The assistant beside `make luigid` (another terminal): runs what is forgiven in its UI.
assistant: install ## run `pipeline assist` against the luigid of make luigid (LUIGID_PORT); Ctrl-C stops it and its programs
	$(BIN)/pipeline assist --scheduler-url http://localhost:$(LUIGID_PORT)

browser: ## install Debian's chromium for the browser test if missing (as root; never fails)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "browser: could not install chromium; the browser test will be skipped"; \
	  else echo "browser: chromium missing and not root; the browser test will be skipped"; fi; }

lint: install-dev ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install-dev ## run every benchmark in bench/ and rewrite docs/benchmarks.md
	$(BIN)/python -m bench

clean: ## remove generated data (var/) but keep .venv
	rm -rf var

# --- images, infrastructure, deploy (docker/, terraform/, jenkins/) ---
# jenkins/Jenkinsfile calls only these targets; they run the same on a laptop with AWS
# credentials, docker and terraform (docs/deploy.md walks through them).
# One root configuration (terraform/stack) for every stack; ENV picks its values and
# state: terraform/envs/$(ENV).tfvars and $(ENV).backend.hcl. ENV=branch is a branch
# build's own stack, named from BRANCH (make stack-name), state key per stack.
ENV ?= staging
# Evaluated once (:=), not at every reference.
ifeq ($(origin GIT_COMMIT),undefined)
GIT_COMMIT := $(shell git rev-parse HEAD)
endif
ifeq ($(origin BRANCH),undefined)
BRANCH := $(shell git rev-parse --abbrev-ref HEAD)
endif
IMAGES := pipeline estimator
STACK_NAME_prod := survey-pipeline
STACK_NAME_staging := survey-pipeline-staging
STACK_NAME_branch := $(if $(filter branch,$(ENV)),$(shell $(PYTHON) jenkins/branch_stacks.py name '$(subst ','\'',$(BRANCH))'))
STACK ?= $(STACK_NAME_$(ENV))
STACK_NAME = $(STACK)
BRANCH_STATE_PREFIX := survey-pipeline/branches
BRANCH_STACK_DAYS ?= 7
TF_DIR := terraform/stack
# Each stack initialises into its own data directory, so switching stacks never mixes state.
TF = TF_DATA_DIR=.terraform/$(STACK) terraform -chdir=$(TF_DIR)
TF_PLAN := tfplan-$(STACK)
TF_VARS_prod := -var-file=../envs/prod.tfvars
TF_VARS_staging := -var-file=../envs/staging.tfvars
TF_VARS_branch = -var-file=../envs/staging.tfvars -var-file=../envs/branch.tfvars \
  -var name=$(STACK) -var 'branch=$(subst ','\'',$(BRANCH))'
TF_VARS = $(TF_VARS_$(ENV))
TF_BACKEND_prod := -backend-config=../envs/prod.backend.hcl
TF_BACKEND_staging := -backend-config=../envs/staging.backend.hcl
TF_BACKEND_branch = -backend-config=../envs/branch.backend.hcl \
  -backend-config=key=$(BRANCH_STATE_PREFIX)/$(STACK)/terraform.tfstate
# The registry's region and account: AWS_REGION, else AWS_DEFAULT_REGION (an instance
# profile's agent has no config file, and `aws configure get` reads only that file), else
# the CLI's configuration; the account is the caller's. Asked once, when first used.
ifeq ($(origin AWS_REGION),undefined)
AWS_REGION = $(eval AWS_REGION := $(or $(AWS_DEFAULT_REGION),$(shell aws configure get region)))$(AWS_REGION)
endif
ifeq ($(origin AWS_ACCOUNT_ID),undefined)
AWS_ACCOUNT_ID = $(eval AWS_ACCOUNT_ID := $(shell aws sts get-caller-identity --query Account --output text))$(AWS_ACCOUNT_ID)
endif
ECR_REGISTRY ?= $(AWS_ACCOUNT_ID).dkr.ecr.$(AWS_REGION).amazonaws.com
CHECKOV_VERSION := 3.3.30
CHECKOV := $(TOOLS_VENV)/bin/checkov -d terraform --quiet --compact --skip-download

.PHONY: lint-docker lint-tf checkov images push-images tf-init tf-plan tf-apply tf-registries \
  roll-luigid cloud-run image-constraints check-env stack-name tf-destroy-branch \
  tf-destroy-expired-branches

check-env:
	@case "$(ENV)" in prod|staging|branch) ;; \
	  *) echo "ENV must be prod, staging or branch, not '$(ENV)'" >&2; exit 2;; esac
	@if [ "$(ENV)" = branch ]; then $(PYTHON) jenkins/branch_stacks.py check '$(STACK)'; \
	elif [ "$(STACK)" != "$(STACK_NAME_$(ENV))" ]; then \
	  echo "STACK=$(STACK) is not the $(ENV) stack ($(STACK_NAME_$(ENV)))" >&2; exit 2; fi

stack-name: check-env ## print the stack ENV (and BRANCH) deploys, e.g. make stack-name ENV=branch
	@echo $(STACK)

lint-docker: install-dev ## hadolint on every Dockerfile
	$(BIN)/hadolint docker/pipeline.Dockerfile docker/estimator.Dockerfile docker/wrap-program.Dockerfile

# checkov lives in its own venv: its pins conflict with the project's.
$(TOOLS_VENV)/.checkov-$(CHECKOV_VERSION):
	test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

# checkov gives up on a file it cannot parse within HCL_PARSE_TIMEOUT_SEC (10 s by default,
# reached on a loaded machine) and still exits 0: allow more, and fail on any parsing
# error, so that no file goes unchecked.
checkov: $(TOOLS_VENV)/.checkov-$(CHECKOV_VERSION) ## checkov on terraform/ (pinned, own venv; no failed check, no unparsed file)
	@mkdir -p reports
	set -o pipefail; HCL_PARSE_TIMEOUT_SEC=300 $(CHECKOV) | tee reports/checkov.txt
	@! grep -q "Parsing errors: [1-9]" reports/checkov.txt \
	  || { echo "checkov could not parse every file (above): fix it; nothing may go unchecked" >&2; exit 1; }

lint-tf: checkov ## terraform fmt check and checkov (no failed check allowed)
	terraform fmt -check -recursive terraform

images: ## build both images, tagged survey-pipeline/<image>:<commit> (GIT_COMMIT, default HEAD)
	for image in $(IMAGES); do \
	  docker build --platform linux/amd64 -f docker/$$image.Dockerfile \
	    -t survey-pipeline/$$image:$(GIT_COMMIT) . || exit 1; \
	done

# A branch stack's registries are created here, before its first push (prod and staging
# create theirs once by hand: docs/deploy.md, step 3).
push-images: check-env $(if $(filter branch,$(ENV)),tf-registries) ## push both images to the stack's ECR as <stack>/<image>:<commit> (tags are immutable)
	@[ -n "$(AWS_REGION)" ] || { echo "no AWS region: set AWS_REGION or AWS_DEFAULT_REGION (or aws configure set region ...)" >&2; exit 2; }
	@[[ "$(AWS_ACCOUNT_ID)" =~ ^[0-9]{12}$$ ]] || { echo "no AWS account ID from aws sts get-caller-identity: are credentials set? (or set AWS_ACCOUNT_ID)" >&2; exit 2; }
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

tf-init: check-env ## terraform init of terraform/stack for ENV's stack (its backend file, its state key)
	$(TF) init -input=false -reconfigure $(TF_BACKEND_$(ENV))

tf-registries: tf-init ## create or update only the stack's image registries (and their key)
	$(TF) apply -input=false -auto-approve $(TF_VARS) -var image_tag=$(GIT_COMMIT) \
	  -target=module.platform.module.ecr

tf-plan: tf-init ## terraform validate and plan ENV=prod|staging|branch for <commit>, saved to terraform/stack/tfplan-<stack>
	$(TF) validate
	$(TF) plan -input=false $(TF_VARS) -var image_tag=$(GIT_COMMIT) -out=$(TF_PLAN)

tf-apply: check-env ## apply the plan saved by tf-plan (same ENV, BRANCH)
	@test -f $(TF_DIR)/$(TF_PLAN) || { echo "no saved plan for $(STACK): run make tf-plan ENV=$(ENV) first" >&2; exit 2; }
	$(TF) apply -input=false $(TF_PLAN)
	rm -f $(TF_DIR)/$(TF_PLAN)

# luigid first (the assistant waits for it), then its assistant: both on fresh tasks.
roll-luigid: tf-init ## restart luigid and its assistant on fresh tasks (ENV=prod|staging|branch) and wait until both are stable
	cluster=$$($(TF) output -raw cluster_name) \
	  && for output in luigid_service_name assistant_service_name; do \
	    service=$$($(TF) output -raw $$output) \
	    && aws ecs update-service --cluster $$cluster --service $$service --force-new-deployment >/dev/null \
	    && aws ecs wait services-stable --cluster $$cluster --services $$service || exit 1; \
	  done

cloud-run: tf-init ## run one date in the cloud now: make cloud-run ENV=prod RUN_DATE=YYYY-MM-DD
	@[[ "$(RUN_DATE)" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$$ ]] || { echo "RUN_DATE must be YYYY-MM-DD" >&2; exit 2; }
	input=$$($(TF) output -raw manual_run_task_input) \
	  && aws ecs run-task --cli-input-json "$${input//__RUN_DATE__/$(RUN_DATE)}" \
	       --query 'tasks[].taskArn' --output text

tf-destroy-branch: ## destroy a branch stack and forget its state: ENV=branch BRANCH=<branch> (or STACK=sp-...)
	@[ "$(ENV)" = branch ] || { echo "tf-destroy-branch destroys branch stacks only: set ENV=branch" >&2; exit 2; }
	$(MAKE) --no-print-directory tf-init ENV=branch STACK=$(STACK) BRANCH='$(subst ','\'',$(BRANCH))'
	$(TF) destroy -input=false -auto-approve $(TF_VARS) -var image_tag=$(GIT_COMMIT)
	$(BIN)/python jenkins/branch_stacks.py forget --backend terraform/envs/branch.backend.hcl \
	  --prefix $(BRANCH_STATE_PREFIX) --stack $(STACK)

tf-destroy-expired-branches: install ## destroy every branch stack whose branch is gone or older than BRANCH_STACK_DAYS (7)
	git ls-remote --heads origin | sed 's|.*refs/heads/||' > .live-branches
	$(BIN)/python jenkins/branch_stacks.py expired --backend terraform/envs/branch.backend.hcl \
	  --prefix $(BRANCH_STATE_PREFIX) --days $(BRANCH_STACK_DAYS) --live .live-branches > .expired-stacks
	@cat .expired-stacks
	status=0; while IFS=$$'\t' read -r stack branch why; do \
	  echo "destroying $$stack ($$branch): $$why"; \
	  $(MAKE) --no-print-directory tf-destroy-branch ENV=branch STACK=$$stack BRANCH="$$branch" \
	    || status=1; \
	done < .expired-stacks; rm -f .live-branches .expired-stacks; exit $$status

image-constraints: install ## re-pin every package the images install (docker/constraints/*.txt)
	$(BIN)/python docker/lock_constraints.py
