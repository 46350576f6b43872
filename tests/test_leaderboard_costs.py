"""The cost claims simulated: "cheaper"/"dearer" keep their error rate under A/A (curves still
rising at the budget, and curves flat from step 8), a curve that peaks early and ends lower is
not cheaper, a curve reached 4x sooner is found with power and a ratio interval holding 4; the
cross-dataset summary and the site's marks with seeds as the unit stay calibrated when every
meta-training lands somewhere else; the FLOPs arithmetic of unlike sides (head-only against
full fine-tuning) is exact.

Simulated study: 40 tasks, log2 schedule to 32 steps; a task's difficulty is shared by both
algorithms and every step (sd 0.05), each evaluation has its own noise (sd 0.03).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from metaft.leaderboard import costs, site, verdicts

GRID = np.array([0, 1, 2, 4, 8, 16, 32], dtype=float)
STUDIES = 1000
MARGIN = 0.02
# the rate allowed for a 5% error: 5% plus two Monte Carlo standard errors
ALLOWED = 0.05 + 2 * math.sqrt(0.05 * 0.95 / STUDIES)


def rising(b):
    return 0.5 + 0.3 * (1 - np.exp(-np.asarray(b, dtype=float) / 24))  # still rising at 32


def flat(b):
    return 0.5 + 0.3 * np.minimum(np.asarray(b, dtype=float), 8) / 8  # at its final value from step 8


def peaks_early(b):
    """Reaches the reference's final value at step 4, then falls to 0.02 below it by step 16."""
    b = np.asarray(b, dtype=float)
    top = rising(32)
    return np.where(b <= 4, 0.5 + (top - 0.5) * b / 4, top - MARGIN * np.minimum((b - 4) / 12, 1))


def four_times_sooner(curve):
    return lambda b: curve(4 * np.asarray(b, dtype=float))


def study(rng, reference, candidate, n=40, sd=0.03, resamples=0) -> costs.CostResult:
    difficulty = rng.normal(0, 0.05, (n, 1))
    ref = reference(GRID)[None] + difficulty + rng.normal(0, sd, (n, len(GRID)))
    cand = candidate(GRID)[None] + difficulty + rng.normal(0, sd, (n, len(GRID)))
    return costs.cost_verdict(costs.CurveSide(GRID, cand, 1e9), costs.CurveSide(GRID, ref, 1e9), MARGIN,
                              n_resamples=resamples, seed=int(rng.integers(2 ** 31)))


def rates(results) -> tuple[float, float]:
    return (float(np.mean([r.verdict.startswith("cheaper") for r in results])),
            float(np.mean([r.verdict.startswith("dearer") for r in results])))


@pytest.mark.parametrize("curve", [rising, flat], ids=["rising-at-the-budget", "flat-from-step-8"])
def test_identical_candidates_are_neither_cheaper_nor_dearer(curve):
    rng = np.random.default_rng(1 if curve is rising else 2)
    cheaper, dearer = rates([study(rng, curve, curve) for _ in range(STUDIES)])
    assert cheaper <= ALLOWED and dearer <= ALLOWED, (cheaper, dearer)


def test_a_curve_that_peaks_early_and_ends_lower_is_not_cheaper():
    """First-hit steps called this "fewer steps" in 56% of studies; its final metric is worse."""
    rng = np.random.default_rng(3)
    cheaper, _ = rates([study(rng, rising, peaks_early) for _ in range(STUDIES)])
    assert cheaper <= ALLOWED, cheaper


def test_a_curve_reached_four_times_sooner_is_cheaper_with_power_and_its_ratio_interval_holds_4():
    rng = np.random.default_rng(4)
    results = [study(rng, rising, four_times_sooner(rising), resamples=499) for _ in range(300)]
    power = np.mean([r.verdict.startswith("cheaper") for r in results])
    holds = np.mean([r.compute_ratio_lo <= 4 <= r.compute_ratio_hi for r in results])
    assert power >= 0.8 and holds >= 0.9, (power, holds)
    assert np.median([r.compute_ratio for r in results]) == 4


def test_one_sided_p_equals_scipy():
    rng = np.random.default_rng(5)
    d = rng.normal(0.01, 0.03, (25, 3))
    for delta in (0.0, -MARGIN):
        expected = [sps.ttest_1samp(d[:, j], delta, alternative="greater").pvalue for j in range(3)]
        np.testing.assert_allclose(costs.one_sided_p(d, delta), expected, rtol=1e-10)


