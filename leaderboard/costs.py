"""Cost at equal quality, from quality at pre-declared budgets (never a stopping point chosen on
the query set).

Every point of a stored learning curve is "quality after b steps" with b fixed before the run
(the log-spaced evaluation schedule), so comparing two methods at a budget uses nothing chosen
on the queries. For a candidate C and a reference R on paired tasks (the test unit is the task
with one seed, the per-seed mean with several, as in the verdicts):

* **The same budget is the same compute.** The budgets are the compute points g at which either
  side was evaluated (steps x that side's FLOPs per step) below R's full-budget compute; each
  side is read at g as its value at its largest evaluated step whose compute does not exceed g
  (its final value past its own budget).
* **"C is cheaper than R"** needs all of (each a one-sided paired t-test at alpha):
  (i) C at its full budget is non-inferior to R at R's full budget (mean difference > -margin):
  the recipe as declared is at equal quality, so a curve that peaks early and ends lower is
  never cheaper; and, for at least one budget b below R's full budget,
  (ii) C at g is better than R at g (difference > 0): a flat curve of R's own, which is within
  the margin of its final value long before the budget, is no evidence that C is cheaper; and
  (iii) C at g is non-inferior to R's full-budget quality (difference > -margin).
  (ii) and (iii) are one intersection-union test per budget (p = the larger p); the budgets are
  one family under Holm; (i) is a further intersection. The claim's error is at most alpha. The
  cheapest budget Holm keeps is reported. **"dearer"** is the same test with the roles swapped.
* **Compute ratio** = R's compute at its *sufficient* budget over C's compute at C's; a side's
  sufficient budget is its smallest budget from which on (at it and every larger budget) it is
  non-inferior to R's full-budget quality (the same one-sided test; R is at its own full budget),
  each compute from the side's own FLOPs per step; with a
  percentile bootstrap interval over the test units (the sufficient budgets re-chosen in every
  resample). Saved FLOPs per task = the difference of the two computes.
* **Up-front cost** (meta-training plus lr selection, per run) amortized over N downstream tasks:
  total per task = up-front / N + fine-tuning at the sufficient budget; the ratio at N = 10, 100,
  1,000 and the break-even N = extra up-front / saved FLOPs per task come with the same bootstrap
  interval. "never" only when the interval says so (even its optimistic end saves nothing).

Steps-to-target (the first evaluated step at the reference's final value, per task) is an
oracle stopping point: it is kept as a run-time column for inspection and never drives a
verdict or a break-even here.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from . import figures, stats

AMORTIZE_OVER = (10, 100, 1000)  # downstream tasks the up-front cost is spread over


@dataclass
class CurveSide:
    """One side's curves on its own evaluation grid: ``values`` is units x len(grid), every row
    carried forward after its budget ends; FLOPs and tokens per fine-tuning step."""

    grid: np.ndarray
    values: np.ndarray
    flops_per_step: float
    tokens_per_step: float = 0.0
    upfront: float = 0.0  # FLOPs before the first task (meta-training + lr selection), per run
    fixed_flops: float = 0.0  # per task whatever the step: a recipe's head (support forward pass)

    @property
    def full(self) -> np.ndarray:
        return self.values[:, -1]

    def compute(self, step: float) -> float:
        return self.fixed_flops + float(step) * self.flops_per_step

    @property
    def grid_compute(self) -> np.ndarray:
        """The compute of each evaluated step (:func:`compute_at`)."""
        return compute_at(self.grid, self.flops_per_step, self.fixed_flops)

    def at_compute(self, g: np.ndarray) -> np.ndarray:
        """units x len(g): the value at the largest evaluated step whose compute is <= g."""
        own = self.grid_compute
        idx = np.clip(np.searchsorted(own, np.asarray(g, dtype=float) * (1 + 1e-9), side="right") - 1, 0,
                      len(self.grid) - 1)
        return self.values[:, idx]


def compute_at(steps, per_step, fixed=0.0):
    """FLOPs to reach ``steps``: a recipe's fixed head cost plus the steps' (the one cost model of
    the verdicts, the curves and the frontier; fixed is 0 for the finetune recipe)."""
    return fixed + np.asarray(steps, dtype=float) * per_step


def flops_model(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(FLOPs per step, fixed FLOPs) per row: ``ft_flops`` holds the head's ``head_flops``."""
    fixed = rows["head_flops"].fillna(0).to_numpy(float) if "head_flops" in rows else np.zeros(len(rows))
    per_step = (rows["ft_flops"].fillna(0).to_numpy(float) - fixed) / rows["ft_steps"].clip(lower=1).to_numpy(float)
    return per_step, fixed


