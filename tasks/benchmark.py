"""Benchmarks: named, versioned sets of meta-training and meta-testing tasks.

A benchmark fixes which datasets sit on which side (the protocol), how many tasks
each side has and the episode shape per task type. Three sides: meta-training tasks
come from the training part of the meta-training datasets' train splits, validation
tasks (``meta-val``, for choosing hyperparameters) from their held-out part, and
meta-test tasks from evaluation splits, de-duplicated against everything the other
two sides may draw (:mod:`tasks.pools`). ``build_manifest`` turns (benchmark, seed)
into an :class:`EpisodeManifest`: the example ids of every task, whose fingerprint
identifies exactly what was evaluated.
"""
from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from metaft.suite.foundation.errors import ConfigError
from metaft.suite.foundation.files import atomic_write_file

from .episodes import Episode, EpisodeShape, sample_episode, split_ids
from .loading import DataError, load_split
from .pools import Pool, make_pool, split_keys
from .registry import get_dataset_spec, list_datasets
from .task_types import TASK_TYPES, get_task_type

PROTOCOLS = ("cross-dataset", "in-dataset")
SIDES = ("meta-train", "meta-test", "meta-val")  # order fixes each side's rng stream
VERSION = "2"  # v2: de-duplicated pools, a validation side, content leakage check


def protocol_datasets(protocol: str, side: str) -> tuple[str, ...]:
    """The registered datasets on ``side`` of ``protocol``, in registration order: each dataset's
    spec says where it stands (`DatasetSpec.protocol_sides`), so a plugin dataset joins a protocol
    from its own file. Seed plan (cross-dataset): meta-test datasets never seen in meta-training."""
    return tuple(d for d in list_datasets() if get_dataset_spec(d).protocol_sides.get(protocol) == side)



def default_shapes() -> dict[str, EpisodeShape]:
    """Each registered task type's default episode shape."""
    return {name: EpisodeShape(*get_task_type(name).shape) for name in TASK_TYPES}


@dataclass(frozen=True)
class BenchmarkSpec:
    """Which tasks a benchmark holds. Its ``key`` names it in results."""

    protocol: str = "cross-dataset"
    meta_train_datasets: tuple[str, ...] = field(default_factory=lambda: protocol_datasets("cross-dataset",
                                                                                              "meta-train"))
    meta_test_datasets: tuple[str, ...] = field(default_factory=lambda: protocol_datasets("cross-dataset",
                                                                                             "meta-test"))
    n_meta_train: int = 50
    n_meta_test: int = 20
    shapes: dict[str, EpisodeShape] = field(default_factory=default_shapes)
    n_meta_val: int = 0
    val_fraction: float = 0.2  # share of each meta-training train split held out for validation tasks
    version: str = VERSION

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"unknown protocol {self.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        for name in self.meta_train_datasets + self.meta_test_datasets:
            get_dataset_spec(name)  # unknown names fail with the list of known ones
        for name in self.meta_train_datasets:
            if get_dataset_spec(name).train_split is None:
                raise ConfigError(f"dataset {name!r} has no train split and cannot be a meta-training dataset")
        if self.n_meta_train < 0 or self.n_meta_test < 1 or self.n_meta_val < 0:
            raise ConfigError("a benchmark needs n_meta_train >= 0, n_meta_val >= 0 and n_meta_test >= 1 tasks")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.n_meta_val and not self.meta_train_datasets:
            raise ConfigError("validation tasks come from meta-training datasets, and this benchmark has none")
        if self.n_meta_train and not self.meta_train_datasets:
            raise ConfigError("n_meta_train > 0 but no meta-training datasets are given")
        if not self.meta_test_datasets:
            raise ConfigError("a benchmark needs at least one meta-testing dataset")

    @property
    def key(self) -> str:
        return f"{self.protocol}-v{self.version}"

    def datasets(self, side: str) -> tuple[str, ...]:
        return self.meta_test_datasets if side == "meta-test" else self.meta_train_datasets

    def count(self, side: str) -> int:
        return {"meta-train": self.n_meta_train, "meta-val": self.n_meta_val, "meta-test": self.n_meta_test}[side]

    def split_for(self, side: str, dataset: str) -> str:
        """Meta-train and validation tasks come only from training splits (disjoint parts),
        meta-test tasks only from evaluation splits."""
        spec = get_dataset_spec(dataset)
        split = spec.eval_split if side == "meta-test" else spec.train_split
        if split is None:
            raise ConfigError(f"dataset {dataset!r} has no training split, so it cannot give {side} tasks; use it "
                              f"for meta-testing only")
        return split

    def pool(self, side: str, dataset: str, data_dir: str | os.PathLike | None = None) -> Pool:
        """The de-duplicated rows that ``side`` may draw from ``dataset``."""
        return _pool(self.meta_train_datasets, self.val_fraction, side, dataset, data_dir)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shapes"] = {k: asdict(v) for k, v in self.shapes.items()}
        d["meta_train_datasets"] = list(self.meta_train_datasets)
        d["meta_test_datasets"] = list(self.meta_test_datasets)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BenchmarkSpec":
        d = dict(d)
        d["shapes"] = {k: EpisodeShape(**v) for k, v in d.get("shapes", {}).items()} or default_shapes()
        d["meta_train_datasets"] = tuple(d.get("meta_train_datasets", ()))
        d["meta_test_datasets"] = tuple(d.get("meta_test_datasets", ()))
        d.setdefault("version", "1")  # manifests written before v2 have no validation side
        return cls(**d)