def rows(algo: str, curves: np.ndarray, flops_per_step: float, seeds=None, dataset="ag_news") -> list[dict]:
    seeds = np.zeros(len(curves), dtype=int) if seeds is None else seeds
    return [{"run_id": f"{algo}-s{s}", "algo": algo, "model": "minilm", "benchmark": "cross-dataset-v2",
             "episodes_fingerprint": f"fp{s}", "protocol_fingerprint": "p", "task_index": i, "dataset": dataset,
             "metric_name": "accuracy", "metric": float(c[-1]), "eval_mode": "shared", "curve_steps": list(GRID),
             "curve_metric": [float(x) for x in c], "ft_steps": 32, "ft_flops": flops_per_step * 32,
             "ft_tokens": 1000 * 32} for i, (c, s) in enumerate(zip(curves, seeds))]


def test_head_only_against_full_fine_tuning_counts_each_sides_own_flops():
    """Head-only (2e9 FLOPs a step) reaches the reference's quality at 16 steps, full fine-tuning
    (6e9) at 8: it saves 8 x 6e9 - 16 x 2e9 = 1.6e10 FLOPs a task, and 1e12 FLOPs of extra up-front
    cost pay back after 62.5 tasks (the old rule used the candidate's FLOPs for both: -1.6e10)."""
    rng = np.random.default_rng(6)
    n = 40
    full = np.array([0.5, 0.55, 0.6, 0.65, 0.8, 0.8, 0.8])
    head = np.array([0.5, 0.52, 0.55, 0.6, 0.7, 0.8, 0.8])
    difficulty = rng.normal(0, 0.05, (n, 1))
    tasks = pd.DataFrame(rows("baseline", full + difficulty + rng.normal(0, 0.003, (n, 7)), 6e9) +
                         rows("head-only", head + difficulty + rng.normal(0, 0.003, (n, 7)), 2e9))
    runs = pd.DataFrame([{"run_id": "head-only-s0", "meta_flops": 1e12, "selection_flops": 0.0},
                         {"run_id": "baseline-s0", "meta_flops": 0.0, "selection_flops": 0.0}])
    row = costs.amortization(tasks, runs).set_index("candidate").loc["head-only"]
    assert (row.sufficient_candidate, row.sufficient_reference) == (16, 8)
    assert row.saved_flops_per_task == pytest.approx(1.6e10) and row.break_even_tasks == pytest.approx(62.5)
    assert row.saved_flops_lo == pytest.approx(1.6e10) and row.break_even_hi == pytest.approx(62.5)
    assert row.compute_ratio == pytest.approx(4.8e10 / 3.2e10)
    # at the same compute (3.2e10: 16 head-only steps, 5.3 of the reference's, read at its step 4) it is better
    assert row.verdict.startswith("cheaper")
    assert row.ratio_at_100 == pytest.approx(4.8e10 / (1e10 + 3.2e10))  # 1e12 / 100 tasks added to its side
    text = costs.format_amortization(costs.amortization(tasks, runs))
    assert "62.5 [62.5, 62.5]" in text


def test_break_even_is_never_only_when_the_interval_says_so():
    assert costs.break_even_text(math.inf, 10.0, math.inf) == "∞ [10, ∞]"  # the point says never, the interval not
    assert costs.break_even_text(math.inf, math.inf, math.inf) == "never"
    assert costs.break_even_text(50.0, 20.0, math.inf) == "50 [20, ∞]"


def seeded_study(rng, n_seeds=5, n_tasks=10, datasets=("a", "b", "c"), seed_sd=0.02) -> pd.DataFrame:
    """A/A with meta-training variance: each seed of each algorithm shifts all its tasks, on every
    dataset, by its own N(0, seed_sd)."""
    parts = []
    seeds = np.repeat(np.arange(n_seeds), n_tasks)
    shift = {algo: rng.normal(0, seed_sd, n_seeds) for algo in ("baseline", "cand")}
    for d, centre in zip(datasets, (0.8, 0.3, 0.5)):
        base = rng.uniform(centre - 0.1, centre + 0.1, len(seeds))
        for algo in ("baseline", "cand"):
            final = base + shift[algo][seeds] + rng.normal(0, 0.03, len(seeds))
            df = pd.DataFrame(rows(algo, np.stack([final * 0.5, final], 1), 1e9, seeds, dataset=d))
            df["task_index"] = np.tile(np.arange(n_tasks), n_seeds)
            parts.append(df)
    return pd.concat(parts, ignore_index=True)


