"""Leaderboard figures as plain plotly.js figure dicts (data + layout).

Built without plotly's Python validation layer: the site has many figures and the
figure objects' deep copies dominated build time. plotly.js ships once per site.
"""
from __future__ import annotations

import html
import json
from typing import Any

import numpy as np
import pandas as pd

LAYOUT: dict[str, Any] = {"height": 380, "margin": {"l": 60, "r": 20, "t": 50, "b": 50}, "paper_bgcolor": "#fff",
          "plot_bgcolor": "#fff", "xaxis": {"gridcolor": "#eceff3"}, "yaxis": {"gridcolor": "#eceff3"},
          "legend": {"font": {"size": 11}}}


def label(text: str) -> str:
    """Names come from submitted files: plotly renders a few HTML tags, so escape them."""
    return html.escape(str(text), quote=False)  # plotly shows &quot; literally


ALL = "__all__"  # the dataset key of curves pooled over datasets (the overview; descriptive only)


def schedules(curve_steps: pd.Series) -> list[tuple]:
    """Each row's evaluation schedule as a tuple; rows share a handful of schedules, so each
    distinct one is converted once (keyed by its bytes)."""
    seen: dict[bytes, tuple] = {}
    out = []
    for s in curve_steps:
        a = np.asarray(s, dtype=np.int64)
        key = a.tobytes()
        t = seen.get(key)
        if t is None:
            t = seen[key] = tuple(int(x) for x in a)
        out.append(t)
    return out


def with_schedules(tasks: pd.DataFrame) -> pd.DataFrame:
    """``tasks`` with a ``schedule`` column (tuples) unless it has one: converted once per build
    and shared by the curves and the steps-to-target analysis."""
    return tasks if "schedule" in tasks else tasks.assign(schedule=schedules(tasks["curve_steps"]))


def _regrid(values: np.ndarray, grid: np.ndarray, wider: np.ndarray) -> np.ndarray:
    """Curves already on ``grid`` (carried forward) onto the superset ``wider``: each task's own
    steps are in ``grid``, so the last ``grid`` step at or before a ``wider`` step carries the same
    value as the task's last own step."""
    idx = np.clip(np.searchsorted(grid, wider, side="right") - 1, 0, len(grid) - 1)
    return values[:, idx]


def _on_grid(steps: list[tuple], values: list, grid: np.ndarray) -> np.ndarray:
    """Each task's curve on the common ``grid``, carried forward at its last value after its
    budget ends (so every grid step averages the same tasks). Tasks that share an evaluation
    schedule (nearly all) are mapped together."""
    out = np.empty((len(values), len(grid)))
    groups: dict[tuple, list[int]] = {}
    for i, st in enumerate(steps):
        groups.setdefault(st, []).append(i)
    for st, rows in groups.items():
        idx = np.clip(np.searchsorted(np.asarray(st), grid, side="right") - 1, 0, len(st) - 1)
        block = np.array([values[i] for i in rows], dtype=float)
        out[rows] = block[:, idx]
    return out


