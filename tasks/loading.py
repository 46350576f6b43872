"""Load dataset splits from the Hugging Face Hub or a local mirror, one code path.

Both sources go through ``datasets.load_dataset``: the Hub by id (pinned revision),
a mirror as ``<data_dir>/<name>/<split>.parquet`` through the ``parquet`` builder.
Every loaded split is checked against its spec (columns, label range) so a broken
file fails here with its path and column, not deep inside training.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from metaft.suite.foundation.errors import SuiteError

from .registry import get_dataset_spec
from .spec import DatasetSpec
from .task_types import get_task_type

DATA_DIR_ENV = "SUITE_DATA_DIR"


class DataError(SuiteError, RuntimeError):
    """A dataset cannot be loaded or fails validation; the message says how to fix it."""


@dataclass(frozen=True, eq=False)  # identity hash: used as a cache key
class LoadedSplit:
    """A validated split plus where it came from."""

    spec: DatasetSpec
    split: str
    dataset: Any  # a datasets.Dataset (typed loosely: the datasets package ships no complete stubs)
    source: str  # "hub:<id>@<rev>" or a file path
    fingerprint: str

    @property
    def num_rows(self) -> int:
        return len(self.dataset)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The mirror folder: the explicit argument, else ``$SUITE_DATA_DIR``, else None (the Hub)."""
    value = data_dir if data_dir not in (None, "") else os.environ.get(DATA_DIR_ENV) or None
    if value is None:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise DataError(f"data directory {path} does not exist; pass an existing mirror folder to --data-dir "
                        f"(or unset {DATA_DIR_ENV} to load from the Hub)")
    return path


def mirror_path(data_dir: Path, name: str, split: str) -> Path:
    return data_dir / name / f"{split}.parquet"


def load_split(name: str, split: str, data_dir: str | os.PathLike | None = None) -> LoadedSplit:
    """Load and validate one split; cached per process."""
    root = resolve_data_dir(data_dir)
    return _load_split_cached(name, split, str(root) if root else None)


@lru_cache(maxsize=64)
def _load_split_cached(name: str, split: str, data_dir: str | None) -> LoadedSplit:
    spec = get_dataset_spec(name)
    if split not in spec.splits:
        raise DataError(f"dataset {name!r} has no split {split!r}; its splits are {', '.join(spec.splits)}")
    if data_dir is not None:
        path = mirror_path(Path(data_dir), name, split)
        digest = _checked_sha256(path, Path(data_dir), name, split)
        ds = _load_parquet(path, spec, split)
        source, fingerprint = str(path), "sha256:" + digest
    else:
        ds = _load_hub(spec, split)
        source = f"hub:{spec.hub_id}" + (f"/{spec.hub_config}" if spec.hub_config else "") + f"@{spec.revision or 'main'}"
        fingerprint = f"hf:{ds._fingerprint}"
    _validate(ds, spec, source)
    return LoadedSplit(spec, split, ds, source, fingerprint)


def _load_parquet(path: Path, spec: DatasetSpec, split: str):
    import datasets

    if not path.is_file():
        raise DataError(f"missing data file {path} (dataset {spec.name!r}, split {split!r}); "
                        f"write the mirror with `suite data export --to {path.parent.parent}` or fix --data-dir")
    try:
        return datasets.load_dataset("parquet", data_files={split: str(path)}, split=split)
    except Exception as exc:  # pyarrow/datasets raise many types for a damaged file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read {path}: {first}; the file is corrupt or not Parquet, "
                        f"re-export it with `suite data export`") from exc


def _load_hub(spec: DatasetSpec, split: str):
    import datasets

    if spec.hub_id is None:
        raise DataError(f"dataset {spec.name!r} has no Hub copy in the suite's schema; point --data-dir or "
                        f"{DATA_DIR_ENV} at a mirror folder that holds {spec.name}/{split}.parquet")
    hint = (f"cannot load {spec.hub_id} from the Hugging Face Hub (offline?); point --data-dir or "
            f"{DATA_DIR_ENV} at a local mirror (written by `suite data export --to DIR` on a machine with network)")
    offline = any(os.environ.get(v, "0") not in ("0", "", "false", "False")
                  for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    if not offline and hub_unreachable():  # else the Hub client retries for about 25 s, then fails
        go_offline()  # a dataset in the local HF cache still loads
        offline = True
    try:  # offline, a dataset already in the local HF cache still loads
        return datasets.load_dataset(spec.hub_id, spec.hub_config, split=split, revision=spec.revision)
    except Exception as exc:
        text = str(exc).lower()
        if offline or isinstance(exc, (ConnectionError, TimeoutError)) or \
                any(w in text for w in ("connect", "offline", "resolve", "couldn't reach", "network")):
            raise DataError(hint) from exc
        raise


def go_offline() -> None:
    """Offline mode for the Hub clients already imported (they read the variables at import)."""
    import sys

    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    for module, names in (("huggingface_hub.constants", ("HF_HUB_OFFLINE",)),
                          ("datasets.config", ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))):
        if module in sys.modules:
            for name in names:
                if hasattr(sys.modules[module], name):
                    setattr(sys.modules[module], name, True)