def test_seed_level_summary_and_site_marks_are_calibrated_when_meta_training_varies():
    """Pooling tasks of five seeds as independent rejected in 63% of such A/A studies; with the seed
    as the unit the stratified claim and the marks (the per-dataset verdicts) stay near 5%."""
    rng = np.random.default_rng(7)
    summary_claims = marks = n_marks = 0
    studies = 300
    for _ in range(studies):
        tasks = seeded_study(rng)
        summary = verdicts.stratified_summary(tasks)
        row = summary[summary["candidate"] == "cand"].iloc[0]
        assert row.unit == "seeds" and row.units == 5
        summary_claims += row.claim.startswith(("better", "worse"))
        for d in ("a", "b", "c"):
            v = verdicts.verdicts(tasks[tasks["dataset"] == d], references=["baseline"]).iloc[0]
            cell = site.mark(v.verdict, v.p_holm, "")
            assert cell.text.startswith(("▲", "▼")) == v.verdict.startswith(("better", "worse"))  # never contradicts
            marks += cell.text.startswith(("▲", "▼"))
            n_marks += 1
    assert summary_claims / studies <= 0.07 and marks / n_marks <= 0.07, (summary_claims, marks, n_marks)


def test_a_real_per_seed_effect_is_found_by_the_seed_level_summary():
    rng = np.random.default_rng(8)
    found = 0
    for _ in range(50):
        tasks = seeded_study(rng, n_seeds=8)
        tasks.loc[tasks["algo"] == "cand", "metric"] += 0.04
        found += verdicts.stratified_summary(tasks).set_index("candidate").loc["cand", "claim"] == "better"
    assert found >= 40, found


def test_the_sites_intervals_of_a_mean_cover_at_least_93_percent_at_four_tasks():
    """Task metrics with a bell-shaped spread of difficulty (sd 0.12 around 0.6) plus evaluation
    noise: the t interval the site now shows covers >= 93% at n = 4, the percentile bootstrap it
    replaced does not (measured 79%). (With difficulty uniform over 0.35-0.85, or skewed as
    Beta(4, 2), the t interval covers 92.9%: docs/protocol.md says so.)"""
    from metaft.leaderboard import stats

    rng = np.random.default_rng(9)
    samples = np.clip(rng.normal(0.6, 0.12, (4000, 4)), 0, 1) + rng.normal(0, 0.03, (4000, 4))
    truth = 0.6
    covered = np.mean([lo <= truth <= hi for lo, hi in stats.t_intervals(samples)])
    boot = np.mean([lo <= truth <= hi for lo, hi in stats.bootstrap_many(list(samples[:500]), 999)])
    assert covered >= 0.93 and boot < 0.85, (covered, boot)


def test_the_mde_holds_its_power_with_two_null_co_candidates():
    """Holm over three candidates: a candidate at the reported MDE (at Holm's first level) is found
    at least 80% of the time while the other two are null; at the unadjusted level it was 63%."""
    from metaft.leaderboard import stats

    rng = np.random.default_rng(10)
    n, sd = 30, 0.03
    mde = verdicts.minimum_detectable_effect(n, sd, alpha=0.05 / 3)
    found = 0
    for _ in range(STUDIES):
        d = rng.normal(0, sd, (3, n))
        d[0] += mde
        p = [sps.ttest_1samp(x, 0).pvalue for x in d]
        found += stats.holm(p)[0] < 0.05
    assert 0.78 <= found / STUDIES <= 0.9, found


def test_an_unregistered_metric_is_an_error_naming_the_missing_plugin():
    from metaft.leaderboard import stats
    from metaft.suite.foundation.errors import NotFoundError

    tasks = pd.DataFrame(rows("baseline", np.ones((3, 7)), 1e9)).assign(metric_name="bleu_from_a_plugin")
    with pytest.raises(NotFoundError, match="bleu_from_a_plugin.*not registered.*install the plugin"):
        stats.prepare(tasks)


def test_too_few_pairs_give_a_row_that_says_so_and_still_prints():
    tasks = pd.DataFrame(rows("baseline", np.tile(flat(GRID), (1, 1)), 1e9) +
                         rows("cand", np.tile(flat(GRID), (1, 1)), 1e9))
    table = costs.amortization(tasks, None, n_resamples=0)
    row = table.iloc[0]
    assert row.verdict == "not tested" and row.note.startswith("fewer than 2") and row.ratio_at_100 is None
    assert "not tested" in costs.format_amortization(table)