def make_benchmark(protocol: str = "cross-dataset", *, datasets: list[str] | None = None,
                   n_meta_train: int = 50, n_meta_test: int = 20, n_meta_val: int = 0,
                   shapes: dict[str, EpisodeShape] | None = None, val_fraction: float = 0.2) -> BenchmarkSpec:
    """The seed plan's benchmark for ``protocol``, optionally restricted to ``datasets``."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if protocol == "cross-dataset":
        train, test = protocol_datasets(protocol, "meta-train"), protocol_datasets(protocol, "meta-test")
        if datasets:
            for d in datasets:
                get_dataset_spec(d)
                if d not in train + test:
                    raise ConfigError(f"dataset {d!r} has no side in the cross-dataset protocol; give its DatasetSpec "
                                      f"protocol_sides={{'cross-dataset': 'meta-test'}} (or 'meta-train'), or use "
                                      f"--protocol in-dataset")
            train = tuple(d for d in train if d in datasets)
            test = tuple(d for d in test if d in datasets)
    else:
        names = tuple(datasets) if datasets else tuple(list_datasets())
        test = names
        train = tuple(d for d in names if get_dataset_spec(d).train_split is not None)
    merged = default_shapes()
    merged.update(shapes or {})
    return BenchmarkSpec(protocol, train, test, n_meta_train if train else 0, n_meta_test, merged,
                         n_meta_val if train else 0, val_fraction)


_POOLS: dict[tuple, Pool] = {}


def _pool(train_datasets: tuple[str, ...], val_fraction: float, side: str, dataset: str,
          data_dir: str | os.PathLike | None) -> Pool:
    key = (train_datasets, val_fraction, side, dataset, str(data_dir))
    if key not in _POOLS:
        spec = get_dataset_spec(dataset)
        if side == "meta-test":
            # nothing a meta-test task queries may occur in any split the other sides draw from
            exclude: set[str] = set()
            for name in train_datasets:
                train = get_dataset_spec(name).train_split
                if train is not None:  # a side's datasets have one (checked when the benchmark was made)
                    exclude.update(split_keys(load_split(name, train, data_dir)))
            _POOLS[key] = make_pool(load_split(dataset, spec.eval_split, data_dir), "all", exclude=exclude)
        else:
            part = "train" if side == "meta-train" else "val"
            if spec.train_split is None:
                raise ConfigError(f"dataset {dataset!r} has no training split, so it cannot give {side} tasks")
            _POOLS[key] = make_pool(load_split(dataset, spec.train_split, data_dir), part, val_fraction)
    return _POOLS[key]


def episode_rng(benchmark: BenchmarkSpec, seed: int, side: str, index: int) -> np.random.Generator:
    """The rng of one task: a pure function of (benchmark, seed, side, index)."""
    bench = zlib.crc32(benchmark.key.encode())
    return np.random.default_rng([int(seed), bench, SIDES.index(side), int(index)])


def task_dataset(benchmark: BenchmarkSpec, side: str, index: int) -> str:
    """Tasks go round-robin over the side's datasets, so every dataset gets its share."""
    names = benchmark.datasets(side)
    return names[index % len(names)]


def iter_episodes(benchmark: BenchmarkSpec, seed: int, side: str, data_dir: str | os.PathLike | None = None,
                  start: int = 0, stop: int | None = None) -> Iterator[Episode]:
    """Episodes ``start..stop`` of one side, sampled lazily (a generator).

    Meta-test query sets are drawn disjoint across tasks while the pool allows: each task's
    query examples leave the pool for the later tasks of its dataset, and a task that no longer
    fits falls back to the whole pool (the overlap is then recorded in the manifest). So task i
    depends on tasks 0..i-1, and a slice replays them (sampling is cheap)."""
    stop = benchmark.count(side) if stop is None else stop
    v1 = benchmark.version == "1"  # the first protocol sampled from whole splits
    used: dict[str, np.ndarray] = {}
    for i in range(0 if side == "meta-test" and not v1 else start, stop):
        name = task_dataset(benchmark, side, i)
        loaded = load_split(name, benchmark.split_for(side, name), data_dir)
        shape = benchmark.shapes[loaded.spec.task_type]
        if v1:
            yield sample_episode(loaded, shape, episode_rng(benchmark, seed, side, i), side=side, index=i)
            continue
        allowed = benchmark.pool(side, name, data_dir).allowed
        if side != "meta-test":
            ep = sample_episode(loaded, shape, episode_rng(benchmark, seed, side, i), side=side, index=i,
                                allowed=allowed)
        else:
            taken = used.setdefault(name, np.zeros(len(allowed), dtype=bool))
            try:
                ep = sample_episode(loaded, shape, episode_rng(benchmark, seed, side, i), side=side, index=i,
                                    allowed=allowed & ~taken)
            except DataError:  # the pool is exhausted: this task may reuse earlier tasks' queries
                ep = sample_episode(loaded, shape, episode_rng(benchmark, seed, side, i), side=side, index=i,
                                    allowed=allowed)
            taken[_row_numbers(loaded, ep.query_ids)] = True
        if i >= start:
            yield ep


