"""Statistics equal scipy's and hand-computed values; edge cases say why instead of NaN."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from metaft.leaderboard.stats import (
    against_baseline,
    all_pairs,
    bootstrap_ci,
    bootstrap_many,
    holm,
    paired_test,
    ranks_for,
    tie_group_ranks,
)


def frame(values: dict[str, list[float]], measure="metric", model="m", fp="f") -> pd.DataFrame:
    rows = []
    for algo, xs in values.items():
        for i, x in enumerate(xs):
            rows.append({"algo": algo, "model": model, "episodes_fingerprint": fp, "task_index": i,
                         "dataset": "ag_news", measure: x})
    return pd.DataFrame(rows)


A = np.array([0.61, 0.72, 0.55, 0.80, 0.66, 0.59, 0.71, 0.68])
B = np.array([0.58, 0.70, 0.57, 0.74, 0.60, 0.55, 0.69, 0.61])


def test_paired_t_equals_scipy():
    c = paired_test(A, B, "metric", "a", "b")
    ref = sps.ttest_rel(A, B)
    assert c.test == "paired t" and c.n == 8
    assert c.statistic == pytest.approx(ref.statistic, rel=1e-12) and c.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    d = A - B
    assert c.effect_size == pytest.approx(d.mean() / d.std(ddof=1))


def test_wilcoxon_equals_scipy_with_ties():
    a = np.array([3.1, 2.0, 4.4, 5.0, 2.2, 3.3, 4.0, 1.0, 2.5])
    b = np.array([2.9, 2.5, 4.0, 4.0, 2.2, 3.0, 3.5, 1.5, 2.0])  # one zero difference, tied |d|
    c = paired_test(a, b, "ft_seconds", "a", "b")
    ref = sps.wilcoxon(a, b)
    assert c.test == "wilcoxon"
    assert c.statistic == pytest.approx(ref.statistic) and c.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    d = (a - b)[a != b]
    r = sps.rankdata(np.abs(d))
    assert c.effect_size == pytest.approx((r[d > 0].sum() - r[d < 0].sum()) / r.sum())


def test_holm_against_a_hand_computed_example():
    # sorted: 0.01*4=0.04, 0.02*3=0.06, 0.03*2=0.06 (monotone), 0.04*1=0.04 -> max(0.06, 0.04)=0.06
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, None, 0.9]) == [pytest.approx(1.0), None, pytest.approx(1.0)]
    from statsmodels.stats.multitest import multipletests

    p = np.random.default_rng(0).uniform(0, 0.2, 12)
    assert holm(list(p)) == pytest.approx(list(multipletests(p, method="holm")[1]))  # the maintained one


def test_bootstrap_equals_a_reference_loop_and_is_close_to_scipy():
    lo, hi = bootstrap_ci(A, n_resamples=2000, seed=3)
    rng = np.random.default_rng(3)
    draws = rng.integers(0, len(A), size=(2000, len(A)))
    means = [A[row].mean() for row in draws]
    assert (lo, hi) == (pytest.approx(np.quantile(means, 0.025), abs=0), pytest.approx(np.quantile(means, 0.975), abs=0))
    ref = sps.bootstrap((A,), np.mean, n_resamples=20000, method="percentile", rng=np.random.default_rng(0))
    lo2, hi2 = bootstrap_ci(A, n_resamples=20000)
    assert lo2 == pytest.approx(ref.confidence_interval.low, abs=0.004)
    assert hi2 == pytest.approx(ref.confidence_interval.high, abs=0.004)


def test_large_vectors_use_the_normal_limit_of_the_bootstrap():
    """Above BOOTSTRAP_UP_TO values the CI is mean +- z sd/sqrt(n); at the threshold it agrees with
    the percentile bootstrap (skewed values, the harder case) within 3% of the interval's width."""
    from metaft.leaderboard.stats import BOOTSTRAP_UP_TO, bootstrap_many

    x = np.random.default_rng(1).exponential(1.0, BOOTSTRAP_UP_TO)
    lo, hi = bootstrap_ci(x, n_resamples=4000)  # exactly at the threshold: resampled
    (nlo, nhi), = bootstrap_many([np.concatenate([x, [x.mean()]])], n_resamples=4000)  # one above: normal
    assert abs(nlo - lo) < 0.03 * (hi - lo) and abs(nhi - hi) < 0.03 * (hi - lo)


