"""Paired significance tests, multiple-comparison correction, bootstrap CIs, effect sizes, ranks.

Comparisons are paired over identical meta-test tasks: a pair is the same
(model, episode-manifest fingerprint, protocol fingerprint, task index) under two
algorithms, so the seed, the task and the protocol (budgets, lr grid, max length, what
is trained) are held fixed; rows that differ in the protocol are never paired. Performance is compared with the paired t-test,
resource usage with the Wilcoxon signed-rank test (costs are skewed and
heavy-tailed). Holm-Bonferroni controls the family-wise error over each family of
comparisons. When a test cannot be run (too few pairs, all differences zero, no
pairs at all) the result says why instead of giving a NaN.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from metaft.suite.config import DEFAULT_RECIPE
from metaft.tasks.metrics import metric_name_for

PAIR_KEYS = ["model", "episodes_fingerprint", "protocol_fingerprint", "task_index"]
REFERENCES = ("baseline", "multitask")  # pretrained weights; trained on the union of the meta-training tasks
OWN_SUFFIX = " (own)"  # candidates evaluated with their own adaptation carry it in their name
ORACLE_SUFFIX = " (oracle)"  # hindsight rows: an upper bound that saw the query set, never ranked
PERFORMANCE = ("metric",)
# Tested costs are load-independent (the same on a busy or an idle machine). Seconds and GPU-hours
# are shown as measured but not tested: runs of different algorithms are not interleaved, so a
# difference in seconds can be another process's load. Steps-to-target is computed from the
# curves at analysis time (leaderboard.costs), never from the run-time column.
RESOURCES = ("ft_flops", "ft_tokens")
MEASURES = PERFORMANCE + RESOURCES
HIGHER_IS_BETTER = {"metric": True, "ft_flops": False, "ft_tokens": False, "ft_seconds": False,
                    "ft_gpu_hours": False}
ALPHA = 0.05


@dataclass
class Comparison:
    measure: str
    a: str
    b: str
    test: str
    n: int
    mean_a: float | None = None
    mean_b: float | None = None
    mean_diff: float | None = None  # a - b
    ci_low: float | None = None
    ci_high: float | None = None
    statistic: float | None = None
    p_value: float | None = None
    p_holm: float | None = None
    effect_size: float | None = None
    effect_name: str = ""
    significant: bool = False
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------- intervals
def t_intervals(vectors: Sequence[Sequence[float]], confidence: float = 0.95) -> list[tuple[float, float]]:
    """The t confidence interval of each vector's mean: the one interval the site and the CLI show
    for a mean or a mean paired difference (the verdicts' intervals are these too). The percentile
    bootstrap it replaced covered 79% at n = 4 and 90% at n = 8-12 (tests/test_leaderboard_costs.py
    measures >= 93% at n = 4 for this one)."""
    out = []
    for v in vectors:
        x = np.asarray(v, dtype=float)
        if len(x) < 2:
            out.append((float(x[0]), float(x[0])) if len(x) else (float("nan"), float("nan")))
            continue
        half = float(sps.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
        out.append((float(x.mean() - half), float(x.mean() + half)))
    return out


# ---------------------------------------------------------------------------- bootstrap
BOOTSTRAP_UP_TO = 2000  # above: the normal limit of the bootstrap distribution of the mean
def bootstrap_ci(values: Sequence[float], n_resamples: int = 9999, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean. Resample indices are drawn as
    ``rng.integers(0, n, size=(n_resamples, n))``, so a plain loop over the same draws
    reproduces it (up to floating-point rounding)."""
    return bootstrap_many([values], n_resamples, confidence, seed)[0]


def bootstrap_many(vectors: Sequence[Sequence[float]], n_resamples: int = 9999, confidence: float = 0.95,
                   seed: int = 0, chunk: int = 256) -> list[tuple[float, float]]:
    """:func:`bootstrap_ci` of many vectors at once. Vectors of equal length share the
    resample draws (the same ones each would get alone), turned into a count matrix so
    every resampled mean is one matrix product; rows are drawn in chunks to bound memory."""
    arrays = [np.asarray(v, dtype=float) for v in vectors]
    out: list[tuple[float, float]] = [(float("nan"), float("nan"))] * len(arrays)
    alpha = (1 - confidence) / 2
    by_length: dict[int, list[int]] = {}
    for i, x in enumerate(arrays):
        if len(x) == 1:
            out[i] = (float(x[0]), float(x[0]))
        elif len(x) > BOOTSTRAP_UP_TO and n_resamples > 0:
            # the bootstrap distribution of a mean of this many values is normal to within the
            # resampling noise (test: limits agree within 3% of the width at n = 2,000); drawing
            # n_resamples x n indices for 10,000-row vectors dominated a 100,000-row site build
            half = sps.norm.ppf(1 - alpha) * x.std() / np.sqrt(len(x))
            out[i] = (float(x.mean() - half), float(x.mean() + half))
        elif len(x) > 1 and n_resamples > 0:
            by_length.setdefault(len(x), []).append(i)
    for n, members in by_length.items():
        values = np.stack([arrays[i] for i in members], axis=1)  # n x k
        rng = np.random.default_rng(seed)
        means: list[np.ndarray] = []
        for start in range(0, n_resamples, chunk):
            rows = min(chunk, n_resamples - start)
            idx = rng.integers(0, n, size=(rows, n))
            counts = np.bincount((idx + n * np.arange(rows)[:, None]).ravel(), minlength=rows * n).reshape(rows, n)
            means.append(counts @ values / n)
        lo, hi = np.quantile(np.concatenate(means), [alpha, 1 - alpha], axis=0)  # n_resamples x k
        for j, i in enumerate(members):
            out[i] = (float(lo[j]), float(hi[j]))
    return out


# ---------------------------------------------------------------------------- tests
def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None entries are not part of the family)."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def paired_test(a: np.ndarray, b: np.ndarray, measure: str, name_a: str, name_b: str,
                n_resamples: int = 9999) -> Comparison:
    """t-test for performance, Wilcoxon signed-rank for resources; a - b differences."""
    test = "paired t" if measure in PERFORMANCE else "wilcoxon"
    c = Comparison(measure, name_a, name_b, test, n=len(a))
    if len(a) == 0:
        c.note = "no paired tasks (the two never ran on the same tasks)"
        return c
    d = a - b
    c.mean_a, c.mean_b, c.mean_diff = float(a.mean()), float(b.mean()), float(d.mean())
    if n_resamples:
        c.ci_low, c.ci_high = t_intervals([d])[0]
    if len(a) < 2:
        c.note = "fewer than 2 paired tasks"
        return c
    if np.all(d == 0):
        c.note = "all paired differences are zero"
        return c
    if test == "paired t":
        if np.std(d, ddof=1) <= 1e-12 * max(1.0, abs(float(d.mean()))):  # equal up to rounding
            c.note = "the paired differences are all equal (zero variance)"
            return c
        res = sps.ttest_rel(a, b)
        c.statistic, c.p_value = float(res.statistic), float(res.pvalue)
        c.effect_size, c.effect_name = float(d.mean() / d.std(ddof=1)), "Cohen's d_z"
    else:
        nonzero = d[d != 0]
        res = sps.wilcoxon(a, b)
        c.statistic, c.p_value = float(res.statistic), float(res.pvalue)
        ranks = sps.rankdata(np.abs(nonzero))
        w_plus, w_minus = ranks[nonzero > 0].sum(), ranks[nonzero < 0].sum()
        c.effect_size, c.effect_name = float((w_plus - w_minus) / (w_plus + w_minus)), "rank-biserial r"
    return c


