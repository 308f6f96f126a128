# The two commands: `make run` (the whole pipeline, default settings) and `make test`.
# Both create the environment from the committed lock when it is missing or stale.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# uv does not read pip's settings: the local CPU torch wheel is found through UV_FIND_LINKS
export UV_FIND_LINKS ?= $(or $(PIP_FIND_LINKS),/opt/wheels)
export PATH := $(abspath $(VENV))/bin:$(PATH)
PYTEST_ARGS ?=

.PHONY: run test test-all test-stack reliability bench lint setup clean-env

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@echo "installing $(VENV) from requirements.lock (uv)"
	@test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	@$(PY) -m pip install -qq --disable-pip-version-check --upgrade "uv>=0.5"
	@$(VENV)/bin/uv pip install -q --python $(PY) -r requirements.lock
	@$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	@touch $(STAMP)

run: $(STAMP)
	@$(VENV)/bin/tuneline run

test: $(STAMP)
	$(PY) -m pytest -m "not slow and not gpu and not stack" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# the server stack (README: Scaling out): PostgreSQL, S3, a work-pool deployment, two nodes,
# three faults; brings the stack up and tears it down (tests/stack/conftest.py)
test-stack: $(STAMP)
	$(PY) -m pytest -m stack tests/stack $(PYTEST_ARGS)

RELIABILITY_OUT ?= benchmarks/results/reliability

# every reliability test (the long ones too) and the report: $(RELIABILITY_OUT)/reliability.{md,json}
reliability: $(STAMP)
	@mkdir -p $(RELIABILITY_OUT) && rm -f $(RELIABILITY_OUT)/*.json $(RELIABILITY_OUT)/*.md $(RELIABILITY_OUT)/junit.xml
	TUNELINE_RELIABILITY_OUT=$(abspath $(RELIABILITY_OUT)) $(PY) -m pytest -m "reliability" \
		--junitxml=$(RELIABILITY_OUT)/junit.xml $(PYTEST_ARGS); rc=$$?; \
		$(PY) benchmarks/reliability_report.py $(RELIABILITY_OUT); exit $$rc

# figures under benchmarks/results/: fine-tune throughput, inference variants, pipeline wall time
bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# ruff, mypy, and the layer contracts of pyproject.toml [tool.importlinter] (flows > tasks > tuneline)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

lock:
	UV_FIND_LINKS=$(UV_FIND_LINKS) uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean-env:
	rm -rf $(VENV)
