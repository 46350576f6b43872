"""Episodes: deterministic few-shot tasks sampled from a dataset split.

One :class:`Episode` type serves every task type. Its examples are plain dicts in the
suite's canonical fields (``text``/``label``, ``tokens``/``tags``, or the SQuAD fields),
with labels already remapped to the episode's own label set. Sampling is a pure
function of (split, shape, rng), and the benchmark derives the rng from
(benchmark, seed, side, index), so every algorithm sees the same episodes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from metaft.suite.foundation.errors import ConfigError

from .loading import DataError, LoadedSplit, example_ids
from .task_types import get_task_type


@dataclass(frozen=True)
class EpisodeShape:
    """How big an episode is. ``ways`` caps at the dataset's number of classes/types.

    classification: N-way, ``shots`` support and ``queries`` query examples per class;
    NER: N entity types, support sentences until each type has ``shots`` mentions,
    query sentences until each has ``queries`` mentions; QA: ``shots`` support and
    ``queries`` query questions (``ways`` is unused).
    """

    ways: int = 5
    shots: int = 5
    queries: int = 5

    def __post_init__(self) -> None:
        for name in ("ways", "shots", "queries"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"episode shape: {name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class Episode:
    """A few-shot task: support and query examples plus the episode's label set."""

    dataset: str
    task_type: str
    split: str
    side: str
    index: int
    classes: tuple[str, ...]  # classification: class names in episode order; NER: entity types
    label_names: tuple[str, ...]  # names of labels 0..L-1 as the model sees them
    support: list[dict] = field(repr=False)
    query: list[dict] = field(repr=False)

    @property
    def support_ids(self) -> list[str]:
        return [ex["id"] for ex in self.support]

    @property
    def query_ids(self) -> list[str]:
        return [ex["id"] for ex in self.query]

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def task_id(self) -> str:
        return f"{self.side}/{self.index:04d}/{self.dataset}"


# --------------------------------------------------------------------------- indexes
@lru_cache(maxsize=32)
def split_ids(loaded: LoadedSplit) -> np.ndarray:
    """Every row's example id (cached: samplers and manifests look rows up by id)."""
    return example_ids(loaded)


@lru_cache(maxsize=32)
def _label_rows(loaded: LoadedSplit) -> list[np.ndarray]:
    """Classification: the rows of each class."""
    spec, table = loaded.spec, loaded.dataset.data.table
    labels = np.asarray(table.column(spec.columns["label"]).to_numpy(zero_copy_only=False))
    return [np.flatnonzero(labels == c) for c in range(spec.num_labels)]


@lru_cache(maxsize=32)
def _mention_counts(loaded: LoadedSplit) -> np.ndarray:
    """NER: [rows, entity types] count of B- tags."""
    spec, table = loaded.spec, loaded.dataset.data.table
    types = spec.entity_types
    type_of_tag = np.array([-1 if t == "O" else types.index(t[2:]) for t in spec.label_names])
    begins = np.array([t.startswith("B-") for t in spec.label_names])
    mentions = np.zeros((len(loaded.dataset), len(types)), dtype=np.int32)
    col = table.column(spec.columns["tags"]).combine_chunks()
    offsets = col.offsets.to_numpy()
    flat = col.values.to_numpy(zero_copy_only=False).astype(np.int64)
    row_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    is_begin = begins[flat]
    np.add.at(mentions, (row_of[is_begin], type_of_tag[flat[is_begin]]), 1)
    return mentions


