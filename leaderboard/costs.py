"""Cost read from the stored learning curves, at analysis time, and amortized meta-training.

For a candidate and a reference on the same (config-matched) task, the target is the
reference's final metric on that task. A curve reaches the target at the first evaluated
step whose metric is at least the target; the reference reaches its own target by
definition (at the latest at its last step). A candidate that never reaches it is censored:
its steps are set to one evaluation interval past the budget (``2 x budget`` on the log
grid), never dropped, so a method cannot look cheap by failing on the hard tasks. The paired
steps (misses at 2 x budget) are compared with the Wilcoxon signed-rank test: a rank test is
indifferent to how far above the budget a miss is placed, only that it is worse than any hit.

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
from scipy import stats as sps

from . import figures, stats


def _steps_to_many(steps: pd.Series, metric: pd.Series, target: np.ndarray, sign: float = 1.0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """First evaluated step reaching each task's target, censored at 2 x budget when never;
    tasks sharing a schedule are stacked. ``sign`` -1: the metric is smaller-is-better, so
    reaching means going at or below the target. Returns (steps, reached)."""
    out = np.empty(len(target))
    reached = np.zeros(len(target), dtype=bool)
    groups: dict[tuple, list[int]] = {}
    steps = list(steps)
    keys = steps if steps and isinstance(steps[0], tuple) else figures.schedules(steps)  # tuples: converted already
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    metric = list(metric)
    for k, rows in groups.items():
        m = np.stack([np.asarray(metric[i], dtype=float) for i in rows])
        hit = sign * m >= sign * target[rows, None] - 1e-12
        got = hit.any(1)
        grid = np.asarray(k, dtype=float)
        out[rows] = np.where(got, grid[hit.argmax(1)], 2.0 * grid[-1])
        reached[rows] = got
    return out, reached


def paired_steps(tasks: pd.DataFrame, candidate: str, reference: str) -> pd.DataFrame:
    """Per paired task: the reference's final metric (the target), both steps-to-target, and
    whether the candidate reached it."""
    cand = tasks[tasks["algo"] == candidate]
    sign = stats.scope_sign(cand)
    return _paired_steps(cand, reference_side(tasks[tasks["algo"] == reference], sign), sign)


def reference_side(ref: pd.DataFrame, sign: float) -> pd.DataFrame:
    """The reference's rows as targets: its final metric and the steps its own curve took to reach
    it. Computed once per reference and shared by every candidate paired with it."""
    steps = "schedule" if "schedule" in ref else "curve_steps"
    target = ref["metric"].to_numpy(float)
    own, _ = _steps_to_many(ref[steps], ref["curve_metric"], target, sign)
    return ref[stats.PAIR_KEYS].reset_index(drop=True).assign(
        target=target, steps_reference=own, run_id_reference=ref["run_id"].to_numpy())


def _paired_steps(cand: pd.DataFrame, ref_side: pd.DataFrame, sign: float) -> pd.DataFrame:
    steps = "schedule" if "schedule" in cand else "curve_steps"  # tuples, converted once by `amortization`
    cols = stats.PAIR_KEYS + [steps, "curve_metric", "ft_flops", "ft_steps", "run_id"]
    joined = cand[cols].merge(ref_side, on=stats.PAIR_KEYS)
    columns = ["task_index", "target", "steps_reference", "steps_candidate", "reached", "flops_per_step", "run_id",
               "run_id_reference"]
    if joined.empty:
        return pd.DataFrame(columns=columns)
    target = joined["target"].to_numpy(float)
    cand_steps, reached = _steps_to_many(joined[steps], joined["curve_metric"], target, sign)
    return pd.DataFrame({"task_index": joined["task_index"].to_numpy(), "target": target,
                         "steps_reference": joined["steps_reference"].to_numpy(float),
                         "steps_candidate": cand_steps, "reached": reached,
                         "flops_per_step": (joined["ft_flops"].fillna(0) / joined["ft_steps"].clip(lower=1)).to_numpy(float),
                         "run_id": joined["run_id"].to_numpy(), "run_id_reference": joined["run_id_reference"].to_numpy()},
                        columns=columns)


STEPS_MARGIN = 4  # steps: a cost difference smaller than this counts as no practical difference


def steps_verdict(saved: np.ndarray, margin: float = STEPS_MARGIN, alpha: float = 0.05) -> tuple[str, float | None,
                                                                                                    float | None]:
    """(verdict, p of the Wilcoxon signed-rank test, p of its equivalence version) on steps saved
    per task (reference - candidate, misses censored). Equivalence within +-margin steps: two
    one-sided Wilcoxon tests of the shifted differences (the rank analogue of TOST)."""
    if len(saved) < 2:
        return "not tested", None, None
    p = float(sps.wilcoxon(saved).pvalue) if np.any(saved != 0) else 1.0
    lower = float(sps.wilcoxon(saved + margin, alternative="greater").pvalue) if np.any(saved + margin != 0) else 1.0
    upper = float(sps.wilcoxon(saved - margin, alternative="less").pvalue) if np.any(saved - margin != 0) else 1.0
    p_eq = max(lower, upper)
    equivalent = p_eq < alpha
    if p < alpha:
        word = "fewer steps" if np.median(saved) > 0 else "more steps"
        return (f"{word} (within margin)" if equivalent else word), p, p_eq
    return ("equivalent within margin" if equivalent else "inconclusive"), p, p_eq


def amortization(tasks: pd.DataFrame, runs: pd.DataFrame, references: list[str] | None = None) -> pd.DataFrame:
    """Per model, dataset, candidate and reference: reach rate, mean steps-to-target of both,
    FLOPs saved per task, and the break-even number of tasks."""
    tasks = stats.prepare(tasks)
    tasks = figures.with_schedules(tasks)  # once for every pair below (the site's rows carry it already)
    upfront = upfront_flops(runs)
    out = []
    for (model, dataset), scope in tasks.groupby(["model", "dataset"], sort=True, observed=True):
        protocols = scope["protocol_fingerprint"].astype(str)
        distinct = pd.unique(protocols)
        for protocol in distinct:  # pairs under different protocols are separate studies
            sub = scope if len(distinct) == 1 else scope[(protocols == protocol).to_numpy()]
            suffix = "" if len(distinct) == 1 else f" (protocol {protocol[:8]})"
            out += _amortization_rows(sub, model, dataset, suffix, references, upfront)
    return pd.DataFrame(out)


def _amortization_rows(sub: pd.DataFrame, model, dataset, suffix: str, references, upfront: dict) -> list[dict]:
    """One (model, dataset, protocol) scope's rows of `amortization`."""
    out = []
    by_algo = {str(a): df for a, df in sub.groupby("algo", sort=True, observed=True)}  # split once
    sign = stats.scope_sign(sub)
    for ref in (references if references is not None else stats.references_in(sub)):
        if ref not in by_algo:
            continue
        ref_side = reference_side(by_algo[ref], sign)
        for cand in sorted(a for a in by_algo if a != ref):
            p = _paired_steps(by_algo[cand], ref_side, sign)
            if p.empty:
                continue
            saved_steps = float((p["steps_reference"] - p["steps_candidate"]).mean())
            saved_flops = float(((p["steps_reference"] - p["steps_candidate"]) * p["flops_per_step"]).mean())
            extra = _mean_of(upfront, p["run_id"].unique()) - _mean_of(upfront, p["run_id_reference"].unique())
            diff = (p["steps_reference"] - p["steps_candidate"]).to_numpy(float)
            verdict, p_steps, p_equivalent = steps_verdict(diff)
            out.append({"model": model, "dataset": dataset, "candidate": cand + suffix, "reference": ref, "n": len(p),
                        "p_steps": p_steps, "p_steps_equivalence": p_equivalent, "steps_verdict": verdict,
                        "reach_rate": float(p["reached"].mean()),
                        "steps_candidate": float(p["steps_candidate"].mean()),
                        "steps_reference": float(p["steps_reference"].mean()),
                        "saved_steps_per_task": saved_steps, "saved_flops_per_task": saved_flops,
                        "extra_upfront_flops": extra, "break_even_tasks": break_even(extra, saved_flops)})
    return out


