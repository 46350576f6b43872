"""Tasks per hour of the shared fine-tuning recipe, fp32 against bf16, on the same episodes.

Runs `suite run --algo baseline` through the real runner (quick preset: packaged MiniLM, 32 Adam
steps, 7 evaluations of 128 queries per task) on the same ``--tasks`` meta-test tasks once per
precision, alternating the order over ``--repeats`` so neither side always runs on a warmer
machine; the data is loaded and pooled once before either is timed. Prints tasks per hour (the
run's wall time: model load, episodes, fine-tuning and evaluation), the ratio, and the paired difference
of the final metric, so the speed-up is read beside what it costs in quality.

    python benchmarks/bench_throughput.py --tasks 8 --repeats 1
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def warm_up(tasks: int, datasets: str) -> None:
    """Load and pool the data once (cached per process), so neither timed run pays for it."""
    from metaft.suite.config import resolve_config
    from metaft.suite.runner import Runner
    from metaft.tasks import iter_episodes
    from metaft.tasks.benchmark import SIDES

    config = resolve_config("quick", None, {"algo": "baseline", "n_meta_train": 0, "n_meta_test": tasks,
                                            "datasets": datasets.split(",")})
    bench = Runner(config, tempfile.mkdtemp(), progress=False).benchmark()
    for side in SIDES:
        list(iter_episodes(bench, config.seeds[0], side))


def one_run(precision: str, tasks: int, datasets: str, out: str, device: str = "auto") -> tuple[float, "object"]:
    from metaft.suite.config import resolve_config
    from metaft.suite.runner import Runner

    config = resolve_config("quick", None, {"algo": "baseline", "precision": precision, "n_meta_train": 0,
                                            "n_meta_test": tasks, "datasets": datasets.split(","),
                                            "device": device})
    runner = Runner(config, out, progress=False)
    start = time.perf_counter()
    result = runner.run_one(config.models[0], config.seeds[0])
    return time.perf_counter() - start, result.tasks


def main() -> None:
    import numpy as np
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--datasets", default="imdb,sst2,ag_news,yelp_review_full")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.tasks} tasks x {args.repeats} "
          f"repeat(s) per precision, quick preset, baseline", flush=True)
    warm_up(args.tasks, args.datasets)
    seconds = {"fp32": [], "bf16": []}
    metrics = {}
    for r in range(args.repeats):
        for precision in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
            with tempfile.TemporaryDirectory() as out:
                wall, tasks = one_run(precision, args.tasks, args.datasets, out, args.device)
            seconds[precision].append(wall)
            metrics[precision] = tasks.sort_values("task_index")
            print(f"  {precision}: {wall:.1f} s, mean final metric {tasks['metric'].mean():.4f}", flush=True)
    best = {p: min(v) for p, v in seconds.items()}
    per_hour = {p: args.tasks * 3600 / s for p, s in best.items()}
    diff = metrics["bf16"]["metric"].to_numpy() - metrics["fp32"]["metric"].to_numpy()
    same = (metrics["bf16"]["task_id"].to_numpy() == metrics["fp32"]["task_id"].to_numpy()).all()
    print(f"\n{'path':8} {'tasks/hour':>11} {'vs fp32':>8} {'mean metric':>12}")
    for p in ("fp32", "bf16"):
        print(f"{p:8} {per_hour[p]:11.0f} {per_hour[p] / per_hour['fp32']:7.2f}x {metrics[p]['metric'].mean():12.4f}")
    print(f"\nsame tasks: {bool(same)}; bf16 - fp32 final metric per task: mean {diff.mean():+.4f}, "
          f"sd {diff.std(ddof=1) if len(diff) > 1 else 0:.4f}, max |diff| {np.abs(diff).max():.4f}")


if __name__ == "__main__":
    main()
