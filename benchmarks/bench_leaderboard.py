"""Leaderboard build time and site size for 100,000 result rows (target: under 5 s on 2 cores
once the results are consolidated).

Writes a synthetic results folder in the store's format (5,000 runs x 20 tasks: 5
algorithms x 2 models x 500 seeds), then times `build_site` twice: the first build reads
10,000 small Parquet files and writes the folder's consolidated index (``.index/``); the
second reads the index. Loading and rendering are timed apart. The fixture's writing is
not timed. Not a timed test: run it with `python benchmarks/bench_leaderboard.py`.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

DATASETS = ["ag_news", "yelp_review_full", "ontonotes5", "natural_questions"]


def write_fixture(root: Path, seeds: int, tasks_per_run: int = 20) -> int:
    from metaft.suite.results import (
        RunFolder,
        atomic_write_json,
        atomic_write_table,
        rows_table,
        run_schema,
        task_schema,
    )

    rng = np.random.default_rng(0)
    n = 0
    for model in ("minilm", "bert-base-uncased"):
        for seed in range(seeds):
            base = rng.uniform(0.3, 0.7, tasks_per_run)
            for k, algo in enumerate(["baseline", "reptile", "fomaml", "maml", "multitask"]):
                quality = np.clip(base + 0.02 * k + rng.normal(0, 0.02, tasks_per_run), 0, 1)
                cost = rng.uniform(2, 4, tasks_per_run) * (1 + 0.1 * k)
                run_id = f"{algo}-{model}-s{seed}"
                folder = RunFolder(root, run_id)
                rows = [{"run_id": run_id, "algo": algo, "model": model, "seed": seed, "benchmark": "cross-dataset-v1",
                         "episodes_fingerprint": f"{model}{seed}", "task_index": i,
                         "task_id": f"meta-test/{i:04d}/{DATASETS[i % 4]}", "dataset": DATASETS[i % 4],
                         "task_type": "classification", "metric_name": "accuracy", "metric": float(quality[i]),
                         "metric_at_0": float(quality[i] / 2), "ft_steps": 16, "ft_seconds": float(cost[i]),
                         "ft_gpu_hours": float(cost[i] / 3600),
                         "ft_tokens": 4096, "ft_flops": float(4096 * 6e7 * (1 + 0.1 * k)), "curve_steps": [0, 1, 2, 4, 8, 16],
                         "curve_metric": [float(quality[i] * f) for f in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)],
                         "curve_seconds": [float(cost[i] * f) for f in (0, 0.06, 0.12, 0.25, 0.5, 1.0)],
                         "target": float(base[i]), "target_source": "baseline",
                         "steps_to_target": 8 if quality[i] >= base[i] else None} for i in range(tasks_per_run)]
                folder.path.mkdir(parents=True)
                atomic_write_table(folder.path / "tasks.parquet", rows_table(rows, task_schema()))
                atomic_write_table(folder.path / "run.parquet", rows_table(
                    [{"run_id": run_id, "algo": algo, "model": model, "seed": seed, "n_tasks": tasks_per_run}], run_schema()))
                atomic_write_json(folder.path / "manifest.json", {"run_id": run_id, "config": {"algo": algo}})
                n += tasks_per_run
    return n


def main() -> None:
    from metaft.leaderboard.site import SiteBuilder, load_site_data

    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=500, help="seeds per model (500 -> 100,000 rows)")
    parser.add_argument("--repeats", type=int, default=5, help="consolidated rebuilds timed (the median is reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results, site = Path(tmp) / "results", Path(tmp) / "site"
        t = time.perf_counter()
        rows = write_fixture(results, args.seeds)
        print(f"fixture: {rows} rows in {len(list(results.iterdir()))} runs (written in {time.perf_counter() - t:.1f} s, not timed)")
        def build() -> tuple[float, float]:
            t = time.perf_counter()
            data = load_site_data([str(results)])
            loaded = time.perf_counter() - t
            SiteBuilder(data, site).build()
            return time.perf_counter() - t, loaded

        dt, loaded = build()
        print(f"first build (unconsolidated: reads every run's files, writes the index): {dt:.1f} s for {rows} rows "
              f"(loading {loaded:.1f} s, analysis and pages {dt - loaded:.1f} s)")
        again = [build() for _ in range(args.repeats)]
        times = sorted(dt for dt, _ in again)
        median = times[len(times) // 2]
        loaded = sorted(ld for _, ld in again)[len(again) // 2]
        print(f"rebuild (consolidated index), median of {args.repeats}: {median:.1f} s for {rows} rows "
              f"(range {times[0]:.1f}-{times[-1]:.1f} s; loading {loaded:.1f} s)")
        files = [p for p in site.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        js = (site / "assets" / "plotly.min.js").stat().st_size
        print(f"target: rebuild < 5 s; site: {len(files)} files, {size / 2**20:.1f} MiB "
              f"({js / 2**20:.1f} MiB of it plotly.js, included once)")


if __name__ == "__main__":
    main()