def break_even(extra_upfront: float, saved_per_task: float) -> float:
    if saved_per_task > 0:
        return max(extra_upfront, 0.0) / saved_per_task
    return 0.0 if (extra_upfront <= 0 and saved_per_task == 0) else math.inf


def upfront_flops(runs: pd.DataFrame) -> dict[str, float]:
    """Per run: meta-training plus lr-selection FLOPs (what a method pays before its first task)."""
    if runs.empty:
        return {}
    total = pd.Series(0.0, index=runs.index)
    for col in ("meta_flops", "selection_flops"):
        if col in runs:
            total += runs[col].fillna(0.0).astype(float)
    return dict(zip(runs["run_id"], total))


def _mean_of(values: dict[str, float], run_ids) -> float:
    return float(np.mean([values.get(r, 0.0) for r in run_ids])) if len(run_ids) else 0.0


def format_amortization(table: pd.DataFrame) -> str:
    from metaft.suite.table import format_table_by_model

    def big(x):
        return "never" if not math.isfinite(x) else f"{x:.3g}"

    rows = [[r.dataset, r.candidate, r.reference, r.n, f"{r.reach_rate:.0%}", f"{r.steps_candidate:.1f}",
             f"{r.steps_reference:.1f}", "–" if r.p_steps is None or pd.isna(r.p_steps) else f"{r.p_steps:.3g}",
             r.steps_verdict, f"{r.saved_flops_per_task:.3g}", f"{r.extra_upfront_flops:.3g}",
             big(r.break_even_tasks)] for r in table.itertuples()]
    return format_table_by_model(table["model"], ["dataset", "candidate", "vs", "pairs", "reached", "steps (cand.)",
                                                  "steps (ref.)",
                         "p (steps)", f"steps verdict (±{STEPS_MARGIN})", "FLOPs saved/task", "extra up-front FLOPs",
                         "break-even tasks"], rows, "lllrrrrrlrrr")
