"""Calibrate the fine-tuning budget and lr: the baseline's mean learning curve per dataset and lr.

    python benchmarks/calibrate_budget.py --lrs 1e-5,3e-5,1e-4 --tasks 8      # runs `suite run`
    python benchmarks/calibrate_budget.py --from results-a results-b          # only summarise

Each lr is one `suite run --algo baseline --preset quick --finetune-lr LR` on the same episodes
(classification datasets only by default; --datasets to change); the table is the mean query
metric at every evaluated step, so one reads where the curve rises and where it flattens.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def mean_curves(dirs: list[str]) -> list[list[str]]:
    from metaft.suite.results import load_results

    rows = []
    for d in dirs:
        _, tasks = load_results(d, include_incomplete=True)
        for (dataset, lr), sub in tasks.groupby(["dataset", "finetune_lr"], sort=True):
            steps = list(sub["curve_steps"].iloc[0])
            curves = np.array([list(c) for c in sub["curve_metric"]])
            gain = curves[:, -1] - curves[:, 0]
            rows.append([dataset, f"{lr:g}", str(len(sub)), " ".join(f"{s}:{m:.3f}" for s, m in zip(steps, curves.mean(0))),
                         f"{np.median(gain):+.3f}", f"{(gain > 0).sum()}/{(gain < 0).sum()}",
                         f"{sub['ft_seconds'].mean():.1f}"])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lrs", default="1e-5,3e-5,1e-4")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--datasets", default="imdb,sst2,ag_news,yelp_review_full")
    parser.add_argument("--from", dest="existing", nargs="*", default=None, help="summarise these results folders")
    args = parser.parse_args()
    dirs = args.existing
    if not dirs:
        root = Path(tempfile.mkdtemp(prefix="calibrate-"))
        dirs = []
        for lr in args.lrs.split(","):
            out = root / f"lr{lr}"
            subprocess.run([str(Path(sys.executable).parent / "suite"), "run", "--algo", "baseline", "--preset", "quick",
                            "--datasets", args.datasets, "--meta-train-tasks", "0", "--meta-test-tasks",
                            str(args.tasks), "--finetune-lr", lr, "--out", str(out), "--no-progress"], check=True,
                           stdout=subprocess.DEVNULL)
            dirs.append(str(out))
    from metaft.suite.table import format_table

    print(format_table(["dataset", "lr", "tasks", "mean query metric at step", "median gain", "up/down",
                        "ft s/task"], mean_curves(dirs), "llrlrrr"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