@dataclass
class CostResult:
    verdict: str = "not tested"
    note: str = ""
    n: int = 0
    unit: str = "tasks"
    p_cheaper: float | None = None
    p_dearer: float | None = None
    cheaper_at: float | None = None  # smallest compute budget keeping the claim, over the reference's full budget
    dearer_at: float | None = None  # the same for the mirror claim, over the candidate's full budget
    sufficient_reference: float | None = None  # steps
    sufficient_candidate: float | None = None  # steps; None: never non-inferior to the reference's final
    compute_ratio: float | None = None
    compute_ratio_lo: float | None = None
    compute_ratio_hi: float | None = None
    saved_flops_per_task: float | None = None
    saved_flops_lo: float | None = None
    saved_flops_hi: float | None = None
    saved_tokens_per_task: float | None = None
    extra_upfront_flops: float = 0.0
    break_even_tasks: float | None = None
    break_even_lo: float | None = None
    break_even_hi: float | None = None
    amortized: dict = field(default_factory=dict)  # N -> (ratio, lo, hi)


def one_sided_p(d: np.ndarray, delta: float) -> np.ndarray:
    """p of the one-sided paired t-test of mean(d) > delta, per column of ``d`` (units x k). A
    column without variance is decided by its mean (p 0 above delta, 1 otherwise)."""
    d = np.asarray(d, dtype=float)
    n = d.shape[0]
    mean = d.mean(0)
    sd = d.std(0, ddof=1) if n > 1 else np.zeros(d.shape[1:])
    flat = sd <= 1e-12 * np.maximum(1.0, np.abs(mean))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (mean - delta) / (sd / math.sqrt(n))
    p = sps.t.sf(t, max(n - 1, 1))
    return np.where(flat, np.where(mean > delta + 1e-12, 0.0, 1.0), p)


def cheaper_test(a: CurveSide, b: CurveSide, margin: float, alpha: float = stats.ALPHA
                 ) -> tuple[float, float | None]:
    """(p of "a is cheaper than b", the smallest compute budget at which Holm keeps the claim, as a
    fraction of b's full-budget compute, or None). The budgets are every evaluated compute point
    of either side below b's full-budget compute; both sides are read there."""
    full = b.compute(b.grid[-1])
    budgets = np.union1d(a.grid_compute, b.grid_compute)
    budgets = budgets[budgets < full * (1 - 1e-9)]
    if not len(budgets):
        return 1.0, None
    p_gate = float(one_sided_p((a.full - b.full)[:, None], -margin)[0])
    a_at, b_at = a.at_compute(budgets), b.at_compute(budgets)
    p_better = one_sided_p(a_at - b_at, 0.0)
    p_sufficient = one_sided_p(a_at - b.full[:, None], -margin)
    holm = np.array(stats.holm(list(np.maximum(p_better, p_sufficient))), dtype=float)
    kept = np.flatnonzero(holm < alpha)
    p = max(p_gate, float(holm.min()))
    return p, (float(budgets[kept.min()] / full) if len(kept) and p_gate < alpha else None)


def _from_here_on(ok: np.ndarray) -> np.ndarray:
    """Per row, the first budget from which every larger budget is non-inferior too (-1: none):
    a curve that touches the target at 4 steps and ends below it is not sufficient at 4."""
    stays = np.flip(np.logical_and.accumulate(np.flip(ok, 1), 1), 1)
    return np.where(stays.any(1), stays.argmax(1), -1)


def _sufficient_many(weights: np.ndarray, d: np.ndarray, margin: float, alpha: float) -> np.ndarray:
    """`sufficient_index` for every bootstrap resample at once: ``weights`` is resamples x units
    (counts / n), ``d`` units x budgets. Returns indices, -1 where none is sufficient."""
    n = d.shape[0]
    mean = weights @ d
    var = (weights @ d ** 2 - mean ** 2) * n / max(n - 1, 1)
    sd = np.sqrt(np.clip(var, 0, None))
    flat = sd <= 1e-12 * np.maximum(1.0, np.abs(mean))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (mean + margin) / (sd / math.sqrt(n))
    ok = np.where(flat, mean > -margin + 1e-12, sps.t.sf(t, max(n - 1, 1)) < alpha)
    return _from_here_on(ok)


