"""Tasks per hour of the shared fine-tuning recipe, fp32 against bf16 (or any ``--paths``), on the same episodes.

Runs `suite run --algo baseline` through the real runner (quick preset: packaged MiniLM, 32 Adam
steps, 7 evaluations of 128 queries per task) on the same ``--tasks`` meta-test tasks once per
precision, alternating the order over ``--repeats`` so neither side always runs on a warmer
machine; the data is loaded and pooled once before either is timed. Prints tasks per hour (the
run's wall time: model load, episodes, fine-tuning and evaluation), the ratio, and the paired difference
of the final metric, so the speed-up is read beside what it costs in quality. A path is a precision,
optionally ``-unfused``: Adam's for-loop kernel instead of the fused one the suite uses.

    python benchmarks/bench_throughput.py --tasks 8 --repeats 1
    python benchmarks/bench_throughput.py --tasks 6 --repeats 2 --paths bf16-unfused,bf16
"""
from __future__ import annotations

import argparse
import contextlib
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


@contextlib.contextmanager
def adam_kernel(fused: bool):
    """The suite's Adam with the fused kernel (as shipped) or torch's for-loop one."""
    from metaft.algorithms import outer

    shipped = outer._fusable
    outer._fusable = shipped if fused else (lambda params: False)
    try:
        yield
    finally:
        outer._fusable = shipped


def one_run(path: str, tasks: int, datasets: str, out: str, device: str = "auto") -> tuple[float, "object"]:
    from metaft.suite.config import resolve_config
    from metaft.suite.runner import Runner

    precision, _, kernel = path.partition("-")
    config = resolve_config("quick", None, {"algo": "baseline", "precision": precision, "n_meta_train": 0,
                                            "n_meta_test": tasks, "datasets": datasets.split(","),
                                            "device": device})
    runner = Runner(config, out, progress=False)
    with adam_kernel(kernel != "unfused"):
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
    parser.add_argument("--paths", default="fp32,bf16", help="two paths, the reference first: a precision "
                        "(fp32, bf16), optionally with -unfused (Adam's for-loop kernel)")
    args = parser.parse_args()
    ref, new = args.paths.split(",")
    for path in (ref, new):
        if path.partition("-")[0] not in ("fp32", "bf16") or path.partition("-")[2] not in ("", "unfused"):
            parser.error(f"unknown path {path!r}; use fp32 or bf16, optionally with -unfused")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.tasks} tasks x {args.repeats} "
          f"repeat(s) per path, quick preset, baseline", flush=True)
    warm_up(args.tasks, args.datasets)
    seconds: dict[str, list[float]] = {ref: [], new: []}
    metrics = {}
    for r in range(args.repeats):
        for path in ((ref, new) if r % 2 == 0 else (new, ref)):
            with tempfile.TemporaryDirectory() as out:
                wall, tasks = one_run(path, args.tasks, args.datasets, out, args.device)
            seconds[path].append(wall)
            metrics[path] = tasks.sort_values("task_index")
            print(f"  {path}: {wall:.1f} s, mean final metric {tasks['metric'].mean():.4f}", flush=True)
    best = {p: min(v) for p, v in seconds.items()}
    per_hour = {p: args.tasks * 3600 / s for p, s in best.items()}
    diff = metrics[new]["metric"].to_numpy() - metrics[ref]["metric"].to_numpy()
    same = (metrics[new]["task_id"].to_numpy() == metrics[ref]["task_id"].to_numpy()).all()
    width = max(8, len(ref), len(new))
    print(f"\n{'path':{width}} {'tasks/hour':>11} {'vs ' + ref:>{max(8, len(ref) + 3)}} {'mean metric':>12}")
    for p in (ref, new):
        print(f"{p:{width}} {per_hour[p]:11.0f} {per_hour[p] / per_hour[ref]:{max(8, len(ref) + 3) - 1}.2f}x "
              f"{metrics[p]['metric'].mean():12.4f}")
    print(f"\nsame tasks: {bool(same)}; {new} - {ref} final metric per task: mean {diff.mean():+.4f}, "
          f"sd {diff.std(ddof=1) if len(diff) > 1 else 0:.4f}, max |diff| {np.abs(diff).max():.4f}")


if __name__ == "__main__":
    main()