# A candidate's identity is columns: the registered algorithm, the base model, and what else makes
# rows another candidate or another protocol (eval mode, variant, precision, adapter, recipe,
# protocol fingerprint). `prepare` keeps them and composes the display labels every analysis groups
# by (``algo``, ``model``) from them, always from the columns, never by parsing a label back.


def _suffix(mask: pd.Series, text: pd.Series | str) -> pd.Series:
    """``text`` where ``mask``, else ""; one vectorised string per row."""
    text = text if isinstance(text, pd.Series) else pd.Series(text, index=mask.index)
    return text.where(mask, "")


def labels(tasks: pd.DataFrame, across_recipes: bool = False) -> tuple[pd.Series, pd.Series]:
    """(candidate label, model label) of every row, from the identity columns: ``reptile (own)
    [lr=1e-3]``, ``intermediate (oracle)``; ``minilm (bf16) + lora + setfit``. In the labelled
    cross-recipe view the recipe moves from the model's label to the candidate's."""
    mode = tasks["eval_mode"].astype(str)
    algo = tasks["algorithm"].astype(str) + _suffix(mode == "own", OWN_SUFFIX)
    if "variant" in tasks:  # runs of one algorithm with different settings on the same pairs: never averaged
        variant = tasks["variant"]
        algo = algo + _suffix(variant.notna(), " [" + variant.astype(str) + "]")
    algo = algo + _suffix(mode == "hindsight", ORACLE_SUFFIX)
    model = tasks["base_model"].astype(str)
    if "precision" in tasks:  # bf16 is another protocol, labelled so the two are never read as one
        model = model + _suffix(tasks["precision"] == "bf16", " (bf16)")
    if "peft" in tasks:  # adapters are another way to fine-tune the model: shown as their own model
        model = model + _suffix(tasks["peft"] != "none", " + " + tasks["peft"].astype(str))
    if "recipe" in tasks:  # another recipe is another protocol: its own model, or named in the candidate
        other = _suffix(tasks["recipe"] != DEFAULT_RECIPE, " + " + tasks["recipe"].astype(str))
        algo, model = (algo + other, model) if across_recipes else (algo, model + other)
    return algo, model


