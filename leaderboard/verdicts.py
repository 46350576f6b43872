"""Per-dataset verdicts: is a candidate better, worse, equivalent to a reference, or is the
study unable to tell?

One test per (model, dataset, reference, candidate), on one metric (never a pool of unlike
metrics), over config-matched pairs of tasks. For each: the mean paired difference with a
t confidence interval, the paired t-test's p (Holm-adjusted over the candidates compared
with one reference on one dataset), a TOST equivalence test against a declared margin
(statsmodels' ``ttost_paired``), and the minimum detectable effect at 80% power for the n
at hand (statsmodels' ``TTestPower``, two-sided, times the sd of the differences), so a
"not significant" says whether the study could have seen anything.

Units. With one seed the tasks share one meta-trained initialisation per algorithm: the test
is over tasks and the claim is about these initialisations, not the algorithms. With several
seeds (independent meta-trainings; each seed has its own episode manifest) the test is over
per-seed means of the paired differences (df = seeds - 1): tasks of one seed are not
independent replicates of an algorithm, and pooling them as if they were is miscalibrated when
meta-training varies (tests/test_leaderboard_calibration.py shows both). An algorithm-level
claim needs at least ``MIN_SEEDS`` seeds; with fewer the verdict says so.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from . import stats

DEFAULT_MARGIN = 0.02  # in the metric's units (accuracy, F1)
POWER = 0.8
MIN_SEEDS = 5
# Directional words need this many paired tasks (one seed): below 6 units an exact sign-flip test
# cannot reach two-sided p < 0.05 (its smallest p is 2 / 2^n), so the claim would rest on the
# t-test's normality alone, which 5 values cannot check (n = 2 could print "better").
MIN_TASKS = 6
EXACT_UP_TO = 400  # tasks; above, the stratified sign-flip test uses its normal limit


@dataclass
class Verdict:
    model: str
    dataset: str
    metric_name: str
    candidate: str
    reference: str
    n: int
    mean_candidate: float | None = None
    mean_reference: float | None = None
    mean_diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_holm: float | None = None
    p_equivalence: float | None = None
    margin: float = DEFAULT_MARGIN
    mde: float | None = None
    unit: str = "tasks"  # what the test's n counts: tasks (one seed) or seeds
    n_seeds: int = 0
    verdict: str = "not tested"
    note: str = ""
    higher_is_better: bool = True  # the metric's direction: "better" means larger, or smaller


def minimum_detectable_effect(n: int, sd: float, alpha: float = stats.ALPHA, power: float = POWER) -> float:
    """The smallest mean paired difference a two-sided paired t-test detects with ``power``."""
    from statsmodels.stats.power import TTestPower

    if n < 2 or not np.isfinite(sd):
        return float("inf")
    return float(TTestPower().solve_power(nobs=n, alpha=alpha, power=power, alternative="two-sided") * sd)


def _test(v: Verdict, a: np.ndarray, b: np.ndarray, family: int = 1) -> None:
    """t CI, paired t, TOST and the MDE; the MDE is at Holm's first level alpha / family (the
    candidates compared with one reference), so an effect of that size is found with 80% power
    even when every other candidate of the family is null."""
    from statsmodels.stats.weightstats import ttost_paired

    d = a - b
    v.mean_candidate, v.mean_reference, v.mean_diff = float(a.mean()), float(b.mean()), float(d.mean())
    if len(d) < 2:
        v.note = "fewer than 2 paired tasks"
        return
    sd = float(d.std(ddof=1))
    if sd <= 1e-12 * max(1.0, abs(v.mean_diff)):
        v.note = "the paired differences are all equal (zero variance)"  # no MDE: shown as "–"
        return
    v.mde = minimum_detectable_effect(len(d), sd, alpha=stats.ALPHA / max(family, 1))
    half = float(sps.t.ppf(1 - stats.ALPHA / 2, len(d) - 1) * sd / np.sqrt(len(d)))
    v.ci_low, v.ci_high = v.mean_diff - half, v.mean_diff + half
    v.p_value = float(sps.ttest_rel(a, b).pvalue)
    v.p_equivalence = float(ttost_paired(a, b, -v.margin, v.margin)[0])


def unit_values(a: np.ndarray, b: np.ndarray, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """The test's units: the paired tasks themselves with one seed, per-seed means with several."""
    (ua, ub), unit, _ = per_unit([a, b], seeds)
    return ua, ub, unit


