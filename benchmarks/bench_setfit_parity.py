"""SetFit parity: the ``setfit`` package and the suite's ``setfit`` recipe on the same episodes.

The suite runs SetFit inside its own metered loop (suite/recipes.py) so that the curve, the
meter and the pairing come from one place for every recipe. This script shows that loop is
SetFit: for each meta-test task of the ``study`` protocol (AG News, 4-way 8-shot, 32 queries
per class, packaged MiniLM, max length 64) it runs

- the suite: ``suite run --algo baseline --recipe setfit`` (through ``Runner``, as the CLI does);
- the package: ``setfit.SetFitModel.from_pretrained(<the same checkpoint>)`` trained by
  ``setfit.Trainer`` with the same settings (pair iterations, one epoch, batch 16, body lr,
  max length, logistic head with scikit-learn's defaults) on the same support texts, scored on
  the same query texts,

and prints both accuracies, their paired difference and its 95% t interval. What differs by
construction: the order of the pairs within the epoch and the dropout masks (each side draws
its own from its seed), so per-task differences are noise around zero, not zero.

    python benchmarks/bench_setfit_parity.py --tasks 8            # the README's numbers (~25 min)
    python benchmarks/bench_setfit_parity.py --tasks 2 --iterations 4
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TaskParity:
    index: int
    suite: float  # the suite recipe's query accuracy at its last step
    package: float  # the setfit package's query accuracy
    probe: float  # step 0 of the suite's curve: the linear probe of the pretrained start
    suite_seconds: float
    package_seconds: float

    @property
    def diff(self) -> float:
        return self.suite - self.package


def suite_config(n_tasks: int, iterations: int, lr: float, seed: int, curve_points: str = "log2"):
    from metaft.suite.config import preset

    cfg = preset("study")
    cfg.algo, cfg.recipe, cfg.precision, cfg.device = "baseline", "setfit", "fp32", "cpu"
    cfg.curve_points = curve_points
    cfg.n_meta_test, cfg.n_meta_val, cfg.n_meta_train = n_tasks, 0, 2
    cfg.setfit_iterations, cfg.setfit_lr_grid, cfg.seeds = iterations, [lr], [seed]
    return cfg.validate()


def package_accuracy(model_path: str, support: list[dict], query: list[dict], *, iterations: int, lr: float,
                     batch_size: int, max_length: int, seed: int) -> float:
    """SetFit 1.2 as its README runs it, with the suite's settings; the query accuracy."""
    import datasets
    import transformers
    from setfit import SetFitModel, Trainer, TrainingArguments

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    quiet = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"  # the Trainer's own bar, for this call only (not the numbers)
    try:
        model = SetFitModel.from_pretrained(model_path)  # head: LogisticRegression(), as the suite's
        model.model_body.max_seq_length = max_length
        with tempfile.TemporaryDirectory() as out:
            args = TrainingArguments(output_dir=out, num_iterations=iterations, num_epochs=1, batch_size=batch_size,
                                     body_learning_rate=lr, max_length=max_length, seed=seed,
                                     show_progress_bar=False, report_to="none", logging_strategy="no",
                                     save_strategy="no")
            train = datasets.Dataset.from_dict({"text": [ex["text"] for ex in support],
                                                "label": [ex["label"] for ex in support]})
            Trainer(model=model, args=args, train_dataset=train).train()
        predictions = model.predict([ex["text"] for ex in query], as_numpy=True)
    finally:
        if quiet is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = quiet
    return float(sum(int(p) == ex["label"] for p, ex in zip(predictions, query)) / len(query))


def parity(n_tasks: int = 8, iterations: int = 20, lr: float = 2e-5, seed: int = 0,
           data_dir: str | None = None, progress: bool = False, curve_points: str = "log2") -> list[TaskParity]:
    """Both implementations on the first ``n_tasks`` meta-test tasks of the study protocol
    (``curve_points="ends"``: the suite scores only steps 0 and the last, as the test does)."""
    from metaft.suite.models import resolve_model_path
    from metaft.suite.results import load_results
    from metaft.suite.runner import Runner, task_seed
    from metaft.tasks.benchmark import iter_episodes

    cfg = suite_config(n_tasks, iterations, lr, seed, curve_points)
    with tempfile.TemporaryDirectory() as out:
        runner = Runner(cfg, out=out, data_dir=data_dir, progress=progress)
        runner.run_all()
        _, tasks = load_results(out)
    tasks = tasks.sort_values("task_index")
    episodes = list(iter_episodes(runner.benchmark(), seed, "meta-test", data_dir))
    path = resolve_model_path(cfg.models[0])
    rows = []
    for ep, (_, row) in zip(episodes, tasks.iterrows()):
        assert ep.index == row["task_index"], "the suite's rows and the episodes are the same tasks"
        wall = time.perf_counter()
        acc = package_accuracy(path, ep.support, ep.query, iterations=iterations, lr=lr,
                               batch_size=cfg.batch_size, max_length=cfg.max_length, seed=task_seed(seed, ep.index))
        rows.append(TaskParity(ep.index, float(row["metric"]), acc, float(row["curve_metric"][0]),
                               float(row["ft_seconds"]), time.perf_counter() - wall))
        if progress:
            print(f"task {ep.index}: suite {rows[-1].suite:.3f}  setfit {acc:.3f}", file=sys.stderr)
    return rows


def summary(rows: list[TaskParity]) -> dict:
    """Mean paired difference (suite - package), its SD and 95% t interval (scipy's)."""
    import numpy as np
    from scipy import stats

    diffs = np.array([r.diff for r in rows])
    ci = stats.ttest_1samp(diffs, 0.0).confidence_interval(0.95) if len(diffs) > 1 else (np.nan, np.nan)
    return {"n": len(diffs), "mean_diff": float(diffs.mean()), "sd": float(diffs.std(ddof=1)) if len(diffs) > 1
            else float("nan"), "ci": (float(ci[0]), float(ci[1])), "suite": float(np.mean([r.suite for r in rows])),
            "package": float(np.mean([r.package for r in rows])), "probe": float(np.mean([r.probe for r in rows])),
            "max_abs_diff": float(np.abs(diffs).max())}


def main() -> None:
    from metaft.suite.table import format_table

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=8)
    p.add_argument("--iterations", type=int, default=20, help="SetFit's pair iterations (its default: 20)")
    p.add_argument("--lr", type=float, default=2e-5, help="the body learning rate (SetFit's default: 2e-5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=os.environ.get("SUITE_DATA_DIR"))
    args = p.parse_args()
    rows = parity(args.tasks, args.iterations, args.lr, args.seed, args.data_dir, progress=True)
    print(format_table(["task", "probe (step 0)", "suite setfit", "setfit package", "suite - package",
                        "suite s", "package s"],
                       [[r.index, f"{r.probe:.3f}", f"{r.suite:.3f}", f"{r.package:.3f}", f"{r.diff:+.3f}",
                         f"{r.suite_seconds:.1f}", f"{r.package_seconds:.1f}"] for r in rows], "rrrrrrr"))
    s = summary(rows)
    print(f"\n{s['n']} tasks, {args.iterations} pair iterations, body lr {args.lr:g}: suite {s['suite']:.3f}, "
          f"package {s['package']:.3f} (linear probe {s['probe']:.3f}); paired difference {s['mean_diff']:+.4f} "
          f"(SD {s['sd']:.4f}, 95% CI {s['ci'][0]:+.4f} to {s['ci'][1]:+.4f}), largest |difference| "
          f"{s['max_abs_diff']:.3f}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
