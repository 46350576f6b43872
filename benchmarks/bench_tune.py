"""Wall time of 4 short runs through `suite tune` (2 concurrent 1-CPU trials) against the same
4 runs one after another in one process (using every core), printed as a ratio measured in
one run (target: at most 0.65x), plus the fixed overhead of starting Ray.

Run: `python benchmarks/bench_tune.py` (a few minutes; MiniLM on the local mirror).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CONFIG = """
protocol = "in-dataset"
datasets = ["sst2", "ag_news"]
n_meta_train = 8
n_meta_test = 4
meta_epochs = 1
meta_batch_size = 2
inner_steps = 2
ft_steps = 12
max_length = 64
stride = 16
target = "best"
[shapes.classification]
ways = 2
shots = 4
queries = 8
"""
RUNS = [("baseline", 0), ("baseline", 1), ("reptile", 0), ("reptile", 1)]


def main() -> None:
    import ray

    from suite.config import resolve_config
    from suite.runner import Runner
    from suite.table import format_table

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg_path = tmp / "bench.toml"
        cfg_path.write_text(CONFIG)
        import torch

        def sequential(threads: int, out: str) -> float:
            torch.set_num_threads(threads)
            t = time.perf_counter()
            for algo, seed in RUNS:
                config = resolve_config("quick", str(cfg_path), {"algo": algo, "seeds": [seed]})
                Runner(config, tmp / out, progress=False).run_all()
            return time.perf_counter() - t

        cores = os.cpu_count() or 1
        seq_one = sequential(1, "sequential-1")  # the same resources per run as a 1-CPU trial
        seq_all = sequential(cores, "sequential-all")

        t = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - t
        ray.shutdown()

        cmd = [str(Path(sys.executable).parent / "suite"), "tune", "--name", "bench", "--algos", "baseline,reptile",
               "--seeds", "0", "1", "--config", str(cfg_path), "--cpus-per-trial", "1", "--max-concurrent", "2",
               "--num-cpus", "2", "--storage", str(tmp / "ray"), "--out", str(tmp / "tuned")]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        tuned = time.perf_counter() - t
    print(format_table(["way", "wall s", "ratio"], [
        ["4 runs in one process, one after another, 1 thread each", f"{seq_one:.1f}", "1.00x"],
        ["4 runs via suite tune, 2 concurrent 1-CPU trials", f"{tuned:.1f}", f"{tuned / seq_one:.2f}x"],
        [f"4 runs in one process, one after another, {cores} threads each", f"{seq_all:.1f}",
         f"{seq_all / seq_one:.2f}x"],
        ["starting a local Ray (ray.init), fixed overhead", f"{ray_start:.1f}", ""]], "lrr"))
    print(f"target: suite tune at most 0.65x of the 1-thread sequential runs; against {cores} threads per run: "
          f"{tuned / seq_all:.2f}x")


if __name__ == "__main__":
    main()