def per_unit(arrays: list[np.ndarray], seeds: np.ndarray) -> tuple[list[np.ndarray], str, int]:
    """Each array (tasks first, 1-D or 2-D) as the test's units: unchanged with one seed, per-seed
    means with several (the tasks of a seed share one meta-trained start). Returns the arrays,
    the unit's name and the number of seeds."""
    codes, groups = pd.factorize(seeds)  # in first-seen order, one pass (500 seeds x 10,000 tasks: ms)
    if len(groups) < 2:
        return list(arrays), "tasks", len(groups)
    counts = np.bincount(codes)

    def means(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if x.ndim == 1:
            return np.bincount(codes, weights=x) / counts
        return np.stack([np.bincount(codes, weights=x[:, j]) / counts for j in range(x.shape[1])], 1)

    return [means(x) for x in arrays], "seeds", len(groups)


def decide(v: Verdict) -> str:
    """better / worse (within margin when also equivalent), equivalent within margin, or
    inconclusive, marked underpowered when the detectable effect exceeds the margin."""
    if v.p_holm is None:
        return "not tested"
    if v.unit == "seeds" and v.n_seeds < MIN_SEEDS:
        return f"inconclusive (fewer than {MIN_SEEDS} seeds)"
    if v.unit == "tasks" and v.n < MIN_TASKS:
        return f"inconclusive (fewer than {MIN_TASKS} tasks)"
    equivalent = v.p_equivalence is not None and v.p_equivalence < stats.ALPHA
    if v.p_holm is not None and v.p_holm < stats.ALPHA:
        word = "better" if (v.mean_diff is not None and v.mean_diff > 0) == v.higher_is_better else "worse"
        return f"{word} (within margin)" if equivalent else word
    if equivalent:
        return "equivalent within margin"
    return "inconclusive (underpowered)" if (v.mde is None or v.mde > v.margin) else "inconclusive"


def verdicts(tasks: pd.DataFrame, references: list[str] | None = None, margin: float = DEFAULT_MARGIN,
             higher_is_better: bool = True) -> pd.DataFrame:
    """Every candidate against every reference present, per model and dataset."""
    tasks = stats.prepare(tasks)
    rows: list[Verdict] = []
    for model, dataset, _, sub in stats.paired_scopes(tasks, split_protocols=False):
        refs = references if references is not None else stats.references_in(sub)
        table = stats.wide(sub, "metric")
        metric_name = str(sub["metric_name"].iloc[0])
        larger_better = (stats.scope_sign(sub) > 0) == higher_is_better
        for ref, candidates in stats.reference_families(table.columns, refs):
            family = []
            family_size = len(candidates)
            for cand in candidates:
                v = Verdict(str(model), str(dataset), metric_name, cand, ref, 0, margin=margin,
                            higher_is_better=larger_better)
                a, b = stats.paired_values(sub, "metric", cand, ref, table=table)
                if not len(a):
                    v.note = stats.unpaired_reason(sub, cand, ref)
                    family.append(v)
                    continue
                va, vb = table[cand].to_numpy(float), table[ref].to_numpy(float)
                paired = ~(np.isnan(va) | np.isnan(vb))
                seeds = table.index.get_level_values("episodes_fingerprint").to_numpy()[paired]
                protocols = table.index.get_level_values("protocol_fingerprint").to_numpy()[paired].astype(str)
                distinct = pd.unique(protocols)
                for protocol in distinct:  # pairs under different protocols are separate studies, not seeds
                    keep = protocols == protocol
                    w = v if len(distinct) == 1 else dataclasses.replace(
                        v, candidate=f"{cand} (protocol {protocol[:8]})")
                    ua, ub, w.unit = unit_values(a[keep], b[keep], seeds[keep])  # tests on the metric as it is
                    w.n, w.n_seeds = len(ua), len(pd.unique(seeds[keep]))
                    _test(w, ua, ub, family=family_size)
                    context = ""
                    if len(distinct) > 1:
                        context = (f"the pairs come from {len(distinct)} protocols (benchmark, budgets, lr grid, "
                                   f"max length or what is trained); each is tested on its own, never pooled as seeds")
                    elif w.unit == "tasks":
                        context = ("one seed: conditional on one meta-trained initialisation per algorithm, "
                                   "a claim about these initialisations")
                    w.note = "; ".join(x for x in (w.note, context) if x)  # a reason not to test comes first
                    family.append(w)
            for v, p in zip(family, stats.holm([v.p_value for v in family])):
                v.p_holm = p
                v.verdict = decide(v)
            rows += family
    return pd.DataFrame([asdict(v) for v in rows], columns=list(Verdict.__dataclass_fields__))


def format_verdicts(table: pd.DataFrame) -> str:
    """The per-dataset comparison as a terminal table."""
    from metaft.suite.table import format_table_by_model

    def f(x, d=3):
        return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:+.{d}f}" if d else str(x)

    rows = [[r.dataset, r.metric_name, r.candidate, r.reference, f"{r.n} {r.unit}",
             "–" if r.mean_diff is None or pd.isna(r.mean_diff) else
             f"{r.mean_diff:+.3f} [{f(r.ci_low)}, {f(r.ci_high)}]",
             "–" if r.p_holm is None or pd.isna(r.p_holm) else f"{r.p_holm:.3g}",
             "–" if r.p_equivalence is None or pd.isna(r.p_equivalence) else f"{r.p_equivalence:.3g}",
             "–" if r.mde is None or pd.isna(r.mde) or not np.isfinite(r.mde) else f"{r.mde:.3f}",
             r.verdict + (f" ({r.note.split('; ')[0]})" if r.note and r.verdict == "not tested" else "")]
            for r in table.itertuples()]
    return format_table_by_model(table["model"] if len(table) else [],
                                 ["dataset", "metric", "candidate", "vs", "n", "mean diff [95% CI]", "Holm p",
                         f"TOST p (±{table['margin'].iloc[0] if len(table) else DEFAULT_MARGIN:g})", "MDE (80%, Holm)",
                         "verdict"], rows, "llllrrrrrl")


