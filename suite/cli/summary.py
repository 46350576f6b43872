"""The summary table `suite run` prints: per dataset and overall."""
from __future__ import annotations

import pandas as pd

from ..table import format_table


def summarize(tasks: pd.DataFrame) -> pd.DataFrame:
    def agg(df: pd.DataFrame) -> dict:
        reached = df["steps_to_target"].dropna()
        return {"tasks": len(df), "metric": df["metric"].mean(), "metric_sd": df["metric"].std(ddof=1) if len(df) > 1 else 0.0,
                "metric_at_0": df["metric_at_0"].mean(), "ft_seconds": df["ft_seconds"].mean(),
                "gpu_hours": df["ft_gpu_hours"].sum(),
                "steps_to_target": reached.median() if len(reached) else float("nan"),
                "reached": f"{len(reached)}/{len(df)}"}

    rows = []
    for (dataset, metric_name), df in tasks.groupby(["dataset", "metric_name"], sort=True):
        rows.append({"dataset": dataset, "metric_name": metric_name, **agg(df)})
    overall = agg(tasks)
    if tasks["metric_name"].nunique() > 1 or tasks["dataset"].nunique() > 1:
        # a mean of unlike metrics (accuracy, entity F1, SQuAD F1) or datasets means nothing
        overall.update(metric=float("nan"), metric_sd=float("nan"), metric_at_0=float("nan"))
    rows.append({"dataset": "overall", "metric_name": "-", **overall})
    return pd.DataFrame(rows)


def format_summary(tasks: pd.DataFrame, run_row: dict) -> str:
    table = summarize(tasks)
    rows = [[r.dataset, r.metric_name, r.tasks, "-" if pd.isna(r.metric_at_0) else f"{r.metric_at_0:.3f}",
             "-" if pd.isna(r.metric) else f"{r.metric:.3f} ± {r.metric_sd:.3f}",
             f"{r.ft_seconds:.2f}", f"{r.gpu_hours:.5f}",
             "-" if pd.isna(r.steps_to_target) else f"{r.steps_to_target:g}", r.reached]
            for r in table.itertuples()]
    head = (f"{run_row['run_id']}\n  meta-training: {run_row['meta_steps']} steps, {run_row['meta_wall_seconds']:.1f} s, "
            f"{run_row['meta_gpu_hours']:.5f} GPU-h, peak RSS {run_row['meta_peak_rss_mb']:.0f} MiB, "
            f"{run_row['meta_tokens']} tokens, {run_row['meta_flops']:.3g} FLOPs")
    body = format_table(["dataset", "metric", "tasks", "at step 0", "final (mean ± sd)", "ft s/task", "GPU-h",
                         "oracle stop (median)", "reached"], rows, "llrrrrrrr")
    return head + "\n\n" + body
