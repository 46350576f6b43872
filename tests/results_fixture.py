"""A results folder in the store's format with known structure, for leaderboard tests.

Algorithms: ``baseline``; ``good`` (clearly better metric, cheaper); ``same`` (the baseline
plus small noise: not significantly different); and a hostile name holding a script tag.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from metaft.suite.results import RunFolder, atomic_write_json

HOSTILE = '<script>window.__pwned=1</script>evil"algo'
DATASETS = ["ag_news", "yelp_review_full", "ontonotes5", "natural_questions"]


def write_results(root: Path, n_tasks: int = 24, seeds=(0, 1), models=("minilm",), algos=None,
                  hostile: bool = True) -> Path:
    rng = np.random.default_rng(0)
    algos = algos or ["baseline", "good", "same"] + ([HOSTILE] if hostile else [])
    for model in models:
        for seed in seeds:
            fp = f"fp{seed}"
            base_quality = rng.uniform(0.3, 0.7, n_tasks)
            base_cost = rng.uniform(2.0, 4.0, n_tasks)
            for algo in algos:
                shift, cost_scale = {"baseline": (0, 1.0), "good": (0.15, 0.6), "same": (0, 1.0)}.get(algo, (-0.1, 1.3))
                noise = rng.normal(0, 0.01, n_tasks) if algo != "baseline" else np.zeros(n_tasks)
                if algo == "same":  # the baseline plus noise of mean exactly zero: no difference to find
                    noise -= noise.mean()
                quality = np.clip(base_quality + shift + noise, 0, 1)
                cost = base_cost * cost_scale * rng.uniform(0.95, 1.05, n_tasks)
                run_id = f"{'hostile' if algo == HOSTILE else algo}-{model}-s{seed}"
                folder = RunFolder(root, run_id)
                for i in range(n_tasks):
                    steps = [0, 1, 2, 4, 8]
                    curve = list(np.linspace(quality[i] * 0.5, quality[i], 5))
                    secs = list(np.linspace(0, cost[i], 5))
                    folder.write_task(i, {
                        "run_id": run_id, "algo": algo, "model": model, "seed": seed, "benchmark": "cross-dataset-v1",
                        "episodes_fingerprint": fp, "task_index": i, "task_id": f"meta-test/{i:04d}/{DATASETS[i % 4]}",
                        "dataset": DATASETS[i % 4], "task_type": "classification", "metric_name": "accuracy",
                        "metric": float(quality[i]), "metric_at_0": float(curve[0]), "exact_match": None,
                        "ft_steps": 8, "ft_seconds": float(cost[i]), "ft_cpu_seconds": float(cost[i]),
                        "ft_gpu_seconds": 0.0, "ft_gpu_hours": float(cost[i] / 3600), "ft_peak_rss_mb": 900.0,
                        "ft_peak_cuda_mb": 0.0, "ft_tokens": 1000, "ft_flops": 1e9,
                        "curve_steps": steps, "curve_metric": [float(c) for c in curve],
                        "curve_seconds": [float(s) for s in secs], "target": float(base_quality[i]),
                        "target_source": "baseline", "steps_to_target": 8 if quality[i] >= base_quality[i] else None,
                        "seconds_to_target": float(cost[i]) if quality[i] >= base_quality[i] else None})
                atomic_write_json(folder.path / "manifest.json", {"run_id": run_id, "config": {"algo": algo},
                                                                  "packages": {"torch": "2.13.0"}})
                folder.write_run({"run_id": run_id, "algo": algo, "model": model, "seed": seed,
                                  "benchmark": "cross-dataset-v1", "episodes_fingerprint": fp, "n_tasks": n_tasks,
                                  "mean_metric": float(quality.mean()), "total_ft_seconds": float(cost.sum())})
    return root


PLANTED = {  # candidate: (exact mean paired difference, sd of the differences)
    "plants-better": (0.10, 0.02),
    "plants-worse": (-0.10, 0.02),
    "plants-equivalent": (0.0, 0.01),
    "plants-inconclusive": (0.0, 0.20),
    "plants-better-within-margin": (0.008, 0.005),
}
PLANTED_VERDICTS = {"plants-better": "better", "plants-worse": "worse", "plants-equivalent": "equivalent within margin",
                    "plants-inconclusive": "inconclusive (underpowered)",
                    "plants-better-within-margin": "better (within margin)"}


def write_planted_verdicts(root: Path, n_tasks: int = 40, metric_name: str = "accuracy",
                           as_error_rate: bool = False) -> Path:
    """One dataset, a baseline and one candidate per verdict, each difference planted exactly.
    ``as_error_rate``: every value is written as 1 - accuracy (a smaller-is-better metric), so
    the same verdicts must come out."""
    rng = np.random.default_rng(5)
    base = rng.uniform(0.45, 0.55, n_tasks)
    for algo, (shift, sd) in [("baseline", (0.0, 0.0))] + list(PLANTED.items()):
        noise = rng.normal(0, sd, n_tasks) if sd else np.zeros(n_tasks)
        quality = base + noise - noise.mean() + shift
        run_id = f"{algo}-minilm-s0"
        folder = RunFolder(root, run_id)
        for i in range(n_tasks):
            q = float(1 - quality[i]) if as_error_rate else float(quality[i])
            start = float(1 - quality[i] / 2) if as_error_rate else float(quality[i] / 2)  # the mirrored curve
            folder.write_task(i, {
                "run_id": run_id, "algo": algo, "model": "minilm", "seed": 0, "benchmark": "cross-dataset-v2",
                "episodes_fingerprint": "fp0", "protocol_fingerprint": "p0", "eval_mode": "shared",
                "task_index": i, "task_id": f"meta-test/{i:04d}/ag_news", "dataset": "ag_news",
                "task_type": "classification", "metric_name": metric_name, "metric": q, "metric_at_0": start,
                "exact_match": None, "ft_steps": 8, "ft_seconds": 1.0, "ft_cpu_seconds": 1.0, "ft_gpu_seconds": 0.0,
                "ft_gpu_hours": 0.0, "ft_peak_rss_mb": 900.0, "ft_peak_cuda_mb": 0.0, "ft_tokens": 1000,
                "ft_flops": 1e9, "curve_steps": [0, 8], "curve_metric": [start, q], "curve_seconds": [0.0, 1.0]})
        atomic_write_json(folder.path / "manifest.json", {"run_id": run_id, "config": {"algo": algo}})
        folder.write_run({"run_id": run_id, "algo": algo, "model": "minilm", "seed": 0,
                          "benchmark": "cross-dataset-v2", "episodes_fingerprint": "fp0", "n_tasks": n_tasks,
                          "mean_metric": float(quality.mean())})
    return root
