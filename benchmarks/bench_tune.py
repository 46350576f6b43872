"""Wall time of 4 short runs through `suite tune` (2 concurrent 1-CPU trials) against the same
4 runs one after another in one process with one thread each (the resources of one trial), printed
as a ratio (target: at most 0.65x), plus the fixed overhead of starting and stopping Ray.

The two ways alternate for ``--rounds`` rounds (default 2) and the best time of each is compared,
because a shared machine's noise lasts minutes; every round's paired ratio is printed too. Later
sequential rounds reuse the in-process data caches, which only makes the comparison stricter.

Run: `python benchmarks/bench_tune.py [--rounds N]` (about 4 minutes a round on 2 cores; MiniLM on
the local mirror). Touch nothing else on the machine while it runs.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from metaft.suite.cli import QUIET_ENVIRONMENT  # noqa: E402  (before transformers/datasets are imported)

for _name, _value in QUIET_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)

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
    import argparse

    import ray
    import torch

    from metaft.suite.config import resolve_config
    from metaft.suite.runner import Runner
    from metaft.suite.table import format_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of both ways (best time counts)")
    rounds = parser.parse_args().rounds
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg_path = tmp / "bench.toml"
        cfg_path.write_text(CONFIG)

        def sequential(threads: int, out: str) -> float:
            torch.set_num_threads(threads)
            t = time.perf_counter()
            for algo, seed in RUNS:
                config = resolve_config("quick", str(cfg_path), {"algo": algo, "seeds": [seed]})
                Runner(config, tmp / out, progress=False).run_all()
            return time.perf_counter() - t

        def tuned(name: str) -> float:
            cmd = [str(Path(sys.executable).parent / "suite"), "tune", "--name", name, "--algos", "baseline,reptile",
                   "--seeds", "0", "1", "--config", str(cfg_path), "--cpus-per-trial", "1", "--max-concurrent",
                   "2", "--num-cpus", "2", "--storage", str(tmp / "ray"), "--out", str(tmp / name)]
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, text=True)
            return time.perf_counter() - t

        seq_one, tune_times = [], []
        for r in range(rounds):
            seq_one.append(sequential(1, f"sequential-{r}"))  # the same resources per run as a 1-CPU trial
            tune_times.append(tuned(f"tuned-{r}"))
            print(f"round {r + 1}/{rounds}: sequential {seq_one[-1]:.1f} s, suite tune {tune_times[-1]:.1f} s, "
                  f"{tune_times[-1] / seq_one[-1]:.2f}x", flush=True)
        seq_all = sequential(cores, "sequential-all")

        t = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray_start = time.perf_counter() - t
        t = time.perf_counter()
        ray.shutdown()
        ray_stop = time.perf_counter() - t
    best_seq, best_tune = min(seq_one), min(tune_times)
    print(format_table(["way (best of %d rounds)" % rounds, "wall s", "ratio"], [
        ["4 runs in one process, one after another, 1 thread each", f"{best_seq:.1f}", "1.00x"],
        ["4 runs via suite tune, 2 concurrent 1-CPU trials", f"{best_tune:.1f}", f"{best_tune / best_seq:.2f}x"],
        [f"4 runs in one process, one after another, {cores} threads each (1 round)", f"{seq_all:.1f}",
         f"{seq_all / best_seq:.2f}x"],
        ["fixed overhead: starting a local Ray (ray.init)", f"{ray_start:.1f}", ""],
        ["fixed overhead: stopping it (ray.shutdown)", f"{ray_stop:.1f}", ""]], "lrr"))
    print(f"target: suite tune at most 0.65x of the 1-thread sequential runs: {best_tune / best_seq:.2f}x "
          f"({'met' if best_tune / best_seq <= 0.65 else 'NOT met'}); against {cores} threads per run: "
          f"{best_tune / seq_all:.2f}x")


if __name__ == "__main__":
    main()