def prepare(tasks: pd.DataFrame) -> pd.DataFrame:
    """Rows ready for pairing: the identity columns filled (rows of the first protocol, with no
    protocol fingerprint, get one per benchmark key, so they never pair with v2 rows; columns a row
    predates read as their defaults) and the labels composed from them (`labels`): an own-adaptation
    row is its own candidate, ``algo (own)``, never silently paired as if it were the shared mode.
    Idempotent and free the second time (the frame is marked), since every analysis calls it."""
    if tasks.attrs.get(PREPARED) and {"protocol_fingerprint", "eval_mode", "algorithm"} <= set(tasks.columns) and \
            ("metric_sign" in tasks or "metric_name" not in tasks):  # a column subset may carry the mark
        return tasks
    tasks = tasks.copy()
    if "algorithm" not in tasks:  # the raw identity, kept before the labels replace algo and model
        tasks["algorithm"] = tasks["algo"].astype(str)
        tasks["base_model"] = tasks["model"].astype(str)
    if "protocol_fingerprint" not in tasks:
        tasks["protocol_fingerprint"] = None
    legacy = tasks["protocol_fingerprint"].isna()
    bench = tasks["benchmark"].astype(str) if "benchmark" in tasks else pd.Series("v1", index=tasks.index)
    tasks.loc[legacy, "protocol_fingerprint"] = "legacy:" + bench[legacy]
    tasks["eval_mode"] = tasks["eval_mode"].fillna("shared") if "eval_mode" in tasks else "shared"
    for column, default in (("precision", "fp32"), ("peft", "none"), ("recipe", DEFAULT_RECIPE)):
        if column in tasks:
            tasks[column] = tasks[column].fillna(default).astype(str)
    algo, model = labels(tasks)
    for column, label in (("algo", algo), ("model", model)):  # as categorical as before: grouping 100,000
        if isinstance(tasks[column].dtype, pd.CategoricalDtype):  # rows on strings is several times slower
            label = label.astype("category")
        tasks[column] = label
    if "metric_name" in tasks:
        names = tasks["metric_name"].astype(str)
        if "task_type" in tasks:  # rows from before metrics were objects said "f1" for both F1s
            legacy = names == "f1"
            if legacy.any():
                names = names.where(~legacy, [metric_name_for("f1", t) for t in tasks["task_type"].astype(str)])
                tasks["metric_name"] = names
        tasks["metric_sign"] = names.map({n: metric_sign(n) for n in names.unique()}).astype(float)
    tasks.attrs[PREPARED] = True
    return tasks