def _interval(x: np.ndarray) -> tuple[float, float]:
    lo, hi = np.quantile(x, [stats.ALPHA / 2, 1 - stats.ALPHA / 2], method="inverted_cdf")
    return float(lo), float(hi)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.where(num > 0, np.inf, 1.0))


def break_even(extra_upfront: float, saved_per_task: float) -> float:
    """Downstream tasks after which the extra up-front FLOPs are paid back (inf: never)."""
    if saved_per_task > 0:
        return max(extra_upfront, 0.0) / saved_per_task
    return 0.0 if extra_upfront <= 0 and saved_per_task >= 0 else math.inf


def cost_verdict(cand: CurveSide, ref: CurveSide, margin: float, alpha: float = stats.ALPHA, n_resamples: int = 1999,
                 seed: int = 0, unit: str = "tasks", n_seeds: int = 1) -> CostResult:
    """The cost claim of ``cand`` against ``ref`` (units are rows of both sides' values)."""
    from .verdicts import MIN_SEEDS, MIN_TASKS

    r = CostResult(n=len(ref.values), unit=unit, extra_upfront_flops=cand.upfront - ref.upfront)
    if r.n < 2:
        r.note = "fewer than 2 paired units"
        return r
    r.p_cheaper, r.cheaper_at = cheaper_test(cand, ref, margin, alpha)
    r.p_dearer, r.dearer_at = cheaper_test(ref, cand, margin, alpha)
    if unit == "seeds" and n_seeds < MIN_SEEDS:
        r.verdict = f"inconclusive (fewer than {MIN_SEEDS} seeds)"
    elif unit == "tasks" and r.n < MIN_TASKS:
        r.verdict = f"inconclusive (fewer than {MIN_TASKS} tasks)"
    elif r.cheaper_at is not None and r.dearer_at is None:
        r.verdict = f"cheaper (at {r.cheaper_at:.0%} of the reference's fine-tuning FLOPs)"
    elif r.dearer_at is not None and r.cheaper_at is None:
        r.verdict = f"dearer (the reference at {r.dearer_at:.0%} of its fine-tuning FLOPs)"
    else:
        r.verdict = "no cost difference shown"
    _ratios(r, cand, ref, margin, alpha, n_resamples, seed)
    return r


def _ratios(r: CostResult, cand: CurveSide, ref: CurveSide, margin: float, alpha: float, n_resamples: int,
            seed: int) -> None:
    """Sufficient budgets, the compute ratio, FLOPs saved, break-even and amortized ratios, with
    percentile bootstrap intervals over the units."""
    target = ref.full[:, None]
    d_ref, d_cand = ref.values - target, cand.values - target
    n = d_ref.shape[0]
    chunks = [np.full((1, n), 1.0 / n)]  # the sample itself first, then resamples in chunks (bounded memory)
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, 256):
        rows = min(256, n_resamples - start)
        idx = rng.integers(0, n, size=(rows, n)) + n * np.arange(rows)[:, None]
        chunks.append(np.bincount(idx.ravel(), minlength=rows * n).reshape(rows, n) / n)
    i_ref = np.concatenate([_sufficient_many(w, d_ref, margin, alpha) for w in chunks])
    i_cand = np.concatenate([_sufficient_many(w, d_cand, margin, alpha) for w in chunks])
    ref_compute = np.where(i_ref >= 0, ref.grid_compute[np.maximum(i_ref, 0)], np.nan)
    reached = i_cand >= 0
    cand_compute = np.where(reached, cand.grid_compute[np.maximum(i_cand, 0)], np.inf)
    ratio = np.where(reached, _ratio(ref_compute, cand_compute), 0.0)
    saved = np.where(reached, ref_compute - np.where(reached, cand_compute, 0.0), -np.inf)
    r.sufficient_reference = float(ref.grid[i_ref[0]]) if i_ref[0] >= 0 else None
    r.sufficient_candidate = float(cand.grid[i_cand[0]]) if reached[0] else None
    r.compute_ratio, r.saved_flops_per_task = float(ratio[0]), float(saved[0])
    if r.sufficient_candidate is not None:
        tok = cand.tokens_per_step * r.sufficient_candidate
        r.saved_tokens_per_task = float(ref.tokens_per_step * (r.sufficient_reference or 0) - tok)
    r.break_even_tasks = break_even(r.extra_upfront_flops, r.saved_flops_per_task)
    for big_n in AMORTIZE_OVER:
        total_ref = ref.upfront / big_n + ref_compute
        total_cand = np.where(reached, cand.upfront / big_n + np.where(reached, cand_compute, 0.0), np.inf)
        amortized = np.where(reached, _ratio(total_ref, total_cand), 0.0)
        r.amortized[big_n] = (float(amortized[0]),) + (_interval(amortized[1:]) if n_resamples else (None, None))
    if n_resamples:
        r.compute_ratio_lo, r.compute_ratio_hi = _interval(ratio[1:])
        r.saved_flops_lo, r.saved_flops_hi = _interval(saved[1:])
        r.break_even_lo = break_even(r.extra_upfront_flops, r.saved_flops_hi)
        r.break_even_hi = break_even(r.extra_upfront_flops, r.saved_flops_lo)


