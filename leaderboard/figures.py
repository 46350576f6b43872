"""Leaderboard figures as plain plotly.js figure dicts (data + layout).

Built without plotly's Python validation layer: the site has many figures and the
figure objects' deep copies dominated build time. plotly.js ships once per site.
"""
from __future__ import annotations

import html
import json

import numpy as np
import pandas as pd

LAYOUT = {"height": 380, "margin": {"l": 60, "r": 20, "t": 50, "b": 50}, "paper_bgcolor": "#fff",
          "plot_bgcolor": "#fff", "xaxis": {"gridcolor": "#eceff3"}, "yaxis": {"gridcolor": "#eceff3"},
          "legend": {"font": {"size": 11}}}


def label(text: str) -> str:
    """Names come from submitted files: plotly renders a few HTML tags, so escape them."""
    return html.escape(str(text), quote=False)  # plotly shows &quot; literally


def curve_table(tasks: pd.DataFrame) -> pd.DataFrame:
    """Sum and count of the query metric and seconds per (model, dataset, algo, step), in one pass
    over all learning curves; every figure's mean curve is read from this."""
    lengths = tasks["curve_steps"].map(len).to_numpy()
    flat = pd.DataFrame({
        "model": np.repeat(tasks["model"].to_numpy(), lengths),
        "dataset": np.repeat(tasks["dataset"].to_numpy(), lengths),
        "algo": np.repeat(tasks["algo"].to_numpy(), lengths),
        "step": np.concatenate(tasks["curve_steps"].to_numpy()).astype(int),
        "metric": np.concatenate(tasks["curve_metric"].to_numpy()).astype(float),
        "seconds": np.concatenate(tasks["curve_seconds"].to_numpy()).astype(float),
    })
    return flat.groupby(["model", "dataset", "algo", "step"], sort=True).agg(
        metric_sum=("metric", "sum"), seconds_sum=("seconds", "sum"), n=("metric", "size")).reset_index()


def _mean_curves(curves: pd.DataFrame, model: str, dataset: str | None) -> pd.DataFrame:
    sub = curves[(curves["model"] == model) & ((curves["dataset"] == dataset) if dataset else True)]
    agg = sub.groupby(["algo", "step"], sort=True)[["metric_sum", "seconds_sum", "n"]].sum().reset_index()
    agg["metric"] = agg["metric_sum"] / agg["n"]
    agg["seconds"] = agg["seconds_sum"] / agg["n"]
    return agg


def learning_curves(curves: pd.DataFrame, model: str, dataset: str | None, x: str, title: str) -> dict:
    mean = _mean_curves(curves, model, dataset)
    data = [{"type": "scatter", "mode": "lines+markers", "name": label(algo),
             "x": (df["step"] if x == "steps" else df["seconds"]).tolist(), "y": df["metric"].round(6).tolist()}
            for algo, df in mean.groupby("algo", sort=True)]
    log_x = x == "steps" and len(mean) and mean["step"].max() > 16
    layout = dict(LAYOUT, title={"text": title},
                  xaxis=dict(LAYOUT["xaxis"], title={"text": "fine-tuning steps" if x == "steps" else
                                                     "fine-tuning seconds (mean)"}, type="log" if log_x else "linear"),
                  yaxis=dict(LAYOUT["yaxis"], title={"text": "query metric (mean over tasks)"}))
    return {"data": data, "layout": layout}


def pareto_front(points: pd.DataFrame) -> pd.DataFrame:
    """Points not dominated in (higher metric, lower cost)."""
    pts = points.sort_values(["cost", "metric"], ascending=[True, False])
    front, best = [], -np.inf
    for row in pts.itertuples():
        if row.metric > best:
            front.append(row.Index)
            best = row.metric
    return points.loc[front].sort_values("cost")


def quality_vs_cost(tasks: pd.DataFrame, cost: str, title: str) -> dict:
    pts = tasks.groupby("algo").agg(metric=("metric", "mean"), cost=(cost, "mean")).reset_index()
    front = pareto_front(pts)
    data = [{"type": "scatter", "mode": "markers+text", "name": "algorithms", "x": pts["cost"].tolist(),
             "y": pts["metric"].tolist(), "text": [label(a) for a in pts["algo"]], "textposition": "top center",
             "marker": {"size": 10}},
            {"type": "scatter", "mode": "lines+markers", "name": "Pareto front", "x": front["cost"].tolist(),
             "y": front["metric"].tolist(), "line": {"dash": "dash"}}]
    layout = dict(LAYOUT, title={"text": title}, xaxis=dict(LAYOUT["xaxis"], title={"text": f"{cost} per task (mean)"}),
                  yaxis=dict(LAYOUT["yaxis"], title={"text": "query metric (mean)"}))
    return {"data": data, "layout": layout}


def pvalue_matrix(pairs: pd.DataFrame, algos: list[str], measure: str, title: str) -> dict:
    sub = pairs[pairs["measure"] == measure]
    index = {a: i for i, a in enumerate(algos)}
    n = len(algos)
    z: list[list[float | None]] = [[None] * n for _ in range(n)]
    text = [[""] * n for _ in range(n)]
    for r in sub.itertuples():
        if r.a in index and r.b in index:
            i, j = index[r.a], index[r.b]
            p = None if r.p_holm is None or pd.isna(r.p_holm) else float(r.p_holm)
            z[i][j] = z[j][i] = p
            text[i][j] = text[j][i] = "n/a" if p is None else f"{p:.3g}"
    names = [label(a) for a in algos]
    data = [{"type": "heatmap", "z": z, "x": names, "y": names, "text": text, "texttemplate": "%{text}",
             "zmin": 0, "zmax": 1, "colorscale": "RdBu", "colorbar": {"title": {"text": "Holm p"}}}]
    layout = dict(LAYOUT, title={"text": title}, height=140 + 60 * n, margin={"l": 120, "r": 20, "t": 50, "b": 90})
    return {"data": data, "layout": layout}


def figure_json(fig: dict) -> str:
    """JSON safe to place inside a <script> element."""
    return json.dumps(fig, allow_nan=False, default=float).replace("<", "\\u003c").replace(">", "\\u003e") \
        .replace("&", "\\u0026")