def curve_table(tasks: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean learning curve with a 95% t band per (model, dataset, algo) on a common step grid
    (union of the evaluated steps; curves carried forward after a task's budget ends), plus the
    mean cumulative compute at each step: fine-tuning FLOPs so far (``ft_flops``, each algorithm's
    own FLOPs per step) and that plus the run's up-front FLOPs (meta-training and lr selection,
    ``upfront`` per run) amortized over its meta-test tasks (``compute``). The per-dataset rows
    are also the cost-quality frontier's points; ``sign`` is -1 for a smaller-is-better metric."""
    from scipy import stats as sps

    from .costs import compute_at, flops_model, upfront_flops

    upfront = upfront_flops(runs)
    n_tasks = {}
    if runs is not None and len(runs) and "n_tasks" in runs:
        n_tasks = {r: max(int(n or 1), 1) for r, n in zip(runs["run_id"], runs["n_tasks"].fillna(1))}
    tasks = with_schedules(tasks)
    per_dataset: dict[tuple, list] = {}  # (model, algo) -> [(dataset, grid, metric, seconds, upfront, share, per_step, ft_steps, sign)]
    for (model, dataset, algo), sub in tasks.groupby(["model", "dataset", "algo"], sort=True, observed=True):
        steps = list(sub["schedule"])
        grid = np.array(sorted(set().union(*steps)))
        metric = _on_grid(steps, list(sub["curve_metric"]), grid)
        seconds = _on_grid(steps, list(sub["curve_seconds"]), grid)
        per_step, fixed = flops_model(sub)
        runs_of = sub["run_id"].astype(str)
        total = runs_of.map(upfront).fillna(0.0).to_numpy(float) if upfront else np.zeros(len(sub))
        share = total / runs_of.map(n_tasks).fillna(1).to_numpy(float) if n_tasks else total
        ft_steps = sub["ft_steps"].to_numpy()[:, None]
        sign = -1.0 if "metric_sign" in sub and bool((sub["metric_sign"] < 0).all()) else 1.0
        per_dataset.setdefault((model, algo), []).append(
            (dataset, grid, metric, seconds, total, share, per_step, ft_steps, sign, fixed))
    rows = [(model, b[0], algo, *b[1:]) for (model, algo), blocks in per_dataset.items() for b in blocks]
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    for (model, algo), blocks in sorted(per_dataset.items()):
        # pooled over datasets (the overview): every dataset's curves on the union of their grids
        wide = np.array(sorted(set().union(*(b[1] for b in blocks))))
        rows.append((model, ALL, algo, wide, np.concatenate([_regrid(b[2], b[1], wide) for b in blocks]),
                     np.concatenate([_regrid(b[3], b[1], wide) for b in blocks]),
                     *(np.concatenate([b[k] for b in blocks]) for k in (4, 5, 6, 7)),
                     min(b[8] for b in blocks), np.concatenate([b[9] for b in blocks])))
    frames = []
    for model, dataset, algo, grid, metric, seconds, total, share, per_step, ft_steps, sign, fixed in rows:
        ft = compute_at(np.minimum(grid[None, :], ft_steps), per_step[:, None], fixed[:, None])
        n = len(metric)
        mean = metric.mean(0)
        half = (sps.t.ppf(0.975, n - 1) * metric.std(0, ddof=1) / np.sqrt(n)) if n > 1 else np.zeros(len(grid))
        frames.append(pd.DataFrame({"model": model, "dataset": dataset, "algo": algo, "step": grid,
                                    "metric": mean, "lo": mean - half, "hi": mean + half,
                                    "seconds": seconds.mean(0), "compute": (share[:, None] + ft).mean(0),
                                    "ft_flops": ft.mean(0), "upfront": float(total.mean()), "sign": sign, "n": n}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CURVE_COLUMNS)


CURVE_COLUMNS = ["model", "dataset", "algo", "step", "metric", "lo", "hi", "seconds", "compute", "ft_flops", "upfront",
                 "sign", "n"]


X_TITLES = {"steps": "fine-tuning steps", "seconds": "fine-tuning seconds (mean)",
            "compute": "FLOPs per task (fine-tuning + amortized meta-training)"}


def learning_curves(curves: pd.DataFrame, model: str, dataset: str | None, x: str, title: str) -> dict:
    sub = curves[(curves["model"] == model) & (curves["dataset"] == (dataset or ALL))]
    column = {"steps": "step", "seconds": "seconds", "compute": "compute"}[x]
    data = []
    for i, (algo, df) in enumerate(sub.groupby("algo", sort=True)):
        xs = df[column].tolist()
        color = PALETTE[i % len(PALETTE)]
        data += [{"type": "scatter", "mode": "lines", "x": xs, "y": df["hi"].round(6).tolist(), "line": {"width": 0},
                  "showlegend": False, "hoverinfo": "skip", "legendgroup": label(algo)},
                 {"type": "scatter", "mode": "lines", "x": xs, "y": df["lo"].round(6).tolist(), "line": {"width": 0},
                  "fill": "tonexty", "fillcolor": color.replace("rgb", "rgba").replace(")", ",0.15)"),
                  "showlegend": False, "hoverinfo": "skip", "legendgroup": label(algo)},
                 {"type": "scatter", "mode": "lines+markers", "name": label(algo), "x": xs,
                  "y": df["metric"].round(6).tolist(), "line": {"color": color}, "legendgroup": label(algo)}]
    layout = dict(LAYOUT, title={"text": title},
                  xaxis=dict(LAYOUT["xaxis"], title={"text": X_TITLES[x]}),
                  yaxis=dict(LAYOUT["yaxis"], title={"text": "query metric (mean over tasks, 95% band)"}))
    if x == "steps" and len(sub) and sub["step"].max() > 4:  # log-spaced schedules: log2(1 + step), 0 kept
        steps = sorted(set(sub["step"].astype(int)))
        for trace in data:
            trace["x"] = [step_axis(v) for v in trace["x"]]
        layout["xaxis"].update(tickvals=[step_axis(v) for v in steps], ticktext=[str(v) for v in steps])
    elif x == "compute" and len(sub) and (sub["compute"] > 0).all():
        layout["xaxis"]["type"] = "log"
    return {"data": data, "layout": layout}


def step_axis(step: float) -> float:
    """Where a step sits on a log-spaced step axis that still shows step 0: log2(1 + step)."""
    return float(np.log2(1.0 + step))


PALETTE = ["rgb(31,119,180)", "rgb(255,127,14)", "rgb(44,160,44)", "rgb(214,39,40)", "rgb(148,103,189)",
           "rgb(140,86,75)", "rgb(227,119,194)", "rgb(127,127,127)", "rgb(188,189,34)", "rgb(23,190,207)"]


# ---------------------------------------------------------------------------- cost-quality frontier
# points: the per-dataset rows of `curve_table` (one per algorithm and evaluated budget)
FRONTIER_N = (None, 10, 100, 1000)  # up-front cost amortized over N tasks (None: fine-tuning only)


def pareto_mask(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Points no other point dominates (no more compute and at least as good, one strictly)."""
    order = np.lexsort((-quality, cost))
    keep = np.zeros(len(cost), dtype=bool)
    best = -np.inf
    for i in order:
        if quality[i] > best + 1e-12:
            keep[i], best = True, quality[i]
    return keep


def _compute_axis(values: np.ndarray, unit: float) -> np.ndarray:
    return np.log2(1.0 + values / unit)


def frontier(points: pd.DataFrame, model: str, dataset: str, title: str) -> dict:
    """Quality against compute per task, one point per (algorithm, budget), the Pareto set marked;
    buttons amortize the up-front cost over N tasks. The x axis is log2(1 + FLOPs / one step of
    the cheapest method), so zero compute (no fine-tuning) stays on the plot; ticks read in FLOPs."""
    sub = points[(points["model"] == model) & (points["dataset"] == dataset)]
    if sub.empty:
        return {"data": [], "layout": dict(LAYOUT, title={"text": title})}
    sign = float(sub["sign"].iloc[0])
    steps_pos = sub[sub["step"] > 0]
    unit = float((steps_pos["ft_flops"] / steps_pos["step"]).min()) if len(steps_pos) else 1.0
    unit = unit if unit > 0 else 1.0
    algos = sorted(sub["algo"].unique())
    views = []
    for big_n in FRONTIER_N:
        cost = sub["ft_flops"].to_numpy(float) + (0.0 if big_n is None else sub["upfront"].to_numpy(float) / big_n)
        views.append(cost)
    data = []
    for i, algo in enumerate(algos):
        rows = (sub["algo"] == algo).to_numpy()
        df = sub[rows]
        data.append({"type": "scatter", "mode": "lines+markers", "name": label(algo),
                     "x": _compute_axis(views[0][rows], unit).round(6).tolist(), "y": df["metric"].round(6).tolist(),
                     "error_y": {"type": "data", "array": (df["hi"] - df["metric"]).round(6).tolist(),
                                 "arrayminus": (df["metric"] - df["lo"]).round(6).tolist(), "thickness": 1},
                     "text": [f"{label(algo)}: {b} steps" for b in df["step"]], "line": {"color": PALETTE[i % len(PALETTE)]},
                     "hovertemplate": "%{text}<br>metric %{y:.3f}<extra></extra>"})
    fronts = []
    for cost in views:
        keep = pareto_mask(cost, sign * sub["metric"].to_numpy(float))
        order = np.argsort(cost[keep])
        fronts.append((_compute_axis(cost[keep][order], unit).round(6).tolist(),
                       sub["metric"].to_numpy(float)[keep][order].round(6).tolist(),
                       [f"{label(a)}: {b} steps" for a, b in zip(sub["algo"].to_numpy()[keep][order],
                                                                 sub["step"].to_numpy()[keep][order])]))
    data.append({"type": "scatter", "mode": "lines+markers", "name": "Pareto set", "x": fronts[0][0],
                 "y": fronts[0][1], "text": fronts[0][2], "line": {"dash": "dash", "color": "#1d2330", "width": 1},
                 "marker": {"symbol": "circle-open", "size": 14, "color": "#1d2330"},
                 "hovertemplate": "Pareto: %{text}<extra></extra>"})
    top = float(max(_compute_axis(c, unit).max() for c in views))
    ticks = [0.0] + [float(v) for v in 10.0 ** np.arange(np.floor(np.log10(unit)), np.ceil(np.log10(unit * 2 ** top)) + 1)]
    tickvals = [float(_compute_axis(np.array([t]), unit)[0]) for t in ticks]
    keep_ticks = [(v, "0" if t == 0 else f"{t:.0e}") for v, t in zip(tickvals, ticks) if v <= top * 1.05 + 0.5]
    buttons = []
    for big_n, cost, (fx, fy, ft) in zip(FRONTIER_N, views, fronts):
        xs = [_compute_axis(cost[(sub["algo"] == a).to_numpy()], unit).round(6).tolist() for a in algos] + [fx]
        ys = [sub[sub["algo"] == a]["metric"].round(6).tolist() for a in algos] + [fy]
        texts = [[f"{label(a)}: {b} steps" for b in sub[sub["algo"] == a]["step"]] for a in algos] + [ft]
        buttons.append({"label": "fine-tuning only" if big_n is None else f"up-front over {big_n} tasks",
                        "method": "restyle", "args": [{"x": xs, "y": ys, "text": texts}]})
    layout = dict(LAYOUT, title={"text": title, "y": 0.97}, height=440, margin=dict(LAYOUT["margin"], t=95),
                  xaxis=dict(LAYOUT["xaxis"], title={"text": "FLOPs per task (log scale; 0 = no fine-tuning)"},
                             tickvals=[v for v, _ in keep_ticks], ticktext=[t for _, t in keep_ticks]),
                  yaxis=dict(LAYOUT["yaxis"], title={"text": "query metric (mean, 95% CI)"}),
                  updatemenus=[{"type": "buttons", "direction": "right", "x": 0, "y": 1.02, "xanchor": "left",
                                "yanchor": "bottom", "pad": {"b": 4}, "font": {"size": 11},
                                "buttons": buttons, "showactive": True}])
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
