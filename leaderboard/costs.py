"""Cost read from the stored learning curves, at analysis time, and amortized meta-training.

For a candidate and a reference on the same (config-matched) task, the target is the
reference's final metric on that task. A curve reaches the target at the first evaluated
step whose metric is at least the target; the reference reaches its own target by
definition (at the latest at its last step). A candidate that never reaches it is censored:
its steps are set to one evaluation interval past the budget (``2 x budget`` on the log
grid), never dropped, so a method cannot look cheap by failing on the hard tasks.

Steps saved per task = reference steps-to-target - candidate steps-to-target; FLOPs saved =
steps saved x the candidate's FLOPs per fine-tuning step. The up-front cost of a method is
its meta-training FLOPs plus its lr selection's; the break-even number of downstream
tasks is (candidate's up-front - reference's up-front) / mean FLOPs saved per task: how
many fine-tunings the meta-learned start must serve before it has paid for itself
(infinite when it saves nothing per task; 0 when it costs nothing extra up front).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import stats


def steps_to(curve_steps, curve_metric, target: float) -> float:
    """First evaluated step reaching ``target``; censored at 2 x budget when never."""
    steps, metric = np.asarray(curve_steps, float), np.asarray(curve_metric, float)
    hit = np.flatnonzero(metric >= target - 1e-12)
    return float(steps[hit[0]]) if len(hit) else 2.0 * float(steps[-1])


def paired_steps(tasks: pd.DataFrame, candidate: str, reference: str) -> pd.DataFrame:
    """Per paired task: the reference's final metric (the target), both steps-to-target, and
    whether the candidate reached it."""
    keys = stats.PAIR_KEYS
    cols = keys + ["curve_steps", "curve_metric", "metric", "ft_flops", "ft_steps", "run_id"]
    a = tasks[tasks["algo"] == candidate][cols]
    b = tasks[tasks["algo"] == reference][cols]
    joined = a.merge(b, on=keys, suffixes=("_c", "_r"))
    rows = []
    for r in joined.itertuples():
        target = float(r.metric_r)
        ref = steps_to(r.curve_steps_r, r.curve_metric_r, target)
        cand = steps_to(r.curve_steps_c, r.curve_metric_c, target)
        rows.append({"task_index": r.task_index, "target": target, "steps_reference": ref, "steps_candidate": cand,
                     "reached": cand <= float(r.curve_steps_c[-1]),
                     "flops_per_step": float(r.ft_flops_c) / max(int(r.ft_steps_c), 1), "run_id": r.run_id_c,
                     "run_id_reference": r.run_id_r})
    return pd.DataFrame(rows, columns=["task_index", "target", "steps_reference", "steps_candidate", "reached",
                                       "flops_per_step", "run_id", "run_id_reference"])


def amortization(tasks: pd.DataFrame, runs: pd.DataFrame, references: list[str] | None = None) -> pd.DataFrame:
    """Per model, dataset, candidate and reference: reach rate, mean steps-to-target of both,
    FLOPs saved per task, and the break-even number of tasks."""
    tasks = stats.prepare(tasks)
    meta = runs.set_index("run_id")
    out = []
    for (model, dataset), sub in tasks.groupby(["model", "dataset"], sort=True):
        for ref in (references if references is not None else stats.references_in(sub)):
            for cand in sorted(a for a in sub["algo"].unique() if a != ref):
                p = paired_steps(sub, cand, ref)
                if p.empty:
                    continue
                saved_steps = float((p["steps_reference"] - p["steps_candidate"]).mean())
                saved_flops = float(((p["steps_reference"] - p["steps_candidate"]) * p["flops_per_step"]).mean())
                extra = _upfront(meta, p["run_id"].unique()) - _upfront(meta, p["run_id_reference"].unique())
                out.append({"model": model, "dataset": dataset, "candidate": cand, "reference": ref, "n": len(p),
                            "reach_rate": float(p["reached"].mean()),
                            "steps_candidate": float(p["steps_candidate"].mean()),
                            "steps_reference": float(p["steps_reference"].mean()),
                            "saved_steps_per_task": saved_steps, "saved_flops_per_task": saved_flops,
                            "extra_upfront_flops": extra, "break_even_tasks": break_even(extra, saved_flops)})
    return pd.DataFrame(out)


def break_even(extra_upfront: float, saved_per_task: float) -> float:
    if saved_per_task > 0:
        return max(extra_upfront, 0.0) / saved_per_task
    return 0.0 if (extra_upfront <= 0 and saved_per_task == 0) else math.inf


def _upfront(meta: pd.DataFrame, run_ids) -> float:
    return float(np.mean([_meta_flops(meta, r) for r in run_ids])) if len(run_ids) else 0.0


def _meta_flops(meta: pd.DataFrame, run_id: str) -> float:
    if run_id not in meta.index:
        return 0.0
    row = meta.loc[run_id]
    total = 0.0
    for col in ("meta_flops", "selection_flops"):
        value = row.get(col) if hasattr(row, "get") else None
        if value is not None and not pd.isna(value):
            total += float(value)
    return total


def format_amortization(table: pd.DataFrame) -> str:
    from suite.table import format_table

    def big(x):
        return "never" if not math.isfinite(x) else f"{x:.3g}"

    rows = [[r.dataset, r.candidate, r.reference, r.n, f"{r.reach_rate:.0%}", f"{r.steps_candidate:.1f}",
             f"{r.steps_reference:.1f}", f"{r.saved_flops_per_task:.3g}", f"{r.extra_upfront_flops:.3g}",
             big(r.break_even_tasks)] for r in table.itertuples()]
    return format_table(["dataset", "candidate", "vs", "pairs", "reached", "steps (cand.)", "steps (ref.)",
                         "FLOPs saved/task", "extra up-front FLOPs", "break-even tasks"], rows, "lllrrrrrrr")
