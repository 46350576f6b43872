"""Sample-size planning from a pilot (FLEX-style design): how many meta-test tasks per dataset and
how many seeds a question needs, and what that costs, before the compute is spent.

From a pilot results folder, per model, dataset and candidate-reference pair:

* the sd of the paired task differences (task level) and, with several pilot seeds, the sd of
  the per-seed mean differences (seed level);
* tasks needed: the n at which a two-sided paired t-test at Holm's first level (``alpha`` over
  the candidates compared with the reference: the family the verdicts correct over) detects
  ``effect`` with ``power`` (statsmodels' ``TTestPower``), as a range: from the pilot's sd and
  from its one-sided 95% upper confidence limit (sd x sqrt((n-1) / chi2_0.05(n-1))), since a small
  pilot's sd is itself uncertain (4 tasks: the limit is 2.9x the sd); divided by the share of
  distinct query examples when
  the pilot's query sets overlapped across tasks (a task that shares its queries carries less
  information: overlap-adjusted effective tasks = nominal x distinct / queries);
* seeds needed for an algorithm-level claim: from the seed-level sd when the pilot has >= 2
  seeds, never fewer than ``verdicts.MIN_SEEDS``;
* protocols: pairs under different protocols are separate studies, planned apart;
* cost: tasks (the upper end of the range) x measured fine-tuning seconds per task for both algorithms, plus each
  algorithm's measured meta-training and lr-selection seconds, times the seeds.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from metaft.suite.foundation.errors import ConfigError

from . import stats, verdicts


def tasks_needed(effect: float, sd: float, alpha: float = stats.ALPHA, power: float = verdicts.POWER) -> int:
    from statsmodels.stats.power import TTestPower

    if not (sd > 0 and effect > 0):
        return 2
    # the smallest n whose power reaches the target (power rises with n), by doubling and bisection:
    # ceil(solve_power) where statsmodels' root finder converges, and right where it does not (it
    # returns NaN or a wrong root for an effect many times the sd)
    analysis = TTestPower()

    def enough(k: int) -> bool:
        value = analysis.power(effect_size=effect / sd, nobs=k, alpha=alpha, alternative="two-sided")
        if not math.isfinite(value):  # statsmodels' noncentral t underflows for a huge noncentrality:
            from scipy import stats as sps  # scipy's, then the normal approximation (exact there)

            crit, shift = sps.t.ppf(1 - alpha / 2, k - 1), effect / sd * math.sqrt(k)
            value = sps.nct.sf(crit, k - 1, shift) + sps.nct.cdf(-crit, k - 1, shift)
            if not math.isfinite(value):
                value = sps.norm.cdf(shift - crit) + sps.norm.cdf(-shift - crit)
        return value >= power
    hi = 2
    while not enough(hi):
        hi *= 2
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi


def sd_upper_limit(sd: float, n: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence limit of a normal sd estimated from ``n`` values."""
    from scipy import stats as sps

    if n < 2 or not sd > 0:
        return float("inf") if n < 2 else sd
    return float(sd * math.sqrt((n - 1) / sps.chi2.ppf(1 - confidence, n - 1)))


def plan(tasks: pd.DataFrame, runs: pd.DataFrame, manifests: Mapping[str, dict], effect: float = 0.02,
         alpha: float = stats.ALPHA, power: float = verdicts.POWER) -> pd.DataFrame:
    tasks = stats.prepare(tasks)
    per_run = runs.set_index("run_id") if len(runs) else pd.DataFrame()
    rows = []
    for model, dataset, suffix, sub in stats.paired_scopes(tasks):  # protocols apart: never pooled into one sd
        rows += _plan_rows(sub, model, dataset, suffix, per_run, manifests, effect, alpha, power)
    return pd.DataFrame(rows)