PREPARED = "leaderboard.prepared"
ACROSS_RECIPES = "leaderboard.across_recipes"


def across_recipes(tasks: pd.DataFrame) -> pd.DataFrame:
    """The labelled cross-recipe view: every recipe's rows under their base model, the recipe in
    the candidate's name (``reptile + setfit``), paired by the protocol without the recipe
    (``protocol_base``), so "does SetFit beat the baseline?" and "does a meta-learned start beat
    the best plain recipe?" are tests. Only this view pairs across recipes (:func:`compare` refuses
    otherwise)."""
    tasks = prepare(tasks)
    if tasks.attrs.get(ACROSS_RECIPES) or "recipe" not in tasks:
        out = tasks.copy()
        out.attrs[ACROSS_RECIPES] = True
        return out
    tasks = tasks.copy()
    other = tasks["recipe"] != DEFAULT_RECIPE
    if other.any():
        for col in ("model", "algo", "protocol_fingerprint"):  # categoricals would refuse the new labels
            tasks[col] = tasks[col].astype(object)
        tasks["algo"], tasks["model"] = labels(tasks, across_recipes=True)
        if "protocol_base" in tasks:
            base = tasks.loc[other, "protocol_base"]
            tasks.loc[other & tasks["protocol_base"].notna(), "protocol_fingerprint"] = base.dropna()
    tasks.attrs[ACROSS_RECIPES] = True
    return tasks


def check_same_recipe(tasks: pd.DataFrame, pairs: Sequence[tuple[str, str]]) -> None:
    """An explicit pair of candidates that share no recipe is refused outside the labelled view."""
    from metaft.suite.foundation.errors import ConfigError

    if tasks.attrs.get(ACROSS_RECIPES) or "recipe" not in tasks or tasks["recipe"].nunique() < 2:
        return
    by_algo = tasks.groupby("algo", observed=True)["recipe"].agg(lambda r: set(r.astype(str)))
    for a, b in pairs:
        ra, rb = by_algo.get(a, set()), by_algo.get(b, set())
        if ra and rb and not ra & rb:
            raise ConfigError(f"{a} ({', '.join(sorted(ra))}) and {b} ({', '.join(sorted(rb))}) were fine-tuned by "
                              f"different recipes, another protocol; compare them as a labelled cross-recipe "
                              f"comparison (suite leaderboard compare --across-recipes, or stats.across_recipes)")


def metric_sign(name: str) -> float:
    """+1 where a larger value of the metric is better, -1 where smaller is. A metric that is not
    registered (the plugin that wrote the rows is not installed) is an error: guessing its
    direction would swap "better" and "worse" for an error rate."""
    from metaft.suite.foundation.errors import NotFoundError
    from metaft.tasks.metrics import METRICS

    if name not in METRICS:
        raise NotFoundError(f"the results use the metric {name!r}, which is not registered here, so its direction "
                            f"(larger or smaller is better) is unknown; install the plugin that provides it (a "
                            f"package declaring it under the 'metaft.metrics' entry points) and rerun")
    return -1.0 if not METRICS.get(name).higher_is_better else 1.0


def scope_sign(tasks: pd.DataFrame) -> float:
    """The direction of the metric shared by ``tasks`` (-1 only when every row's metric is
    smaller-is-better)."""
    if "metric_sign" not in tasks or tasks.empty:
        return 1.0
    return -1.0 if bool((tasks["metric_sign"] < 0).all()) else 1.0


KEY_COLUMNS = ("run_id", "algo", "model", "dataset", "benchmark", "episodes_fingerprint", "protocol_fingerprint",
               "metric_name", "task_type", "eval_mode")