# ---------------------------------------------------------------------------- across datasets
SUMMARY_COLUMNS = ["model", "candidate", "reference", "datasets", "tasks", "unit", "units", "effect", "p_value",
                   "p_holm", "claim"]


def stratified_summary(tasks: pd.DataFrame, n_permutations: int = 9999, seed: int = 0) -> pd.DataFrame:
    """One cross-dataset answer per candidate and reference that never averages unlike metrics:
    each dataset's paired differences are standardised by their own root mean square (so
    accuracy, entity F1 and SQuAD F1 become unit-free effects; the RMS, unlike the sd, does not
    change when signs flip, which keeps the test exact), the summary is the mean of the
    per-dataset mean effects (datasets weighted equally), and its p-value comes from a sign-flip
    permutation test (exact under the null of no difference, whatever the metrics' scales).

    The unit is the seed as soon as there are several: per-seed means within each dataset, each
    seed's effect the mean over datasets of its standardised mean (one meta-training shifts every
    dataset at once, so a seed is one unit everywhere), tested with a t-test over the seeds (df =
    seeds - 1): with 5 seeds a sign-flip test's smallest two-sided p is 1/16, so it could never
    make a claim at the seed gate, while each seed's effect is a mean of many tasks. With one seed
    the unit is the task and the test is the exact sign flip within datasets (a claim about these
    initialisations). A claim needs ``MIN_SEEDS`` seeds, as the per-dataset verdicts do. Holm runs over the family the page states one answer for:
    every candidate against every reference of the model."""
    tasks = stats.prepare(tasks)
    out = []
    for model, sub in tasks.groupby("model", sort=True, observed=True):
        # one paired table per dataset, shared by every (candidate, reference)
        tables = [(stats.wide(ds, "metric"), stats.scope_sign(ds))
                  for _, ds in sub.groupby("dataset", sort=True, observed=True)]
        for ref, candidates in stats.reference_families(sub["algo"].unique(), stats.references_in(sub)):
            for cand in candidates:
                by_protocol: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}  # separate studies
                for table, sign in tables:
                    if cand in table and ref in table:
                        # oriented: a positive effect is an improvement whatever the metric's direction
                        diff = (table[cand] - table[ref]).dropna()
                        protocols = diff.index.get_level_values("protocol_fingerprint").astype(str)
                        seeds = diff.index.get_level_values("episodes_fingerprint").astype(str)
                        for protocol in pd.unique(protocols):
                            keep = np.asarray(protocols == protocol)
                            d = sign * diff[keep].to_numpy(float)
                            if len(d) >= 2 and np.any(d != 0):
                                by_protocol.setdefault(protocol, []).append((d, np.asarray(seeds[keep])))
                for protocol, strata in by_protocol.items():
                    label = cand if len(by_protocol) == 1 else f"{cand} (protocol {protocol[:8]})"
                    weights, unit = stratified_weights(strata)
                    effect = float(weights.sum())
                    if unit == "seeds":  # few units of many tasks each: a t-test over the seeds' effects
                        p = float(sps.ttest_1samp(weights * len(weights), 0.0).pvalue) if len(weights) > 2 and \
                            np.std(weights) > 0 else 1.0
                    else:
                        p = sign_flip_p(weights, n_permutations, seed)
                    out.append({"model": model, "candidate": label, "reference": ref, "datasets": len(strata),
                                "tasks": int(sum(len(d) for d, _ in strata)), "unit": unit, "units": len(weights),
                                "effect": effect, "p_value": p})
    table = pd.DataFrame(out, columns=SUMMARY_COLUMNS)
    for _, idx in table.groupby("model").groups.items():
        table.loc[idx, "p_holm"] = stats.holm(table.loc[idx, "p_value"].tolist())
    table["claim"] = [summary_claim(r) for r in table.itertuples()]
    return table