@pytest.mark.parametrize("a,b,why", [
    ([], [], "no paired tasks"),
    ([0.5], [0.4], "fewer than 2 paired tasks"),
    ([0.5, 0.6, 0.7], [0.5, 0.6, 0.7], "all paired differences are zero"),
    ([0.6, 0.7, 0.8], [0.5, 0.6, 0.7], "zero variance"),
])
def test_edge_cases_say_why_and_never_nan(a, b, why):
    c = paired_test(np.array(a, float), np.array(b, float), "metric", "x", "y")
    assert why in c.note and c.p_value is None


def test_missing_pairs_use_only_common_tasks_and_single_seed_works():
    df = frame({"baseline": list(B), "x": list(A)})
    df = df[~((df.algo == "x") & (df.task_index.isin([0, 1])))]  # x lacks two tasks
    comp = against_baseline(df, measures=("metric",))
    row = comp.iloc[0]
    assert row["n"] == 6
    assert row["p_value"] == pytest.approx(sps.ttest_rel(A[2:], B[2:]).pvalue)
    assert row["p_holm"] == row["p_value"]  # a family of one


def test_ranks_share_a_tie_group_when_not_significant():
    ranks = tie_group_ranks({"a": 0.9, "b": 0.85, "c": 0.5, "d": 0.49},
                            {frozenset("ab"): False, frozenset("ac"): True, frozenset("bc"): True,
                             frozenset("cd"): False, frozenset("ad"): True, frozenset("bd"): True})
    assert ranks == {"a": 1, "b": 1, "c": 3, "d": 3}
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.6, 30)
    df = frame({"baseline": list(base), "same": list(base + rng.normal(0, 0.01, 30)), "good": list(base + 0.2)})
    pairs = all_pairs(df, measures=("metric",))
    assert ranks_for(df, pairs) == {"good": 1, "baseline": 2, "same": 2}


def test_batched_bootstrap_equals_one_at_a_time():
    rng = np.random.default_rng(1)
    vectors = [rng.normal(size=40), rng.normal(size=40), rng.normal(size=7), [0.3]]
    many = bootstrap_many(vectors, n_resamples=999, chunk=100)
    for v, ci in zip(vectors, many):
        lo, hi = bootstrap_ci(v, n_resamples=999)
        assert ci == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))


def test_runs_of_one_algorithm_with_different_settings_are_never_averaged(tmp_path):
    """Two configurations of one algorithm on the same pairs (e.g. `suite tune` trials) are two
    candidates, each labelled by the settings that differ; a repeated run of one configuration
    still averages with its twin."""
    import json
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq
    from results_fixture import write_results

    from metaft.leaderboard.verdicts import verdicts
    from metaft.suite.results import atomic_write_table, load_results, run_schema, task_schema

    root = write_results(tmp_path / "r", n_tasks=16, seeds=(0,), algos=["baseline", "good"], hostile=False)
    for run_id, lr, fingerprint, shift in (("good-minilm-s0", 1e-4, "aaaa", 0.0),
                                           ("good-lr-minilm-s0", 1e-3, "bbbb", -0.3),
                                           ("good-twin-minilm-s0", 1e-4, "aaaa", 0.0)):
        folder = root / run_id
        if not folder.exists():
            shutil.copytree(root / "good-minilm-s0", folder)
        for name, schema in (("run.parquet", run_schema()), ("tasks.parquet", task_schema())):
            table = pq.read_table(folder / name).to_pandas().assign(run_id=run_id)
            if name == "run.parquet":  # one run written before runs recorded peft: the same as "none"
                table["config_fingerprint"] = fingerprint
                table["peft"] = None if run_id == "good-lr-minilm-s0" else "none"
            else:
                table["metric"] = table["metric"] + shift
            atomic_write_table(folder / name, pa.Table.from_pandas(table, schema=schema, preserve_index=False))
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest.update(run_id=run_id, config={"algo": "good", "seeds": [0], "algorithm": {"lr": lr}})
        (folder / "manifest.json").write_text(json.dumps(manifest))

    runs, tasks = load_results(root)
    assert runs.set_index("run_id")["variant"].fillna("").to_dict() == {
        "baseline-minilm-s0": "", "good-minilm-s0": "lr=0.0001", "good-lr-minilm-s0": "lr=0.001",
        "good-twin-minilm-s0": "lr=0.0001"}
    table = verdicts(tasks)
    assert set(table["candidate"]) == {"good [lr=0.0001]", "good [lr=0.001]"}
    diff = table.groupby("candidate")["mean_diff"].mean()
    assert diff["good [lr=0.0001]"] - diff["good [lr=0.001]"] == pytest.approx(0.3, abs=1e-9)
    assert (table.groupby("candidate")["n"].max() == 4).all()  # the twin averaged in: 4 tasks per dataset
