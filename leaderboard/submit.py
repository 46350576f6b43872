"""`suite leaderboard add FILE`: validate a submitted results file and add it to a results folder.

A submission is a table of task rows in the results-store schema (Parquet, CSV or JSON
lines). It is rejected, with the row and field named, on a missing column, a value of
the wrong type, a metric outside [0, 1], a NaN or infinite value, a duplicate task of a
run, an unknown dataset, or a negative cost. Accepted rows become run folders like
those `suite run` writes, marked as submitted in their manifest.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from metaft.suite.foundation.errors import ConfigError
from metaft.suite.paths import check_writable_location
from metaft.suite.results import RunFolder, atomic_write_json
from metaft.tasks import list_datasets

REQUIRED = {
    "run_id": str, "algo": str, "model": str, "seed": int, "benchmark": str, "episodes_fingerprint": str,
    "task_index": int, "task_id": str, "dataset": str, "task_type": str, "metric_name": str,
    "metric": float, "ft_seconds": float, "ft_gpu_hours": float,
    "curve_steps": list, "curve_metric": list, "curve_seconds": list,
}
UNIT_INTERVAL = ("metric", "metric_at_0", "exact_match")
NULLABLE = ("exact_match", "steps_to_target", "seconds_to_target")
NON_NEGATIVE = ("ft_seconds", "ft_gpu_hours", "ft_cpu_seconds", "ft_gpu_seconds", "steps_to_target",
                "seconds_to_target", "ft_tokens", "ft_flops", "ft_steps", "ft_peak_rss_mb", "ft_peak_cuda_mb")
NAME_RE = r"^[A-Za-z0-9_.\-]+$"


class SubmissionError(ConfigError):
    pass



def _metric_bounds(row) -> tuple[float, float]:
    """The range of the row's metric (registered metrics carry it; [0, 1] otherwise)."""
    from metaft.tasks.metrics import METRICS, metric_name_for

    name = metric_name_for(str(row.get("metric_name")), str(row.get("task_type")))
    return METRICS.get(name).bounds if name in METRICS else (0.0, 1.0)

def read_submission(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"submission {path} does not exist")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix == ".csv":
            df = pd.read_csv(path)
            for col in ("curve_steps", "curve_metric", "curve_seconds"):
                if col in df:
                    df[col] = df[col].map(lambda v: json.loads(v) if isinstance(v, str) else v)
            return df
        if path.suffix in (".jsonl", ".json"):
            return pd.read_json(path, lines=path.suffix == ".jsonl")
    except Exception as exc:
        raise SubmissionError(f"{path}: cannot be read: {str(exc).splitlines()[0]}") from exc
    raise SubmissionError(f"{path}: unsupported format {path.suffix!r}; use .parquet, .csv or .jsonl")


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def validate(df: pd.DataFrame, source: str = "submission") -> None:
    """Raise :class:`SubmissionError` naming the first bad row and field."""
    if df.empty:
        raise SubmissionError(f"{source}: no rows")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise SubmissionError(f"{source}: missing column(s) {', '.join(missing)}")
    known = set(list_datasets())

    for i, row in enumerate(df.to_dict("records")):
        where = f"{source}: row {i} ({row.get('run_id')!s}/{row.get('task_id')!s})"
        for field, kind in REQUIRED.items():
            v = row[field]
            if kind is str and not isinstance(v, str):
                raise SubmissionError(f"{where}: field {field} must be text, got {v!r}")
            if kind in (int, float):
                if not _is_number(v):
                    raise SubmissionError(f"{where}: field {field} must be a number, got {v!r}")
                if not math.isfinite(float(v)):
                    raise SubmissionError(f"{where}: field {field} is {v} (NaN or infinite)")
                if kind is int and float(v) != int(v):
                    raise SubmissionError(f"{where}: field {field} must be an integer, got {v!r}")
            if kind is list:
                if isinstance(v, np.ndarray):
                    v = v.tolist()
                if not isinstance(v, list) or not v or not all(_is_number(x) and math.isfinite(float(x)) for x in v):
                    raise SubmissionError(f"{where}: field {field} must be a non-empty list of finite numbers")
        for field in ("algo", "run_id"):
            if not re.match(NAME_RE, row[field]):
                raise SubmissionError(f"{where}: field {field} {row[field]!r} may only hold letters, digits, '_', '.', '-'")
        if row["dataset"] not in known:
            raise SubmissionError(f"{where}: field dataset: unknown dataset {row['dataset']!r}; known: {', '.join(sorted(known))}")
        low, high = _metric_bounds(row)
        for field in UNIT_INTERVAL + NON_NEGATIVE:
            if field not in row or row[field] is None:
                continue
            v = row[field]
            if field in NULLABLE and _is_number(v) and math.isnan(float(v)):
                continue  # a null: e.g. no exact match outside QA, target never reached
            if not _is_number(v) or not math.isfinite(float(v)):
                raise SubmissionError(f"{where}: field {field} is {v!r} (NaN or not a number)")
            if field in UNIT_INTERVAL and not low <= float(v) <= high:
                raise SubmissionError(f"{where}: field {field} = {v} is outside [{low:g}, {high:g}], the range of "
                                      f"metric {row.get('metric_name')!r}")
            if field in NON_NEGATIVE and float(v) < 0:
                raise SubmissionError(f"{where}: field {field} = {v} is negative")
        if any(not low <= float(x) <= high for x in row["curve_metric"]):
            raise SubmissionError(f"{where}: field curve_metric has values outside [{low:g}, {high:g}]")
        if not (len(row["curve_steps"]) == len(row["curve_metric"]) == len(row["curve_seconds"])):
            raise SubmissionError(f"{where}: fields curve_steps, curve_metric and curve_seconds differ in length")
    dup = df.duplicated(["run_id", "task_index"], keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise SubmissionError(f"{source}: row {i} ({df.iloc[i]['run_id']}/{df.iloc[i]['task_id']}): field task_index "
                              f"duplicates an earlier row of the same run")


def add_submission(path: str | Path, results: str | Path) -> list[str]:
    """Validate ``path`` and write its runs into ``results``; returns the run ids added."""
    df = read_submission(path)
    validate(df, str(path))
    results = check_writable_location(results, "--results")
    added = []
    for run_id in sorted(df["run_id"].unique()):
        folder = RunFolder(results, run_id)
        if folder.path.exists():
            raise SubmissionError(f"{path}: run {run_id} is already in {results}; rename it or remove the old one")
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    for run_id, rows in df.groupby("run_id", sort=True):
        folder = RunFolder(results, run_id)
        for row in rows.to_dict("records"):
            folder.write_task(int(row["task_index"]), row)
        first = rows.iloc[0]
        atomic_write_json(folder.path / "manifest.json", {
            "run_id": run_id, "submitted_from": str(path), "submission_sha256": digest,
            "episodes_fingerprint": first["episodes_fingerprint"], "config": {"algo": first["algo"], "model": first["model"]}})
        folder.write_run({"run_id": run_id, "algo": first["algo"], "model": first["model"], "seed": int(first["seed"]),
                          "benchmark": first["benchmark"], "episodes_fingerprint": first["episodes_fingerprint"],
                          "n_tasks": len(rows), "mean_metric": float(rows["metric"].mean()),
                          "total_ft_seconds": float(rows["ft_seconds"].sum()),
                          "total_ft_gpu_hours": float(rows["ft_gpu_hours"].sum()), "submitted": True})
        added.append(run_id)
    return added