def as_categories(tasks: pd.DataFrame) -> pd.DataFrame:
    """Key columns as categoricals: grouping and pairing 100,000 rows is several times faster
    than on Arrow-backed strings (measured by benchmarks/bench_leaderboard.py)."""
    tasks = tasks.copy()
    for col in KEY_COLUMNS:
        if col in tasks:
            tasks[col] = tasks[col].astype("category")
    return tasks


def split_oracles(tasks: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows that may be ranked and tested, hindsight oracle rows): an oracle chose its start on
    the query set it is scored on, so it bounds a selector and is never ranked with methods."""
    tasks = prepare(tasks)
    oracle = (tasks["eval_mode"] == "hindsight").to_numpy()
    return tasks[~oracle], tasks[oracle]


def _chosen_source(info) -> str | None:
    if not isinstance(info, str) or not info:
        return None
    return json.loads(info).get("source")


def selector_regret(tasks: pd.DataFrame) -> pd.DataFrame:
    """Per model, dataset and selecting algorithm: how far its chosen start falls below the
    hindsight oracle's best start on the same tasks (regret, in metric units and as a percentage
    of the oracle's metric, as Poth et al. 2021's Regret@1) and how often it chose the oracle's."""
    ranked, oracles = split_oracles(tasks)
    rows = []
    selector = labels(oracles.assign(eval_mode="shared"))[0]  # each oracle row's candidate: the selector itself
    for label in sorted(oracles["algo"].unique()):
        base = str(selector[(oracles["algo"] == label).to_numpy()].iloc[0])
        keys = PAIR_KEYS + ["dataset"]
        o = oracles[oracles["algo"] == label].set_index(keys)
        c = ranked[ranked["algo"] == base].set_index(keys)
        common = o.index.intersection(c.index)
        if not len(common):
            continue
        o, c = o.loc[common], c.loc[common]
        for (model, dataset), idx in pd.Series(range(len(common)), index=common).groupby(level=["model", "dataset"]):
            ok, ck = o.iloc[idx.values], c.iloc[idx.values]
            regret = ok["metric"].to_numpy() - ck["metric"].to_numpy()
            best = ok["metric"].to_numpy()
            # a hit: the selected source is one of the oracle's best (ties count, e.g. every start reaching 1.0)
            finals = ok["adapt_info"].map(lambda s: json.loads(s)["final_metric"] if isinstance(s, str) else {})
            same = [f.get(src, -np.inf) >= max(f.values(), default=np.inf) - 1e-12
                    for f, src in zip(finals, ck["adapt_info"].map(_chosen_source))]
            rows.append({"model": model, "dataset": dataset, "algo": base, "n": len(regret),
                         "oracle_metric": float(best.mean()), "selected_metric": float(ck["metric"].mean()),
                         "regret": float(regret.mean()),
                         "regret_pct": float(np.mean(np.where(best > 0, regret / np.where(best > 0, best, 1), 0)) * 100),
                         "picked_oracle_source": float(np.mean(same))})
    return pd.DataFrame(rows)


def unpaired_reason(tasks: pd.DataFrame, a: str, b: str) -> str:
    """Why two algorithms have no paired tasks: different protocols, or never the same tasks."""
    keys = [k for k in PAIR_KEYS if k != "protocol_fingerprint"]
    ka = tasks[tasks["algo"] == a].set_index(keys)["protocol_fingerprint"]
    kb = tasks[tasks["algo"] == b].set_index(keys)["protocol_fingerprint"]
    common = ka.index.intersection(kb.index)
    if len(common):
        return (f"not paired: on the same {len(common)} tasks their rows differ in the protocol fingerprint "
                f"(benchmark version, budgets, lr grid, max length or what is trained); rerun one of them "
                f"with the other's protocol")
    return "no paired tasks (the two never ran on the same tasks)"