@lru_cache(maxsize=32)
def _title_groups(loaded: LoadedSplit) -> list[np.ndarray]:
    """QA: row groups per article title (each row alone when there are no titles)."""
    spec, table = loaded.spec, loaded.dataset.data.table
    title_col = spec.columns.get("title")
    if not (title_col and title_col in loaded.dataset.column_names):
        return [np.array([i]) for i in range(len(loaded.dataset))]
    titles = np.asarray(table.column(title_col).to_pylist(), dtype=object)
    _, inverse = np.unique(titles, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    return np.split(order, bounds)


def _rows(loaded: LoadedSplit, rows: np.ndarray) -> list[dict]:
    """Canonical example dicts for ``rows`` (one batched read)."""
    spec, ds = loaded.spec, loaded.dataset
    ids = split_ids(loaded)
    cols = ds[[int(r) for r in rows]]
    out = []
    for j, r in enumerate(rows):
        ex = {"id": ids[r]}
        for canonical, column in spec.columns.items():
            if canonical != "id":
                ex[canonical] = cols[column][j]
        out.append(ex)
    return out


# --------------------------------------------------------------------------- samplers
def sample_episode(loaded: LoadedSplit, shape: EpisodeShape, rng: np.random.Generator, *,
                   side: str = "", index: int = 0, allowed: np.ndarray | None = None) -> Episode:
    """Sample one episode of ``shape`` from ``loaded`` with ``rng``, from the rows marked in
    ``allowed`` (a boolean mask, e.g. a de-duplicated pool; default: every row)."""
    kind = loaded.spec.task_type
    sampler = get_task_type(kind).resolve("sampler")
    if allowed is None:
        allowed = np.ones(loaded.num_rows, dtype=bool)
    classes, label_names, support, query = sampler(loaded, shape, rng, allowed)
    return Episode(loaded.spec.name, kind, loaded.split, side, index, classes, label_names, support, query)


def sample_classification(loaded: LoadedSplit, shape: EpisodeShape, rng: np.random.Generator, allowed: np.ndarray):
    spec = loaded.spec
    need = shape.shots + shape.queries
    by_label = [rows[allowed[rows]] for rows in _label_rows(loaded)]
    eligible = [c for c in range(spec.num_labels) if len(by_label[c]) >= need]
    ways = min(shape.ways, spec.num_labels)
    if len(eligible) < ways:
        raise DataError(f"{loaded.source}: only {len(eligible)} classes have {need} examples; "
                        f"a {ways}-way {shape.shots}-shot episode with {shape.queries} queries cannot be sampled")
    chosen = rng.permutation(eligible)[:ways]  # position in this order = the episode's label
    support_rows, query_rows, support_labels, query_labels = [], [], [], []
    for new_label, c in enumerate(chosen):
        picked = rng.choice(by_label[c], size=need, replace=False)
        support_rows += list(picked[: shape.shots]); support_labels += [new_label] * shape.shots
        query_rows += list(picked[shape.shots:]); query_labels += [new_label] * shape.queries
    classes = tuple(spec.label_names[c] for c in chosen)
    support = _relabel(_rows(loaded, np.array(support_rows)), support_labels)
    query = _relabel(_rows(loaded, np.array(query_rows)), query_labels)
    perm_s, perm_q = rng.permutation(len(support)), rng.permutation(len(query))
    return classes, classes, [support[i] for i in perm_s], [query[i] for i in perm_q]


def _relabel(examples: list[dict], labels: list[int]) -> list[dict]:
    for ex, y in zip(examples, labels):
        ex["label"] = int(y)
    return examples


def sample_ner(loaded: LoadedSplit, shape: EpisodeShape, rng: np.random.Generator, allowed: np.ndarray):
    spec, mentions = loaded.spec, _mention_counts(loaded)
    types = spec.entity_types
    totals = mentions[allowed].sum(0)
    eligible = [t for t in range(len(types)) if totals[t] >= 4 * (shape.shots + shape.queries)]
    ways = min(shape.ways, len(types))
    if len(eligible) < ways:
        raise DataError(f"{loaded.source}: only {len(eligible)} entity types are frequent enough for "
                        f"{ways}-way {shape.shots}-shot NER episodes")
    chosen = rng.permutation(eligible)[:ways]
    used = ~allowed  # rows outside the pool count as used
    support_rows = _greedy_mentions(mentions, chosen, shape.shots, used, rng, loaded)
    query_rows = _greedy_mentions(mentions, chosen, shape.queries, used, rng, loaded)
    classes = tuple(types[t] for t in chosen)
    label_names = ("O",) + tuple(f"{p}-{types[t]}" for t in chosen for p in ("B", "I"))
    # original tag id -> episode tag id; types not chosen become O
    remap = np.zeros(spec.num_labels, dtype=np.int64)
    for tag_id, tag in enumerate(spec.label_names):
        if tag != "O" and tag[2:] in classes:
            remap[tag_id] = label_names.index(tag)
    def convert(rows):
        examples = _rows(loaded, rows)
        for ex in examples:
            ex["tags"] = [int(remap[t]) for t in ex["tags"]]
        return examples
    return classes, label_names, convert(support_rows), convert(query_rows)


def _greedy_mentions(mentions: np.ndarray, chosen: np.ndarray, k: int, used: np.ndarray,
                     rng: np.random.Generator, loaded: LoadedSplit) -> np.ndarray:
    """Add random sentences that carry a still-needed type until every type has ``k`` mentions."""
    sub = mentions[:, chosen]
    candidates = np.flatnonzero((sub.sum(1) > 0) & ~used)
    need = np.full(len(chosen), k)
    picked = []
    for row in rng.permutation(candidates):
        if (sub[row][need > 0] > 0).any():
            picked.append(row)
            need -= sub[row]
            if (need <= 0).all():
                break
    if (need > 0).any():
        raise DataError(f"{loaded.source}: not enough sentences to give every chosen entity type {k} mentions")
    rows = np.array(picked)
    used[rows] = True
    return rows


def sample_qa(loaded: LoadedSplit, shape: EpisodeShape, rng: np.random.Generator, allowed: np.ndarray):
    need = shape.shots + shape.queries
    if int(allowed.sum()) < need:
        raise DataError(f"{loaded.source}: {int(allowed.sum())} questions, fewer than the {need} an episode needs")
    titles = [g[allowed[g]] for g in _title_groups(loaded)]
    rows: list[int] = []
    for g in rng.permutation(len(titles)):  # whole articles, in random order
        group = rng.permutation(titles[g])
        rows += list(group[: need - len(rows)])
        if len(rows) == need:
            break
    rows_arr = rng.permutation(np.array(rows))
    support = _rows(loaded, rows_arr[: shape.shots])
    query = _rows(loaded, rows_arr[shape.shots:])
    return (), (), support, query