# ---------------------------------------------------------------------------- from result rows
def _side(rows: pd.DataFrame, steps_column: str, seeds: np.ndarray, upfront: dict[str, float]
          ) -> tuple[CurveSide, str, int]:
    steps = list(rows[steps_column])
    grid = np.array(sorted(set().union(*steps)), dtype=float)
    values = figures._on_grid(steps, list(rows["curve_metric"]), grid)
    ft_steps = rows["ft_steps"].clip(lower=1).to_numpy(float)
    per_step, fixed = flops_model(rows)
    flops = float(np.nanmean(per_step))
    tokens = float(np.nanmean(rows["ft_tokens"].fillna(0).to_numpy(float) / ft_steps)) if "ft_tokens" in rows else 0.0
    from .verdicts import per_unit

    (values,), unit, n_seeds = per_unit([values], seeds)
    run_upfront = float(np.mean([upfront.get(x, 0.0) for x in pd.unique(rows["run_id"])])) if len(rows) else 0.0
    return CurveSide(grid, values, flops, tokens, run_upfront, float(np.nanmean(fixed))), unit, n_seeds


def amortization(tasks: pd.DataFrame, runs: pd.DataFrame | None, references: list[str] | None = None,
                 margin: float | None = None, n_resamples: int = 1999) -> pd.DataFrame:
    """Per model, dataset (and protocol), candidate and reference: the cost verdict, sufficient
    budgets, compute ratio, FLOPs saved, break-even and amortized ratios, each with its interval."""
    from .verdicts import DEFAULT_MARGIN

    margin = DEFAULT_MARGIN if margin is None else margin
    tasks = figures.with_schedules(stats.prepare(tasks))
    upfront = upfront_flops(runs)
    out = []
    for model, dataset, suffix, sub in stats.paired_scopes(tasks):
        out += _scope_rows(sub, model, dataset, suffix, references, upfront, margin, n_resamples)
    return pd.DataFrame(out)


def _scope_rows(sub: pd.DataFrame, model, dataset, suffix: str, references, upfront: dict, margin: float,
                n_resamples: int) -> list[dict]:
    by_algo = {str(a): df for a, df in sub.groupby("algo", sort=True, observed=True)}
    sign = stats.scope_sign(sub)
    out = []
    for ref, candidates in stats.reference_families(by_algo, references if references is not None
                                                    else stats.references_in(sub)):
        for cand in candidates:
            joined = by_algo[cand].merge(by_algo[ref], on=stats.PAIR_KEYS, suffixes=("", "_ref"))
            if joined.empty:
                continue
            seeds = joined["episodes_fingerprint"].astype(str).to_numpy()
            c, unit, n_seeds = _side(joined, "schedule", seeds, upfront)
            ref_rows = joined[[k for k in joined.columns if k.endswith("_ref")]].rename(columns=lambda k: k[:-4])
            r, _, _ = _side(ref_rows, "schedule", seeds, upfront)
            c.values, r.values = sign * c.values, sign * r.values  # oriented: larger is better
            note = ""
            recorded = [x.flops_per_step > 0 or x.fixed_flops > 0 for x in (c, r)]
            if not all(recorded):  # FLOPs not recorded: budgets in steps
                c.flops_per_step = r.flops_per_step = 1.0
                c.fixed_flops = r.fixed_flops = 0.0
                note = "FLOPs per step not recorded: budgets compared in steps"
            res = cost_verdict(c, r, margin, n_resamples=n_resamples, unit=unit, n_seeds=n_seeds)
            res.note = "; ".join(x for x in (res.note, note) if x)
            row = {"model": model, "dataset": dataset, "candidate": cand + suffix, "reference": ref,
                   "margin": margin, "flops_per_step_candidate": c.flops_per_step,
                   "flops_per_step_reference": r.flops_per_step, "budget": float(r.grid[-1])}
            row.update({k: v for k, v in asdict(res).items() if k != "amortized"})
            for big_n in AMORTIZE_OVER:  # present in every row, None where the test did not run
                x, lo, hi = res.amortized.get(big_n, (None, None, None))
                row.update({f"ratio_at_{big_n}": x, f"ratio_at_{big_n}_lo": lo, f"ratio_at_{big_n}_hi": hi})
            out.append(row)
    return out


