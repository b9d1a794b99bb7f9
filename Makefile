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

.PHONY: help venv run token chat test lint typecheck unit integration template openapi bench build clean

help:
	@echo "make run        serve the API on http://127.0.0.1:$(PORT) (embedded DynamoDB + local model)"
	@echo "make token      print a token for USER=$(USER)"
	@echo "make chat       terminal client against the running stack"
	@echo "make test       lint, types, template checks, unit and integration tests"
	@echo "make openapi    regenerate openapi.json from the code"
	@echo "make bench      run the cost benchmark (writes benchmarks/results.md)"
	@echo "make build      sam build (needs python3.12 on PATH)"

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

run: venv
	$(BIN)/python -m local_stack

token: venv
	@$(BIN)/python -m local_stack.token $(USER)

chat: venv
	$(BIN)/python -m local_stack.chat_client --user $(USER)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

template: venv $(SAM_VENV)/bin/.installed
	$(BIN)/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam validate --lint --region us-east-1 --template template.yaml

openapi: venv
	$(BIN)/python -m local_stack.openapi > openapi.json

test: lint typecheck template
	$(BIN)/python -m pytest

# The benchmark's extra packages (LangChain, matplotlib) stay out of the test environment.
$(BIN)/.bench-installed: $(BIN)/.installed requirements-bench.txt constraints.txt
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt -c constraints.txt
	touch $@

bench: venv $(BIN)/.bench-installed
	$(BIN)/python -m benchmarks.run

build: $(SAM_VENV)/bin/.installed
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build --template template.yaml

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
