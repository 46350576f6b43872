"""Example pools: which rows of a split a side of the benchmark may draw from.

Real splits contain duplicates (the mirror's IMDb test repeats 8 of its texts and shares
25 with IMDb train; OntoNotes 5 test holds 485 repeated sentences, 7 of them also in
CoNLL-2003 train). Rows are therefore identified by a hash of their normalised content,
and a pool is the set of rows a side may use:

* duplicates within a split are dropped (the first occurrence stays);
* a training split is cut by content hash into a meta-training part and a held-out
  validation part (``val_fraction``), so validation tasks never share a text with
  meta-training tasks, and the cut does not depend on the seed;
* an evaluation pool (meta-test) drops every row whose content occurs in any split that
  meta-training or validation draws from.

The counts go into the run's manifest; :func:`check_leakage` then verifies the sampled
episodes by the same hash.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np

from metaft.suite.foundation.errors import ConfigError
from metaft.suite.foundation.files import atomic_write_file, cache_root

from .loading import DataError, LoadedSplit
from .task_types import TaskType, get_task_type

PARTS = ("all", "train", "val")


def normalise(text: str) -> str:
    """Lower case, whitespace collapsed: trivially re-spaced copies count as duplicates."""
    return " ".join(str(text).lower().split())


def content_text(task_type: str, example: dict) -> str:
    """The text that identifies an example's content (its task type's content columns)."""
    return get_task_type(task_type).content_text(example)


def content_key(task_type: str, example: dict) -> str:
    return _key_of_text(content_text(task_type, example))


def _key_of_text(text: str) -> str:
    return hashlib.blake2b(normalise(text).encode(), digest_size=8).hexdigest()


KEY_SCHEME = "blake2b8-normalised-v1"  # change it whenever normalise() or the hash changes: old caches then miss


def _key_fraction(keys: np.ndarray) -> np.ndarray:
    """A content key as a number in [0, 1): the validation cut is a pure function of content."""
    return np.array([int(k[:8], 16) for k in keys], dtype=np.float64) / 16 ** 8


@lru_cache(maxsize=64)
def split_keys(loaded: LoadedSplit) -> np.ndarray:
    """Content key of every row of ``loaded``, from the on-disk cache when the same data was keyed
    before (hashing the quick protocol's six splits, 118k rows, took 1.6 s of every ``suite run``)."""
    path = _keys_cache_path(loaded)
    if path is not None:
        cached = _read_keys(path, len(loaded.dataset))
        if cached is not None:
            return cached
    keys = _compute_keys(loaded)
    if path is not None:
        _write_keys(path, keys)
    return keys


def _compute_keys(loaded: LoadedSplit) -> np.ndarray:
    spec, table = loaded.spec, loaded.dataset.data.table
    kind = get_task_type(spec.task_type)
    cols = {c: table.column(spec.columns[c]).to_pylist() for c in kind.content_columns}
    n = len(loaded.dataset)
    return np.array([_key_of_text(kind.content_text({c: v[i] for c, v in cols.items()})) for i in range(n)],
                    dtype=object)


def _keys_cache_path(loaded: LoadedSplit) -> Path | None:
    """Where the keys of ``loaded`` are cached: named by the data's fingerprint (the file's sha256 or
    the Hub's fingerprint), the content columns and the key scheme, so changed data, another column
    mapping or a new scheme never reads an old entry. None (no cache) for a task type that defines
    its own ``content_text``: its code, not only its columns, decides the keys."""
    kind = get_task_type(loaded.spec.task_type)
    if not loaded.fingerprint or type(kind).content_text is not TaskType.content_text:
        return None
    ident = json.dumps([KEY_SCHEME, loaded.fingerprint, list(kind.content_columns),
                        [loaded.spec.columns[c] for c in kind.content_columns], len(loaded.dataset)])
    name = f"{loaded.spec.name}-{loaded.split}-{hashlib.sha256(ident.encode()).hexdigest()[:20]}.npy"
    return cache_root() / "content-keys" / name


def _read_keys(path: Path, rows: int) -> np.ndarray | None:
    """The cached keys, or None when there are none or they are damaged (then they are recomputed)."""
    try:
        with open(path, "rb") as fh:
            keys = np.load(fh, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if keys.shape != (rows,) or keys.dtype != np.dtype("<U16"):
        return None
    return keys.astype(object)


def _write_keys(path: Path, keys: np.ndarray) -> None:
    """Best effort and atomic: a cache that cannot be written costs time, never a result."""
    buffer = io.BytesIO()
    np.save(buffer, keys.astype("<U16"), allow_pickle=False)
    try:
        atomic_write_file(path, buffer.getvalue())
    except OSError:
        pass


@dataclass(frozen=True)
class Pool:
    """Rows of one split that a side may draw from, and how they were chosen."""

    name: str
    split: str
    part: str
    allowed: np.ndarray  # bool per row
    rows: int
    duplicates: int  # dropped: repeated within the split
    other_part: int  # rows in the other part of a train/val cut
    overlap: int  # dropped: content also on the training side

    @property
    def size(self) -> int:
        return int(self.allowed.sum())

    def stats(self) -> dict:
        return {"rows": self.rows, "duplicates_dropped": self.duplicates, "other_part": self.other_part,
                "overlap_dropped": self.overlap, "eligible": self.size}


def make_pool(loaded: LoadedSplit, part: str = "all", val_fraction: float = 0.0,
              exclude: Iterable[str] | frozenset = frozenset()) -> Pool:
    """The pool of ``loaded``: ``part`` is all rows, the training part or the validation part
    of a content-hash cut at ``val_fraction``; keys in ``exclude`` are dropped."""
    if part not in PARTS:
        raise ConfigError(f"unknown pool part {part!r}; choose one of {', '.join(PARTS)}")
    keys = split_keys(loaded)
    _, first = np.unique(keys, return_index=True)
    unique = np.zeros(len(keys), dtype=bool)
    unique[first] = True
    allowed = unique.copy()
    other = 0
    if part != "all":
        in_val = _key_fraction(keys) < val_fraction
        mine = in_val if part == "val" else ~in_val
        other = int((allowed & ~mine).sum())
        allowed &= mine
    overlap = 0
    exclude = frozenset(exclude)
    if exclude:
        hit = np.fromiter((k in exclude for k in keys), dtype=bool, count=len(keys))
        overlap = int((allowed & hit).sum())
        allowed &= ~hit
    if not allowed.any():
        raise DataError(f"{loaded.source}: no rows left in the {part!r} pool after de-duplication")
    return Pool(loaded.spec.name, loaded.split, part, allowed, len(keys), int((~unique).sum()), other, overlap)


class LeakageError(DataError):
    """Content shared between sides of a benchmark, or between a task's support and query."""


def check_leakage(meta_test: list, training_side: list) -> dict:
    """By content hash: no meta-test query text occurs in any meta-training or validation
    episode, and no task's support and query share a text. Returns counts for the manifest."""
    seen: dict[str, str] = {}
    for ep in training_side:
        for ex in ep.support + ep.query:
            seen.setdefault(content_key(ep.task_type, ex), f"{ep.task_id} ({ex['id']})")
    checked = 0
    for ep in list(meta_test) + list(training_side):
        support = {content_key(ep.task_type, ex): ex["id"] for ex in ep.support}
        for ex in ep.query:
            key = content_key(ep.task_type, ex)
            if key in support:
                raise LeakageError(f"task {ep.task_id}: query example {ex['id']} has the same text as support "
                                   f"example {support[key]}; the pool of {ep.dataset} must be de-duplicated")
            if ep.side == "meta-test" and key in seen:
                raise LeakageError(f"meta-test task {ep.task_id} ({ep.dataset}): query example {ex['id']} "
                                   f"has the same text as an example of {seen[key]}; the benchmark leaks "
                                   f"test content into training")
            checked += 1
    return {"examples_checked": checked, "training_side_texts": len(seen)}