def _plan_rows(sub, model, dataset, suffix, per_run, manifests, effect, alpha, power) -> list[dict]:
    table = stats.wide(sub, "metric")
    rows = []
    for ref, candidates in stats.reference_families(table.columns, stats.references_in(sub)):
        level = alpha / max(len(candidates), 1)  # Holm's first level over this reference's family
        for cand in candidates:
            joined = table[[cand, ref]].dropna()
            if len(joined) < 2:
                continue
            d = (joined[cand] - joined[ref]).to_numpy(float)
            seeds = joined.index.get_level_values("episodes_fingerprint").to_numpy()
            share = _distinct_share(manifests, sub, dataset)
            sd = float(d.std(ddof=1))
            upper = sd_upper_limit(sd, len(d))
            n_tasks = math.ceil(tasks_needed(effect, sd, level, power) / share)
            n_upper = math.ceil(tasks_needed(effect, upper, level, power) / share) if math.isfinite(upper) else n_tasks
            seed_means = pd.Series(d).groupby(seeds).mean()
            n_seeds = verdicts.MIN_SEEDS
            if len(seed_means) >= 2:
                n_seeds = max(n_seeds, tasks_needed(effect, float(seed_means.std(ddof=1)), level, power))
            ft = {a: float(sub[sub["algo"] == a]["ft_seconds"].mean()) for a in (cand, ref)}
            upfront = {a: _upfront_seconds(per_run, sub[sub["algo"] == a]["run_id"].unique()) for a in (cand, ref)}
            one_seed = n_upper * (ft[cand] + ft[ref]) + upfront[cand] + upfront[ref]
            rows.append({"model": model, "dataset": dataset, "candidate": cand + suffix, "reference": ref,
                         "pilot_tasks": len(d), "pilot_seeds": len(seed_means), "sd_diff": sd, "sd_upper": upper,
                         "alpha_level": level, "distinct_share": share, "tasks_needed": n_tasks,
                         "tasks_needed_upper": n_upper, "seeds_needed": n_seeds,
                         "cpu_hours_one_seed": one_seed / 3600, "cpu_hours_all_seeds": one_seed * n_seeds / 3600})
    return rows


def stated_plan(sd: float, effect: float, alpha: float, power: float, seconds_per_task: float = 0.0,
                upfront_seconds: float = 0.0) -> pd.DataFrame:
    """The same plan from stated numbers (no pilot): one candidate against one reference."""
    if not sd > 0:
        raise ConfigError("--sd must be > 0")
    n_tasks = tasks_needed(effect, sd, alpha, power)
    one_seed = n_tasks * 2 * seconds_per_task + 2 * upfront_seconds
    return pd.DataFrame([{"model": "-", "dataset": "(stated)", "candidate": "candidate", "reference": "reference",
                          "pilot_tasks": 0, "pilot_seeds": 0, "sd_diff": sd, "sd_upper": sd, "alpha_level": alpha,
                          "distinct_share": 1.0, "tasks_needed": n_tasks, "tasks_needed_upper": n_tasks,
                          "seeds_needed": verdicts.MIN_SEEDS,
                          "cpu_hours_one_seed": one_seed / 3600,
                          "cpu_hours_all_seeds": one_seed * verdicts.MIN_SEEDS / 3600}])


def _distinct_share(manifests: Mapping[str, dict], sub: pd.DataFrame, dataset: str) -> float:
    shares = []
    for run_id in sub["run_id"].unique():
        o = (manifests.get(run_id, {}).get("query_overlap") or {}).get(dataset)
        if o and o.get("queries"):
            shares.append(o["distinct"] / o["queries"])
    return float(min(shares)) if shares else 1.0


def _upfront_seconds(per_run: pd.DataFrame, run_ids) -> float:
    values = []
    for r in run_ids:
        if r in per_run.index:
            row = per_run.loc[r]
            values.append(sum(float(row[c]) for c in ("meta_wall_seconds", "selection_wall_seconds")
                              if c in row and not pd.isna(row[c])))
    return float(np.mean(values)) if values else 0.0


def format_plan(table: pd.DataFrame, effect: float, power: float) -> str:
    from metaft.suite.table import format_table

    rows = [[r.dataset, r.candidate, r.reference, f"{r.pilot_tasks}/{r.pilot_seeds}",
             f"{r.sd_diff:.3f} (≤{r.sd_upper:.3f})", f"{r.alpha_level:.3g}", f"{r.distinct_share:.2f}",
             r.tasks_needed if r.tasks_needed_upper == r.tasks_needed else f"{r.tasks_needed}-{r.tasks_needed_upper}",
             r.seeds_needed, f"{r.cpu_hours_one_seed:.2f}", f"{r.cpu_hours_all_seeds:.2f}"] for r in table.itertuples()]
    return format_table(["dataset", "candidate", "vs", "pilot tasks/seeds", "sd of diff (95% upper)", "alpha (Holm)",
                         "distinct queries", f"tasks for {effect:g} at {power:.0%}", "seeds", "hours (1 seed)",
                         "hours (all seeds)"], rows, "lllrrrrrrrr")
