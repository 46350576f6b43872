"""A/A calibration of the verdicts' primary tests, and power at the detectable effect.

Synthetic studies with task results drawn like real ones (task difficulty varies widely; each
algorithm's result on a task has its own noise; a meta-trained initialisation shifts all tasks
of its seed). Under A/A (two identical algorithms) the primary test must reject at its nominal
5% (within +-0.02 over 1,000 replicates); a planted effect of the size the MDE calls detectable
must be found in about 80% of replicates.
"""
from __future__ import annotations

import numpy as np
import pytest

from metaft.leaderboard import verdicts

REPLICATES = 1000


def _p_values(a: np.ndarray, b: np.ndarray, seeds: np.ndarray) -> tuple[float, float]:
    """(the verdict's test, the pooled task-level test) p-values for one study."""
    from scipy import stats as sps

    ua, ub, unit = verdicts.unit_values(a, b, seeds)
    v = verdicts.Verdict("m", "d", "accuracy", "A", "B", len(ua), unit=unit)
    verdicts._test(v, ua, ub)
    return v.p_value, float(sps.ttest_rel(a, b).pvalue)


def _study(rng, n_tasks: int, n_seeds: int, seed_sd: float, effect: float = 0.0):
    difficulty = rng.uniform(0.35, 0.85, n_tasks * n_seeds)
    seeds = np.repeat(np.arange(n_seeds), n_tasks)
    shift_a = rng.normal(0, seed_sd, n_seeds)[seeds]  # each meta-training lands somewhere else
    shift_b = rng.normal(0, seed_sd, n_seeds)[seeds]
    a = difficulty + shift_a + effect + rng.normal(0, 0.03, len(seeds))
    b = difficulty + shift_b + rng.normal(0, 0.03, len(seeds))
    return a, b, seeds


def test_one_seed_per_dataset_test_is_calibrated():
    rng = np.random.default_rng(0)
    rejections = sum(_p_values(*_study(rng, 30, 1, 0.0))[0] < 0.05 for _ in range(REPLICATES))
    assert abs(rejections / REPLICATES - 0.05) <= 0.02, rejections


def test_seed_level_test_is_calibrated_and_pooled_tasks_are_not():
    rng = np.random.default_rng(1)
    seed_level = pooled = 0
    for _ in range(REPLICATES):
        p_seed, p_pooled = _p_values(*_study(rng, 10, 6, 0.02))
        seed_level += p_seed < 0.05
        pooled += p_pooled < 0.05
    assert abs(seed_level / REPLICATES - 0.05) <= 0.02, seed_level
    assert pooled / REPLICATES > 0.15, pooled  # pseudo-replication: tasks of a seed share its shift


def test_a_planted_effect_of_the_detectable_size_is_found_80_percent_of_the_time():
    rng = np.random.default_rng(2)
    n, sd = 30, 0.03 * np.sqrt(2)  # the sd of a paired difference in this model
    mde = verdicts.minimum_detectable_effect(n, sd)
    found = sum(_p_values(*_study(rng, n, 1, 0.0, effect=mde))[0] < 0.05 for _ in range(REPLICATES))
    assert 0.75 <= found / REPLICATES <= 0.85, (found, mde)


def test_wider_seed_shift_widens_the_seed_level_interval():
    """The seed-level CI grows with the spread of meta-trainings; the pooled-task CI does not see it."""
    widths = {}
    for seed_sd in (0.0, 0.05):
        rng = np.random.default_rng(3)
        a, b, seeds = _study(rng, 20, 5, seed_sd)
        ua, ub, unit = verdicts.unit_values(a, b, seeds)
        v = verdicts.Verdict("m", "d", "accuracy", "A", "B", len(ua), unit=unit)
        verdicts._test(v, ua, ub)
        widths[seed_sd] = v.ci_high - v.ci_low
    assert widths[0.05] > 2 * widths[0.0]


def test_cross_dataset_stratified_summary_is_calibrated():
    """Three datasets with unlike metric scales (accuracy near 0.8, entity F1 near 0.3, SQuAD F1
    near 0.1, different noise), one seed, A/A: the stratified sign-flip test rejects at 5%."""
    rng = np.random.default_rng(4)
    scales = [(0.8, 0.03), (0.3, 0.08), (0.1, 0.02)]
    rejections = 0
    for r in range(REPLICATES):
        strata = []
        for centre, noise in scales:
            base = rng.normal(centre, 0.1, 12)
            d = (base + rng.normal(0, noise, 12)) - (base + rng.normal(0, noise, 12))
            strata.append(d / np.sqrt(np.mean(d ** 2)))
        _, p = verdicts.stratified_sign_flip(strata, n_permutations=499, seed=r)
        rejections += p < 0.05
    assert abs(rejections / REPLICATES - 0.05) <= 0.02, rejections


def test_the_normal_limit_of_the_sign_flip_test_matches_the_permutations():
    from scipy import stats as sps

    rng = np.random.default_rng(6)
    small = [rng.normal(0.15, 1, 130), rng.normal(0.1, 1, 130), rng.normal(0.0, 1, 130)]
    assert sum(map(len, small)) <= verdicts.EXACT_UP_TO < sum(map(len, small)) + 20
    exact = verdicts.stratified_sign_flip(small, n_permutations=20000)[1]
    var = sum(float((s ** 2).sum()) / len(s) ** 2 for s in small) / len(small) ** 2
    normal = 2 * sps.norm.sf(abs(np.mean([s.mean() for s in small])) / np.sqrt(var))
    assert exact == pytest.approx(normal, abs=0.01)  # the permutations and their normal limit agree
    large = small + [rng.normal(0.0, 1, 20)]  # over the threshold: the normal limit is used
    assert verdicts.stratified_sign_flip(large)[1] == pytest.approx(
        2 * sps.norm.sf(abs(np.mean([s.mean() for s in large])) /
                        np.sqrt(sum(float((s ** 2).sum()) / len(s) ** 2 for s in large) / 16)))