def upfront_flops(runs: pd.DataFrame | None) -> dict[str, float]:
    """Per run: meta-training plus lr-selection FLOPs (what a method pays before its first task)."""
    if runs is None or runs.empty:
        return {}
    total = pd.Series(0.0, index=runs.index)
    for col in ("meta_flops", "selection_flops"):
        if col in runs:
            total += runs[col].fillna(0.0).astype(float)
    return dict(zip(runs["run_id"], total))


def _num(x, fmt: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return format(x, fmt)


def break_even_text(x, lo, hi) -> str:
    """The break-even N with its interval; "never" only when even the optimistic end is never."""
    if lo is not None and not (isinstance(lo, float) and math.isnan(lo)):
        if math.isinf(lo):
            return "never"
        return f"{_num(x)} [{_num(lo)}, {'∞' if math.isinf(hi) else _num(hi)}]"
    return "never" if x is None or math.isinf(x) else _num(x)


COLUMNS = ["dataset", "candidate", "vs", "n", "cost verdict", "p (cheaper)", "p (dearer)", "sufficient steps (cand./ref.)",
           "compute ratio [95%]", "FLOPs saved/task [95%]", "extra up-front FLOPs", "break-even tasks [95%]",
           "ratio at N=100 [95%]"]


def cost_cells(r) -> list[str]:
    """One row of the cost table as text (shared by the terminal and the site). "n.r.": not
    reached (the candidate is never non-inferior to the reference's final quality), in the sample
    or at an end of the interval."""
    suff = f"{_num(r.sufficient_candidate, 'g')}/{_num(r.sufficient_reference, 'g')}"
    return [r.dataset, r.candidate, r.reference, f"{r.n} {r.unit}", r.verdict, _num(r.p_cheaper, ".3g"),
            _num(r.p_dearer, ".3g"), suff, ratio_text(r.compute_ratio, r.compute_ratio_lo, r.compute_ratio_hi),
            saved_text(r.saved_flops_per_task, r.saved_flops_lo, r.saved_flops_hi), _num(r.extra_upfront_flops),
            break_even_text(r.break_even_tasks, r.break_even_lo, r.break_even_hi),
            ratio_text(r.ratio_at_100, r.ratio_at_100_lo, r.ratio_at_100_hi)]


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def ratio_text(x, lo, hi) -> str:
    """A compute ratio with its interval; 0 means not reached ("n.r.")."""
    def one(v):
        return "–" if _missing(v) else "n.r." if v == 0 else _num(v)
    return one(x) + ("" if _missing(lo) else f" [{one(lo)}, {one(hi)}]")


def saved_text(x, lo, hi) -> str:
    """FLOPs saved per task with its interval; -inf means not reached ("n.r.")."""
    def one(v):
        return "–" if _missing(v) else "n.r." if math.isinf(v) and v < 0 else _num(v)
    return one(x) + ("" if _missing(lo) else f" [{one(lo)}, {one(hi)}]")


def format_amortization(table: pd.DataFrame) -> str:
    from metaft.suite.table import format_table_by_model

    rows = [cost_cells(r) for r in table.itertuples()]
    return format_table_by_model(table["model"], COLUMNS, rows, "lllrlrrrrrrrr")