def stratified_weights(strata: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, str]:
    """Each unit's contribution to the summary effect (their sum; a seed's contribution is its
    effect over the number of seeds), and the unit's name. ``strata`` holds one (oriented paired
    differences, seed labels) per dataset."""
    seeds = pd.unique(np.concatenate([s for _, s in strata]))
    if len(seeds) < 2:  # tasks are the units: each dataset's tasks, standardised by their RMS
        return np.concatenate([d / np.sqrt(np.mean(d ** 2)) / (len(d) * len(strata)) for d, _ in strata]), "tasks"
    index = {x: i for i, x in enumerate(seeds)}
    weights = np.zeros(len(seeds))
    for d, s in strata:
        codes = np.array([index[x] for x in s])
        present = np.unique(codes)
        means = np.bincount(codes, weights=d, minlength=len(seeds))[present] / np.bincount(codes)[present]
        rms = float(np.sqrt(np.mean(means ** 2)))
        if rms > 0:
            weights[present] += means / rms / (len(present) * len(strata))
    return weights, "seeds"


def summary_claim(r) -> str:
    """The cross-dataset claim in words, with the same gates as the per-dataset verdicts."""
    if r.unit == "seeds" and r.units < MIN_SEEDS:
        return f"inconclusive (fewer than {MIN_SEEDS} seeds)"
    if r.p_holm is None or pd.isna(r.p_holm) or r.p_holm >= stats.ALPHA:
        return "no difference shown"
    return ("better" if r.effect > 0 else "worse") + (" (one seed: these initialisations)" if r.unit == "tasks" else "")


EXACT_FLIPS_UP_TO = 12  # units: all 2^n sign patterns are enumerated (4,096)


def sign_flip_p(weights: np.ndarray, n_permutations: int = 9999, seed: int = 0) -> float:
    """Two-sided p of sum(weights) when each unit's sign may flip: exact for a few units, random
    flips up to ``EXACT_UP_TO`` units, the normal limit above (its variance is sum(w^2))."""
    w = np.asarray(weights, dtype=float)
    observed = abs(float(w.sum()))
    if len(w) <= EXACT_FLIPS_UP_TO:
        signs = 1.0 - 2.0 * ((np.arange(2 ** len(w))[:, None] >> np.arange(len(w))) & 1)
        return float(np.mean(np.abs(signs @ w) >= observed - 1e-12))
    if len(w) > EXACT_UP_TO:
        var = float((w ** 2).sum())
        return float(2 * sps.norm.sf(observed / np.sqrt(var))) if var > 0 else 1.0
    rng = np.random.default_rng(seed)
    null = rng.choice([-1.0, 1.0], size=(n_permutations, len(w))) @ w
    return float((1 + int((np.abs(null) >= observed - 1e-12).sum())) / (n_permutations + 1))


def stratified_sign_flip(strata: list[np.ndarray], n_permutations: int = 9999, seed: int = 0) -> tuple[float, float]:
    """(mean over strata of the mean standardised difference, two-sided sign-flip p) with tasks as
    the units (each stratum already standardised)."""
    w = np.concatenate([np.asarray(s, dtype=float) / (len(s) * len(strata)) for s in strata])
    return float(w.sum()), sign_flip_p(w, n_permutations, seed)
