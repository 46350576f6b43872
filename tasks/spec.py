"""One typed, frozen description per dataset (MTEB-style metadata).

A spec says where a dataset lives (Hub id, config, pinned revision), which splits
exist and what role they play, how its columns map onto the suite's canonical
fields, and how it is scored. Everything downstream reads specs, never hard-coded
dataset names.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from metaft.suite.foundation.errors import ConfigError

from .task_types import TASK_TYPES as REGISTERED

PROTOCOL_SIDES = ("meta-train", "meta-test")  # the sides a dataset can take in a protocol
TaskType = str  # a registered task type: classification, ner, qa or a plugin's (`metaft.tasks.task_types`)


@dataclass(frozen=True)
class DatasetSpec:
    """Metadata of one dataset.

    ``columns`` maps canonical field names to the dataset's own column names:
    classification uses ``text`` and ``label``; NER uses ``tokens`` and ``tags``;
    QA uses ``id``, ``title``, ``context``, ``question`` and ``answers``. An ``id``
    entry, where present, names a column whose values identify a row; otherwise
    the row number is the id.
    """

    name: str
    hub_id: str | None
    task_type: TaskType
    label_names: tuple[str, ...]
    columns: dict[str, str]
    splits: tuple[str, ...]
    train_split: str | None
    eval_split: str
    hub_config: str | None = None
    revision: str | None = None
    metric: str = ""
    description: str = ""
    license: str = ""
    citation: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    # the side the dataset takes in each named protocol that fixes sides ("cross-dataset": "meta-train"
    # or "meta-test"); the in-dataset protocol uses every dataset on both sides and needs no entry
    protocol_sides: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task_type not in REGISTERED:
            raise ConfigError(f"dataset {self.name!r}: task_type {self.task_type!r} is not one of "
                              f"{', '.join(REGISTERED.names())}")
        task_type = REGISTERED.get(self.task_type)
        if self.train_split is not None and self.train_split not in self.splits:
            raise ConfigError(f"dataset {self.name!r}: train_split {self.train_split!r} not in splits {self.splits}")
        if self.eval_split not in self.splits:
            raise ConfigError(f"dataset {self.name!r}: eval_split {self.eval_split!r} not in splits {self.splits}")
        missing = [c for c in task_type.columns if c not in self.columns]
        if missing:
            raise ConfigError(f"dataset {self.name!r}: column mapping lacks {missing}")
        if not self.metric:
            object.__setattr__(self, "metric", task_type.default_metric)
        for protocol, side in self.protocol_sides.items():
            if side not in PROTOCOL_SIDES:
                raise ConfigError(f"dataset {self.name!r}: protocol_sides[{protocol!r}] must be one of "
                                  f"{', '.join(PROTOCOL_SIDES)}, got {side!r}")
            if side == "meta-train" and self.train_split is None:
                raise ConfigError(f"dataset {self.name!r}: protocol_sides[{protocol!r}] is meta-train but the "
                                  f"dataset has no train_split")

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def entity_types(self) -> tuple[str, ...]:
        """Entity types of a BIO tag set, in order of first appearance."""
        seen: list[str] = []
        for tag in self.label_names:
            if tag != "O" and tag[2:] not in seen:
                seen.append(tag[2:])
        return tuple(seen)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "hub_id": self.hub_id, "hub_config": self.hub_config,
            "revision": self.revision, "task_type": self.task_type, "metric": self.metric,
            "splits": list(self.splits), "train_split": self.train_split, "eval_split": self.eval_split,
            "columns": dict(self.columns), "label_names": list(self.label_names),
            "license": self.license, "description": self.description, "protocol_sides": dict(self.protocol_sides),
        }