@lru_cache(maxsize=64)
def _row_of_id(loaded) -> dict[str, int]:
    return {example_id: row for row, example_id in enumerate(split_ids(loaded))}


def _row_numbers(loaded, ids: list[str]) -> np.ndarray:
    rows = _row_of_id(loaded)
    return np.array([rows[i] for i in ids], dtype=np.int64)


def query_overlap(tasks: list[dict]) -> dict[str, dict]:
    """Per meta-test dataset: query examples, distinct ones, and tasks sharing a query with another
    task (the effective number of independent tasks is smaller when this is not 0)."""
    out: dict[str, dict] = {}
    by_dataset: dict[str, list[dict]] = {}
    for t in tasks:
        if t["side"] == "meta-test":
            by_dataset.setdefault(t["dataset"], []).append(t)
    for name, ts in by_dataset.items():
        counts: dict[str, int] = {}
        for t in ts:
            for q in set(t["query"]):
                counts[q] = counts.get(q, 0) + 1
        sharing = sum(1 for t in ts if any(counts[q] > 1 for q in t["query"]))
        out[name] = {"tasks": len(ts), "queries": sum(len(t["query"]) for t in ts), "distinct": len(counts),
                     "tasks_sharing_a_query": sharing}
    return out


@dataclass
class EpisodeManifest:
    """The example ids of every task of a benchmark at one seed; JSON round-trips."""

    benchmark: BenchmarkSpec
    seed: int
    tasks: list[dict]
    data: dict[str, str]  # "<dataset>/<split>" -> data fingerprint
    pools: dict[str, dict] = field(default_factory=dict)  # "<side>/<dataset>" -> de-duplication counts

    @property
    def fingerprint(self) -> str:
        payload = json.dumps({"benchmark": self.benchmark.to_dict(), "seed": self.seed, "tasks": self.tasks,
                              "data": self.data}, sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"benchmark": self.benchmark.to_dict(), "seed": self.seed, "data": self.data,
                "fingerprint": self.fingerprint, "pools": self.pools, "query_overlap": query_overlap(self.tasks),
                "tasks": self.tasks}

    def write(self, path: str | os.PathLike) -> Path:
        return atomic_write_file(path, json.dumps(self.to_dict(), indent=1).encode())

    @classmethod
    def read(cls, path: str | os.PathLike) -> "EpisodeManifest":
        try:
            raw = json.loads(Path(path).read_text())
            manifest = cls(BenchmarkSpec.from_dict(raw["benchmark"]), int(raw["seed"]), raw["tasks"], raw["data"],
                           raw.get("pools", {}))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"cannot read episode manifest {path}: {exc}; write it with `suite tasks episodes`") from exc
        if raw.get("fingerprint") not in (None, manifest.fingerprint):
            raise DataError(f"episode manifest {path} does not match its fingerprint; it was edited or is corrupt")
        return manifest

    def ids(self, side: str) -> set[str]:
        return {i for t in self.tasks if t["side"] == side for i in t["support"] + t["query"]}


def _task_entry(ep: Episode) -> dict:
    return {"side": ep.side, "index": ep.index, "dataset": ep.dataset, "split": ep.split,
            "task_type": ep.task_type, "classes": list(ep.classes),
            "support": ep.support_ids, "query": ep.query_ids}


def build_manifest(benchmark: BenchmarkSpec, seed: int, data_dir: str | os.PathLike | None = None,
                   episodes: list[Episode] | None = None) -> EpisodeManifest:
    """Sample every task of both sides (or record the given ``episodes``)."""
    if episodes is None:
        episodes = [ep for side in SIDES for ep in iter_episodes(benchmark, seed, side, data_dir)]
    data, pools = {}, {}
    for side in SIDES:
        for name in dict.fromkeys(benchmark.datasets(side)):
            if benchmark.count(side):
                split = benchmark.split_for(side, name)
                data[f"{name}/{split}"] = load_split(name, split, data_dir).fingerprint
                if benchmark.version != "1":
                    pools[f"{side}/{name}"] = dict(benchmark.pool(side, name, data_dir).stats(), split=split)
    return EpisodeManifest(benchmark, seed, [_task_entry(ep) for ep in episodes], data, pools)


def check_disjoint(manifest: EpisodeManifest) -> None:
    """Fail if any example id is used on both sides of the benchmark."""
    shared = manifest.ids("meta-train") & manifest.ids("meta-test")
    if shared:
        raise DataError(f"{len(shared)} examples appear in both meta-training and meta-testing, e.g. {sorted(shared)[0]}")


