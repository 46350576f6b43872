# One entry point for set-up, tests and the quick run. See README.md.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

# Tests and `make run` read the offline mirror when it sits beside the checkout.
ifeq ($(SUITE_DATA_DIR),)
ifneq ($(wildcard ../shared/datasets),)
export SUITE_DATA_DIR := $(abspath ../shared/datasets)
endif
endif
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test run bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: a CPU build; a plain requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

run: setup
	$(VENV)/bin/suite run --algo reptile --preset quick

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) results site .pytest_cache
