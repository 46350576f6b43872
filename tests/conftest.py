"""Shared fixtures: the offline mirror and tiny locally built models."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# One share of the cores per xdist worker, for the worker and every process it starts (`suite run`
# subprocesses read the same variables). torch's default is a thread per core in every process, so
# 2 workers on 2 cores ran 4 spinning OpenMP threads: two concurrent copies of a MiniLM test took
# 48.5 s and 54.7 s with the default against 19.9 s and 22.7 s with one thread each (2026-12-03).
# Set before torch loads (OpenMP reads them once); an explicit OMP_NUM_THREADS wins.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    _threads = str(max(1, _cores // max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, _threads)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if not os.environ.get("SUITE_DATA_DIR") and (ROOT.parent / "shared" / "datasets").is_dir():
    os.environ["SUITE_DATA_DIR"] = str(ROOT.parent / "shared" / "datasets")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    value = os.environ.get("SUITE_DATA_DIR")
    if not value or not Path(value).is_dir():
        pytest.fail("SUITE_DATA_DIR must point at the offline mirror (make test sets it to ../shared/datasets)")
    return Path(value)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    from tiny_models import ARCHITECTURES, build_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    return {arch: build_tiny_model(arch, root / arch) for arch in ARCHITECTURES}


@pytest.fixture(scope="session")
def tokenizers(tiny_models):
    from transformers import AutoTokenizer

    return {arch: AutoTokenizer.from_pretrained(path) for arch, path in tiny_models.items()}


@pytest.fixture(scope="session")
def _shared_content_keys(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("content-keys")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch, _shared_content_keys):
    """A fresh cache per test (token encodings), except the content keys: a pure function of the data
    file's sha256 (tasks/pools.py), so one worker's tests share them, as a user's runs do, instead of
    re-hashing the quick protocol's 118k rows (1.6 s) in every `suite run`."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "content-keys").symlink_to(_shared_content_keys, target_is_directory=True)
    monkeypatch.setenv("SUITE_CACHE_DIR", str(cache))


# The longest files first: `make test` spreads files over 2 workers (pytest-xdist, --dist loadfile),
# and a long file handed out last would leave one worker idle while the other finishes it.
LONGEST_FIRST = ("test_protocol_budget.py", "test_cluster_tune.py", "test_run.py", "test_recipes.py",
                 "test_algorithms_transformers.py", "test_storage_s3.py", "test_bad_input.py",
                 "test_cluster_deepspeed.py", "test_algorithms_contract.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