def _scope(tasks: pd.DataFrame, model: str | None, dataset: str | None) -> pd.DataFrame:
    if "protocol_fingerprint" not in tasks or tasks["protocol_fingerprint"].isna().any():
        tasks = prepare(tasks)
    if model is not None:
        tasks = tasks[tasks["model"] == model]
    if dataset is not None:
        tasks = tasks[tasks["dataset"] == dataset]
    return tasks


def wide(tasks: pd.DataFrame, measure: str) -> pd.DataFrame:
    """One column per algorithm, one row per paired task (repeated runs of a pair are averaged)."""
    return wide_many(tasks, [measure])[measure]


def wide_many(tasks: pd.DataFrame, measures: Sequence[str]) -> dict[str, pd.DataFrame]:
    """`wide` for several measures from one grouping (the grouping is most of the cost)."""
    if "protocol_fingerprint" not in tasks or tasks["protocol_fingerprint"].isna().any():
        tasks = prepare(tasks)
    measures = list(dict.fromkeys(measures))
    missing = {m: np.nan for m in measures if m not in tasks}  # never recorded: "no values recorded"
    if missing:
        tasks = tasks.assign(**missing)
    grouped = tasks.groupby(PAIR_KEYS + ["algo"], observed=True, sort=False)[measures].mean()
    return {m: grouped[m].unstack("algo") for m in measures}


