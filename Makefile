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

.PHONY: setup lint typecheck docs test run study study-recipes study-tune bench clean

setup: $(STAMP)

# Strict editable mode: the package tree `metaft/` is a folder of links under build/, which
# editors and type checkers read (the default editable hook is invisible to them). A module
# added to one of the five folders needs `make setup` again; the folders' stamps trigger it.
$(STAMP): pyproject.toml suite algorithms tasks leaderboard cluster
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: a CPU build; a plain requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]' --config-settings editable_mode=strict
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check .

# mypy over the five packages through the strict editable install (every metaft.* import resolves),
# then a planted cross-module type error (tests/typecheck/) must be reported: a checker that resolved
# nothing would pass the first step silently. About 80 s cold on 2 cores, seconds with .mypy_cache.
MYPY_PACKAGES = -p metaft.suite -p metaft.tasks -p metaft.algorithms -p metaft.leaderboard -p metaft.cluster
typecheck: setup
	$(VENV)/bin/mypy $(MYPY_PACKAGES)
	$(VENV)/bin/mypy tests/typecheck/planted_error.py | grep -q 'planted_error.py:5: error: Argument 1 to "location"' \
	  || (echo "mypy did not report the planted type error in tests/typecheck/planted_error.py"; exit 1)

# The manual (docs/, MkDocs Material) into build/docs-site; warnings (a broken link, a page left out
# of the nav) are errors, and tests/test_docs.py fails when a generated page is stale.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --quiet --strict

# Two workers (the machines have 2 cores), whole files per worker, one torch thread each
# (tests/conftest.py), longest files first in conftest's order: --no-loadscope-reorder, since
# xdist's default reorder (files with more tests first) sent the 5-minute budget test out last.
PYTEST_WORKERS ?= 2
test: lint typecheck docs
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# The quick study: the baseline and reptile on the same episodes, the site, the verdicts per dataset.
# --resume: rerunning `make run` continues (or reuses) the runs already in results/.
run: setup
	$(VENV)/bin/suite run --algo baseline --preset quick --resume
	$(VENV)/bin/suite run --algo reptile --preset quick --resume
	$(VENV)/bin/suite leaderboard build --results results --out site
	$(VENV)/bin/suite leaderboard compare --results results

# The powered study (47 minutes on 2 cores in bf16, 2026-12-07; see README): both references and
# reptile (add fomaml with STUDY_ALGOS="baseline multitask reptile fomaml"), 40 meta-test tasks,
# fine-tuning lrs chosen on validation tasks; STUDY_SEEDS="0 1" for a second meta-training seed.
STUDY_ALGOS ?= baseline multitask reptile
STUDY_SEEDS ?= 0
study: setup
	for algo in $(STUDY_ALGOS); do $(VENV)/bin/suite run --algo $$algo --preset study --seed $(STUDY_SEEDS) \
	  --out results-study --resume || exit 1; done
	$(VENV)/bin/suite leaderboard build --results results-study --out site-study
	$(VENV)/bin/suite leaderboard compare --results results-study

# The study against the plain recipes (docs/recipes.md): the linear probe and SetFit on the pretrained
# start, and SetFit on the meta-learned starts, on the study protocol's first 20 tasks, compared within
# the SetFit recipe and across recipes (labelled). bf16 where native (STUDY_RECIPE_PRECISION; the SetFit
# accuracies equal the fp32 parity run's). Measured 2026-12-07: about 1.4 h alone on 2 cores (each
# SetFit run ~25 min); drop multitask:setfit or set STUDY_RECIPE_TASKS=10 for less; add
# baseline:finetune-lora for the LoRA recipe.
STUDY_RECIPE_TASKS ?= 20
STUDY_RECIPE_RUNS ?= baseline:finetune baseline:linear-probe baseline:setfit multitask:setfit reptile:setfit
STUDY_RECIPE_PRECISION ?= auto
study-recipes: setup
	for run in $(STUDY_RECIPE_RUNS); do $(VENV)/bin/suite run --algo $${run%%:*} --recipe $${run#*:} --preset study \
	  --meta-test-tasks $(STUDY_RECIPE_TASKS) --precision $(STUDY_RECIPE_PRECISION) --out results-recipes --resume || exit 1; done
	$(VENV)/bin/suite leaderboard build --results results-recipes --out site-recipes
	$(VENV)/bin/suite leaderboard compare --results results-recipes
	$(VENV)/bin/suite leaderboard compare --results results-recipes --across-recipes

# Equal tuning budget for the study's meta-training hyperparameters, on validation tasks only
# (about 30 minutes on 2 cores; see README "How the study's defaults were chosen").
study-tune: setup
	for algo in reptile multitask baseline; do $(VENV)/bin/suite tune --name study-tune-$$algo --preset study \
	  --config cluster/study-tuning/base.toml --algos $$algo --search cluster/study-tuning/$$algo.toml \
	  --out results-study-tune --cpus-per-trial 1 --max-concurrent 2 || exit 1; done
	$(VENV)/bin/suite leaderboard compare --results results-study-tune

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build results site results-study site-study results-study-tune .pytest_cache