@lru_cache(maxsize=1)
def hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the Hugging Face Hub cannot be reached (one TCP connect to its endpoint), or None."""
    import socket
    from urllib.parse import urlsplit

    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"
    return None


def _validate(ds, spec: DatasetSpec, source: str) -> None:
    columns = set(ds.column_names)
    for canonical, column in spec.columns.items():
        if column not in columns:
            raise DataError(f"{source}: missing column {column!r} (the {canonical} field of {spec.name}); "
                            f"columns found: {', '.join(sorted(columns))}")
    if len(ds) == 0:
        raise DataError(f"{source}: the split is empty")
    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    label_field = get_task_type(spec.task_type).labels
    if label_field is not None:
        column = spec.columns[label_field]
        values = table.column(column)
        if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):  # labels per token
            values = pc.list_flatten(values)
        if values.null_count:
            raise DataError(f"{source}: column {column!r} has {values.null_count} missing labels")
        lo, hi = pc.min_max(values).values()
        lo, hi = lo.as_py(), hi.as_py()
        if lo is None or lo < 0 or hi >= spec.num_labels:
            raise DataError(f"{source}: column {column!r} has labels in [{lo}, {hi}], outside 0..{spec.num_labels - 1} "
                            f"({spec.name} has {spec.num_labels} labels); the file does not match the spec")


@lru_cache(maxsize=256)
def _file_sha256_cached(path: str, size: int, mtime: float) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


MIRROR_MANIFEST = "manifest.json"  # optional, in the mirror's root: datasets.<name>.splits.<split>.sha256


@lru_cache(maxsize=8)
def _mirror_checksums(data_dir: str, mtime_ns: int) -> dict[tuple[str, str], str]:
    """``(dataset, split) -> sha256`` from the mirror's manifest (empty when it has none)."""
    path = Path(data_dir) / MIRROR_MANIFEST
    try:
        manifest = json.loads(path.read_text())
        return {(name, split): entry["sha256"] for name, ds in manifest.get("datasets", {}).items()
                for split, entry in (ds.get("splits") or {}).items() if isinstance(entry, dict) and "sha256" in entry}
    except (ValueError, AttributeError, TypeError) as exc:
        raise DataError(f"{path} is not a valid mirror manifest ({exc}); fix or remove it") from None


def _checked_sha256(path: Path, data_dir: Path, name: str, split: str) -> str:
    """The file's sha256, checked against the mirror's manifest where it lists the file: a
    modified or truncated mirror file is refused before it is read."""
    if not path.is_file():
        return ""  # _load_parquet names the missing file
    digest = _file_sha256(path)
    manifest = data_dir / MIRROR_MANIFEST
    if manifest.is_file():
        expected = _mirror_checksums(str(data_dir), manifest.stat().st_mtime_ns).get((name, split))
        if expected is not None and expected != digest:
            raise DataError(f"{path} does not match the mirror's {manifest} (sha256 {digest[:12]}..., expected "
                            f"{expected[:12]}...); the file was modified or damaged: restore it, or update "
                            f"its sha256 in {manifest} if the change is intended")
    return digest


def _file_sha256(path: Path) -> str:
    st = path.stat()
    return _file_sha256_cached(str(path), st.st_size, st.st_mtime)


def example_ids(loaded: LoadedSplit) -> np.ndarray:
    """Globally unique, stable ids ``<dataset>/<split>/<row id>`` for every row."""
    spec, ds = loaded.spec, loaded.dataset
    prefix = f"{spec.name}/{loaded.split}/"
    id_col = spec.columns.get("id")
    raw = ds.data.table.column(id_col).to_pylist() if id_col else range(len(ds))
    return np.array([prefix + str(v) for v in raw], dtype=object)


def export_mirror(names: list[str], to: str | os.PathLike, splits: list[str] | None = None,
                  progress: bool = True) -> list[Path]:
    """Write ``<to>/<name>/<split>.parquet`` from the Hub for air-gapped machines."""
    out = Path(to)
    written: list[Path] = []
    for name in names:
        spec = get_dataset_spec(name)
        for split in splits or spec.splits:
            if split not in spec.splits:
                continue
            ds = _load_hub(spec, split)
            _validate(ds, spec, f"hub:{spec.hub_id}")
            target = mirror_path(out, name, split)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".parquet.tmp")
            ds.to_parquet(str(tmp))
            os.replace(tmp, target)
            written.append(target)
            if progress:
                print(f"wrote {target} ({len(ds)} rows)")
    return written