def paired_values(tasks: pd.DataFrame, measure: str, a: str, b: str, model: str | None = None,
                  dataset: str | None = None, table: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
    w = table if table is not None else wide(_scope(tasks, model, dataset), measure)
    if a not in w.columns or b not in w.columns:
        return np.array([]), np.array([])
    va, vb = w[a].to_numpy(float), w[b].to_numpy(float)  # numpy, not a DataFrame dropna: 100x faster
    keep = ~(np.isnan(va) | np.isnan(vb))
    return va[keep], vb[keep]


def compare(tasks: pd.DataFrame, pairs: Iterable[tuple[str, str]], measures: Sequence[str] = MEASURES,
            model: str | None = None, dataset: str | None = None, n_resamples: int = 9999) -> pd.DataFrame:
    """Every (a, b) in ``pairs`` on every measure; Holm over the pairs within each measure. Pairs
    under several protocols are tested per protocol (``a (protocol xxxxxxxx)``), never pooled.
    CIs of the mean difference are t intervals (:func:`t_intervals`); ``n_resamples=0`` skips
    them (e.g. when only p-values are needed)."""
    scoped = _scope(tasks, model, dataset)
    pairs = list(pairs)
    check_same_recipe(scoped, pairs)
    rows: list[Comparison] = []
    tables = wide_many(scoped, measures)
    for measure in measures:
        table = tables[measure]
        protocols = np.asarray(table.index.get_level_values("protocol_fingerprint")).astype(str)
        values, family = [], []
        for a, b in pairs:
            va, vb = (table[a].to_numpy(float), table[b].to_numpy(float)) if a in table and b in table else \
                (np.full(len(table), np.nan), np.full(len(table), np.nan))
            both = ~(np.isnan(va) | np.isnan(vb))
            present = pd.unique(protocols[both])
            for protocol in present if len(present) > 1 else [None]:  # separate studies, never pooled
                keep = both if protocol is None else both & (protocols == protocol)
                label = a if protocol is None else f"{a} (protocol {protocol[:8]})"
                values.append((va[keep], vb[keep]))
                c = paired_test(va[keep], vb[keep], measure, label, b, n_resamples=0)
                if c.n == 0:
                    recorded = [x for x in (a, b) if x in table.columns and table[x].notna().any()]
                    c.note = (unpaired_reason(scoped, a, b) if len(recorded) == 2 or measure == "metric" else
                              f"no {measure} values recorded for {' and '.join(x for x in (a, b) if x not in recorded)}")
                family.append(c)
        for c, ci in zip(family, t_intervals([va - vb for va, vb in values]) if n_resamples else
                         [(None, None)] * len(values)):
            if c.n:
                c.ci_low, c.ci_high = ci
        for c, p in zip(family, holm([c.p_value for c in family])):
            c.p_holm = p
            c.significant = p is not None and p < ALPHA
        rows += family
    out = pd.DataFrame([c.to_dict() for c in rows], columns=list(Comparison.__dataclass_fields__))
    if model is not None:
        out.insert(0, "model", model)
    if dataset is not None:
        out.insert(1 if model is not None else 0, "dataset", dataset)
    return out


def against_baseline(tasks: pd.DataFrame, baseline: str = "baseline", **kw) -> pd.DataFrame:
    """Every other algorithm against one reference (Holm over that family)."""
    algos = sorted(a for a in tasks["algo"].unique() if a != baseline)
    return compare(tasks, [(a, baseline) for a in algos], **kw)


def references_in(tasks: pd.DataFrame, first: str = "baseline") -> list[str]:
    """The references present: ``first`` (e.g. --baseline), then the others of REFERENCES."""
    present = set(tasks["algo"].unique())
    return [r for r in dict.fromkeys((first,) + REFERENCES) if r in present]


def paired_scopes(tasks: pd.DataFrame, split_protocols: bool = True
                  ) -> Iterator[tuple[str, str, str, pd.DataFrame]]:
    """The one walk over what is compared: ``(model, dataset, label, rows)`` per model and dataset,
    sorted, and with ``split_protocols`` per protocol too (pairs under different protocols are
    separate studies, never pooled; ``label`` is " (protocol abcd1234)" then, else ""). Verdicts,
    costs and the planner all iterate this."""
    for (model, dataset), scope in tasks.groupby(["model", "dataset"], sort=True, observed=True):
        protocols = scope["protocol_fingerprint"].astype(str)
        distinct = pd.unique(protocols) if split_protocols else [None]
        for protocol in distinct:
            if protocol is None or len(distinct) == 1:
                yield str(model), str(dataset), "", scope
            else:
                yield str(model), str(dataset), f" (protocol {protocol[:8]})", scope[(protocols == protocol).to_numpy()]


def reference_families(candidates: Iterable[str], references: Iterable[str]) -> Iterator[tuple[str, list[str]]]:
    """``(reference, its candidates)`` for every reference present among ``candidates``: the family
    Holm runs over (every other candidate, sorted)."""
    present = set(candidates)
    for ref in references:
        if ref in present:
            yield ref, sorted(c for c in present if c != ref)


def all_pairs(tasks: pd.DataFrame, **kw) -> pd.DataFrame:
    return compare(tasks, list(combinations(sorted(tasks["algo"].unique()), 2)), **kw)


def tie_group_ranks(means: dict[str, float], significant: dict[frozenset, bool], higher_is_better: bool = True
                    ) -> dict[str, int]:
    """Rank by mean; an algorithm whose difference from the leader of the current tie group is
    not significant shares that group's rank (as Meta-Dataset's leaderboard does)."""
    order = sorted(means, key=lambda a: means[a], reverse=higher_is_better)
    ranks: dict[str, int] = {}
    leader = None
    for position, algo in enumerate(order, start=1):
        if leader is not None and not significant.get(frozenset((leader, algo)), False):
            ranks[algo] = ranks[leader]
        else:
            ranks[algo], leader = position, algo
    return ranks


def ranks_for(tasks: pd.DataFrame, pairs_table: pd.DataFrame, measure: str = "metric") -> dict[str, int]:
    """Tie-group ranks by mean; for the metric, in each row's metric direction (a smaller-is-better
    metric, e.g. an error rate, ranks its smallest mean first)."""
    values = tasks[measure]
    higher = HIGHER_IS_BETTER[measure]
    if measure == "metric" and "metric_sign" in tasks:
        values, higher = values * tasks["metric_sign"], True
    means = values.groupby(tasks["algo"], observed=True).mean().to_dict()
    sub = pairs_table[pairs_table["measure"] == measure]
    significant = {frozenset((r.a, r.b)): bool(r.significant) for r in sub.itertuples()}
    return tie_group_ranks(means, significant, higher)
