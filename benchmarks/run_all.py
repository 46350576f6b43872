"""Run every benchmark script, one after another (`make bench`). Each prints its own table."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_tasks.py", "bench_adam_kernels.py", "bench_algorithms.py", "bench_adapters.py", "bench_inner_loop.py", "bench_leaderboard.py", "bench_tune.py"]

if __name__ == "__main__":
    failed = 0
    for name in SCRIPTS:
        print(f"\n=== {name} ===", flush=True)
        failed += subprocess.run([sys.executable, str(HERE / name)]).returncode != 0
    sys.exit(1 if failed else 0)
