"""Static leaderboard site: HTML + one copy of plotly.js, works from file:// with no network.

Everything shown comes from result files that other people may submit, so pages are
rendered by Jinja2 templates (``leaderboard/templates``) with autoescape on: this module
builds plain data (tables of :class:`Cell`), the templates turn it into HTML. The only
markup that bypasses escaping is the plot snippet, whose embedded JSON escapes ``<``,
``>`` and ``&`` (:func:`figures.figure_json`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from metaft.suite import __version__
from metaft.suite.foundation.errors import ConfigError
from metaft.suite.paths import check_replaceable, replace_folder
from metaft.suite.results import Manifests, load_manifests, load_results

from . import costs, figures, stats, verdicts

CONTAMINATION_NOTE = (
    "Contamination: the packaged encoder all-MiniLM-L6-v2 was trained (sentence-transformers' 1B-pair "
    "corpus) on data that includes Natural Questions and SQuAD 2.0 question-answer pairs, so absolute QA "
    "numbers for that encoder are inflated; comparisons between algorithms on the same encoder remain paired.")
QA_HEAD_NOTE = (
    "References: baseline starts from the pretrained weights, so its QA head is untrained (random) when a QA "
    "task begins; multitask trains on the union of the meta-training tasks first, so its QA head (and every "
    "meta-learner's) has been trained on the meta-training QA data. On QA, 'vs multitask' is the like-for-like "
    "comparison.")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
header{background:#1d2330;color:#fff;padding:14px 28px}header a{color:#9cc3ff;margin-right:14px}
main{padding:18px 28px;max-width:1400px}h1{font-size:22px;margin:0}h2{font-size:18px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px;background:#fff}
th,td{border:1px solid #dde1e6;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#f0f2f5}td.l,th.l{text-align:left}.ci{color:#6b7280;font-size:11px}
.sig-better{color:#0a7d32;font-weight:600}.sig-worse{color:#b42318;font-weight:600}.ns{color:#6b7280}
.plot{background:#fff;border:1px solid #dde1e6;margin:10px 0}.grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.note{color:#6b7280;font-size:12px}pre{background:#fff;border:1px solid #dde1e6;padding:10px;overflow:auto;font-size:12px}
"""


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text))[:120] or "_"


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, (float, np.floating)) else str(x)


@dataclass
class SiteData:
    runs: pd.DataFrame
    tasks: pd.DataFrame  # rows that are ranked and tested
    manifests: Manifests  # read lazily; a few cached fields of all of them in `summary()`
    oracles: pd.DataFrame | None = None  # hindsight rows: bounds, shown apart, never ranked


def load_site_data(dirs: list[str], skip_corrupt: bool = False) -> SiteData:
    runs, tasks = load_results(*dirs, skip_corrupt=skip_corrupt)
    if tasks.empty:
        raise ConfigError(f"no complete runs under {', '.join(map(str, dirs))}; run `suite run` first")
    tasks, oracles = stats.split_oracles(tasks)  # prepares (labels) the rows too
    tasks = figures.with_schedules(stats.as_categories(tasks))  # schedules once, for curves and costs
    return SiteData(runs, tasks, load_manifests(*dirs), oracles)


@dataclass
class Cell:
    """One table cell: ``text`` (escaped), an optional CSS class, a span class with a tooltip
    (e.g. a significance mark), a grey CI suffix, and links (label, href)."""

    text: object = ""
    cls: str = ""
    span: str = ""
    title: str = ""
    ci: str = ""
    links: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Table:
    cls: str
    head: list[str]
    rows: list[list[Cell]]
    left_head: tuple[str, ...] = ()
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Section:
    heading: str
    notes: list[str]
    table: Table


@dataclass
class ModelSection:
    model: str
    suffix: str
    table: Table
    plots: list[Markup]
    comparisons: list[tuple[str, Table]]


def left(text, cls: str = "l", **kw) -> Cell:
    return Cell(text, cls=cls, **kw)


def with_ci(value: str, lo, hi, digits: int = 3) -> Cell:
    return Cell(value, ci=f"[{fmt(lo, digits)}, {fmt(hi, digits)}]")


def seed_units(sub: pd.DataFrame) -> pd.DataFrame:
    """The rows a test over ``sub`` should see: with several seeds one row per (seed, protocol,
    algorithm), the mean over its tasks (the tasks of one seed share one meta-trained start, so
    they are not independent replicates); with one seed the tasks themselves."""
    if sub["episodes_fingerprint"].nunique() < 2:
        return sub
    keys = ["model", "episodes_fingerprint", "protocol_fingerprint", "algo"]
    measures = [m for m in stats.MEASURES if m in sub]
    out = sub.groupby(keys, observed=True, sort=True)[measures].mean().reset_index().assign(task_index=0)
    if "metric_sign" in sub:
        out["metric_sign"] = stats.scope_sign(sub)
    out.attrs.update(sub.attrs)
    return out


def mark(claim: str, p_holm, title: str) -> Cell:
    """A claim as a table mark: ▲ better, ▼ worse (the claim's own word, so the mark can never
    contradict the verdict), the claim's words in grey otherwise."""
    p = "" if p_holm is None or pd.isna(p_holm) else f" p={p_holm:.3g}"
    if claim.startswith("better"):
        return Cell(f"▲{p}", span="sig-better", title=f"{claim}; {title}")
    if claim.startswith("worse"):
        return Cell(f"▼{p}", span="sig-worse", title=f"{claim}; {title}")
    return Cell(claim, span="ns", title=title)


def templates() -> Environment:
    return Environment(loader=PackageLoader("metaft.leaderboard", "templates"), autoescape=select_autoescape(default=True),
                       trim_blocks=True, lstrip_blocks=True)


PAGE_KEYS = ".page-keys.json"  # run id -> hash of what its page was rendered from
SITE_MARKER = ".metaft-site"  # written into every built site: only a folder holding it is ever replaced
# what a site held before the marker existed: such a folder may be replaced too
SITE_ENTRIES = ("index.html", "assets", "datasets", "runs", ".nojekyll", PAGE_KEYS, SITE_MARKER)


class SiteBuilder:
    def __init__(self, data: SiteData, out: str | Path, baseline: str = "baseline", n_resamples: int = 1999):
        self.data, self.out, self.baseline, self.n_resamples = data, Path(out), baseline, n_resamples
        self._plot_id = 0
        self._ci: dict[tuple, tuple[float, float]] = {}
        self._tables: dict[tuple, pd.DataFrame] = {}
        self._runs_by_id = {r["run_id"]: r for r in data.runs.to_dict("records")}
        # the learning-curve columns are heavy; the tables and tests never need them
        self.core = data.tasks.drop(columns=["curve_steps", "curve_metric", "curve_seconds"])
        self.curves = figures.curve_table(data.tasks, data.runs)
        # the frontier holds every (start, recipe, budget) point of a model: recipes side by side
        several = "recipe" in data.tasks and data.tasks["recipe"].astype(str).nunique() > 1
        points = figures.curve_table(stats.across_recipes(data.tasks), data.runs) if several else self.curves
        self.frontier_points = points[points["dataset"] != figures.ALL]
        self.datasets = sorted(self.core["dataset"].unique())
        self.env = templates()

    def prefetch_cis(self, items: list[tuple[tuple, pd.Series]]) -> None:
        """t CIs of means, batched; the overview and dataset pages share cells."""
        todo = [(k, v) for k, v in items if k not in self._ci]
        for (key, _), ci in zip(todo, stats.t_intervals([v for _, v in todo])):
            self._ci[key] = ci

    # ------------------------------------------------------------------ page scaffolding
    def render(self, template: str, title: str, depth: int = 0, plots: bool = True, **context) -> str:
        nav = [(d, f"{slug(d)}.html") for d in self.datasets]
        return self.env.get_template(template).render(title=title, up="../" * depth, plots=plots, nav=nav, **context)

    def plot(self, fig, kind: str = "") -> Markup:
        """Trusted markup: a fixed snippet around JSON that escapes <, > and &; ``kind`` is a fixed
        CSS class naming the figure (e.g. "frontier")."""
        self._plot_id += 1
        pid = f"plot{self._plot_id}"
        cls = f"plot {kind}" if kind else "plot"
        return Markup(f'<div class="{cls}" id="{pid}"></div><script>(function(){{var f={figures.figure_json(fig)};'
                      f'Plotly.newPlot("{pid}",f.data,f.layout,{{responsive:true,displaylogo:false}});}})();</script>')

    # ------------------------------------------------------------------ tables
    def leaderboard_table(self, tasks: pd.DataFrame, model: str, with_datasets: bool, depth: int = 0):
        """The table of one model, plus the comparisons shown under it. Ranks come from tests whose
        unit is the seed when there are several (none is significant below ``MIN_SEEDS`` seeds), and
        only where one metric is shared (never a rank by a mean over unlike metrics); the marks
        against each reference are the per-dataset verdicts (on a dataset page) or the stratified
        cross-dataset claims (on the overview)."""
        sub = tasks[tasks["model"] == model]
        algos = sorted(sub["algo"].unique())
        one_metric = sub["metric_name"].nunique() <= 1 if "metric_name" in sub else True
        pairs = self.unit_pairs(sub, model)
        ranks = stats.ranks_for(sub, pairs) if one_metric else {a: None for a in algos}
        refs = stats.references_in(sub, self.baseline)
        units = seed_units(sub)
        vs_refs = {r: stats.against_baseline(units, r, model=model, n_resamples=self.n_resamples) for r in refs}
        datasets = sorted(sub["dataset"].unique()) if with_datasets else []
        marks = self.marks(model, None if with_datasets else str(sub["dataset"].iloc[0]))
        head = ["rank", "algorithm", "tasks", "metric (95% CI)"] + datasets + [f"vs {r}" for r in refs] + \
               ["FLOPs / task", "ft s / task (descriptive)", "GPU-h (ft)", "runs"]
        order = sorted(algos, key=lambda a: (ranks[a] if ranks[a] is not None else 0, a))
        scope = tuple(sorted(sub["dataset"].unique()))
        by_algo = {a: df for a, df in sub.groupby("algo")}
        self.prefetch_cis([((model, a, scope), by_algo[a]["metric"]) for a in order] +
                          [((model, a, (d,)), x["metric"]) for a in order for d, x in by_algo[a].groupby("dataset")
                           if d in datasets])
        rows = []
        for algo in order:
            df = by_algo[algo]
            pooled = with_ci(fmt(df["metric"].mean()), *self._ci[(model, algo, scope)]) if one_metric else \
                Cell("–", title="the datasets use different metrics: no mean over them is shown")
            cells = [Cell("–" if ranks[algo] is None else ranks[algo]), left(algo, "l algo"), Cell(len(df)), pooled]
            for d in datasets:
                x = df[df["dataset"] == d]["metric"]
                cells.append(with_ci(fmt(x.mean()), *self._ci[(model, algo, (d,))]) if len(x) else Cell("–"))
            cells += [marks.get((algo, r), Cell("–")) for r in refs]
            flops = df["ft_flops"].mean() if "ft_flops" in df else float("nan")
            cells += [Cell("–" if pd.isna(flops) else f"{flops:.3g}"), Cell(fmt(df["ft_seconds"].mean(), 2)),
                      Cell(fmt(df["ft_gpu_hours"].sum(), 5)),
                      Cell(links=[(str(i + 1), f'{"../" * depth}runs/{slug(r)}.html')
                                  for i, r in enumerate(sorted(df["run_id"].unique()))])]
            rows.append(cells)
        table = Table("leaderboard", head, rows, left_head=("algorithm",), attrs={"data-model": model})
        return table, pairs, vs_refs, algos

    def unit_pairs(self, sub: pd.DataFrame, model: str) -> pd.DataFrame:
        """Every pair of algorithms tested on the metric with seeds as the unit when there are several
        (per-seed means; fewer than ``MIN_SEEDS`` seeds: nothing is significant), tasks with one."""
        pairs = stats.all_pairs(seed_units(sub), measures=("metric",), model=model, n_resamples=0)
        if 1 < sub["episodes_fingerprint"].nunique() < verdicts.MIN_SEEDS:
            pairs["significant"] = False
        return pairs

    def marks(self, model: str, dataset: str | None) -> dict[tuple[str, str], Cell]:
        """(candidate, reference) -> the claim as a mark: ▲ better, ▼ worse, the verdict's words otherwise."""
        out = {}
        if dataset is None:
            table = self.summary()
            for r in table[table["model"] == model].itertuples():
                title = f"stratified over {r.datasets} datasets, {r.units} {r.unit}, Holm p={r.p_holm:.3g}"
                out[(r.candidate, r.reference)] = mark(r.claim, r.p_holm, title)
            return out
        table = self.verdicts_of(dataset)
        for r in table[table["model"] == model].itertuples():
            title = f"{r.n} {r.unit}; " + (r.note or "") if r.note else f"{r.n} {r.unit}"
            out[(r.candidate, r.reference)] = mark(r.verdict, r.p_holm, title)
        return out

    def verdicts_of(self, dataset: str) -> pd.DataFrame:
        key = ("verdicts", dataset)
        if key not in self._tables:
            self._tables[key] = verdicts.verdicts(self.core[self.core["dataset"] == dataset])
        return self._tables[key]

    def summary(self) -> pd.DataFrame:
        if ("summary",) not in self._tables:
            self._tables[("summary",)] = verdicts.stratified_summary(self.core)
        return self._tables[("summary",)]

    def verdict_table(self, dataset: str) -> Section | None:
        """The per-dataset verdicts (one metric, config-matched pairs, Holm, TOST, MDE)."""
        table = self.verdicts_of(dataset)
        if table.empty:
            return None
        head = ["model", "candidate", "vs", "pairs", "mean diff [95% CI]", "Holm p", "TOST p", "MDE (80%, Holm)",
                "verdict"]
        rows = [[left(r.model), left(r.candidate, "l algo"), left(r.reference), Cell(r.n),
                 with_ci(fmt(r.mean_diff, 4), r.ci_low, r.ci_high, 4), Cell(fmt(r.p_holm, 4)),
                 Cell(fmt(r.p_equivalence, 4)), Cell(fmt(r.mde, 4)), left(r.verdict, "l verdict", title=r.note)]
                for r in table.itertuples()]
        margin = table["margin"].iloc[0]
        note = (f'Verdicts on {dataset} ({table["metric_name"].iloc[0]}): paired t-test, Holm over the candidates '
                f"compared with one reference; equivalence: TOST within ±{margin:g}; MDE: the smallest difference "
                f"these pairs detect with 80% power at Holm's first level (alpha over the candidates compared with "
                f'the reference). "inconclusive (underpowered)": the study could not have detected a difference '
                f"as small as the margin. Directional words need {verdicts.MIN_TASKS} tasks with one seed, "
                f"{verdicts.MIN_SEEDS} seeds with several.")
        return Section("Verdicts", [note], Table("verdicts", head, rows))

    def comparisons_table(self, comp: pd.DataFrame) -> Table:
        head = ["measure", "algorithm", "vs", "test", "pairs", "mean diff (95% CI)", "statistic", "p", "Holm p",
                "effect size", "note"]
        rows = [[left(r.measure), left(r.a), left(r.b), left(r.test), Cell(r.n),
                 with_ci(fmt(r.mean_diff, 4), r.ci_low, r.ci_high, 4), Cell(fmt(r.statistic, 3)),
                 Cell(fmt(r.p_value, 4)), Cell(fmt(r.p_holm, 4)), Cell(fmt(r.effect_size, 3), ci=r.effect_name),
                 left(r.note, "l note")] for r in comp.itertuples()]
        return Table("comparisons", head, rows)

    # ------------------------------------------------------------------ sections
    def sections(self, dataset: str | None, title_suffix: str, depth: int = 0) -> list[ModelSection]:
        core = self.core if dataset is None else self.core[self.core["dataset"] == dataset]
        out = []
        for model in sorted(core["model"].unique()):
            table, pairs, vs_refs, algos = self.leaderboard_table(core, model, dataset is None, depth)
            plots = [
                self.plot(figures.learning_curves(self.curves, model, dataset, "steps",
                                                  "Learning curve: metric vs fine-tuning steps"), "curve-steps"),
                self.plot(figures.learning_curves(self.curves, model, dataset, "seconds",
                                                  "Learning curve: metric vs seconds (descriptive)")),
                self.plot(figures.learning_curves(self.curves, model, dataset, "compute",
                                                  "Metric vs compute, meta-training amortized over the run's tasks"))]
            if len(algos) >= 3:  # with two there is one p-value, in the table already
                unit = "seeds" if core["episodes_fingerprint"].nunique() > 1 else "tasks"
                plots.append(self.plot(figures.pvalue_matrix(pairs, algos, "metric",
                                                             f"Holm-adjusted p-values (paired t over {unit}, metric)")))
            out.append(ModelSection(model, title_suffix, table, plots,
                                    [(ref, self.comparisons_table(comp)) for ref, comp in vs_refs.items()]))
        return out

    def frontiers(self, dataset: str) -> list[Markup]:
        """The cost-quality frontier of every model on one dataset."""
        points = self.frontier_points
        sub = points[points["dataset"] == dataset]
        return [self.plot(figures.frontier(points, model, dataset, f"Cost-quality frontier on {dataset} ({model})"),
                          "frontier") for model in sorted(sub["model"].unique())]

    def stratified_table(self) -> Section | None:
        """The cross-dataset answer: per-dataset standardised effects, datasets as strata."""
        table = self.summary()
        if table.empty:
            return None
        head = ["model", "candidate", "vs", "datasets", "tasks", "units", "standardised effect", "p (stratified)",
                "Holm p", "claim"]
        rows = [[left(r.model), left(r.candidate, "l algo"), left(r.reference), Cell(r.datasets), Cell(r.tasks),
                 Cell(f"{r.units} {r.unit}"), Cell(f"{r.effect:+.3f}"), Cell(f"{r.p_value:.4f}"),
                 Cell(f"{r.p_holm:.4f}"), left(r.claim, "l claim")] for r in table.itertuples()]
        note = ("Never a mean of unlike metrics: each dataset's paired differences (per-seed means with several "
                "seeds) are divided by their root mean square (a unit-free effect), datasets count equally; the "
                "p-value comes from a t-test over the seeds' cross-dataset effects with several seeds (a seed is "
                "one unit in every dataset), from an exact sign-flip test within datasets with one. The family for Holm: every candidate against every reference of the "
                f"model. A claim needs {verdicts.MIN_SEEDS} seeds. Per-dataset verdicts are on each dataset's page.")
        return Section("Across datasets (stratified)", [note], Table("stratified", head, rows))

    def amortization_table(self, dataset: str | None = None) -> Section | None:
        """Cost at equal quality from quality at pre-declared budgets (leaderboard.costs)."""
        if ("costs",) not in self._tables:  # once per build; each dataset page shows its rows
            self._tables[("costs",)] = costs.amortization(self.data.tasks, self.data.runs, n_resamples=self.n_resamples)
        table = self._tables[("costs",)]
        if dataset is not None and len(table):
            table = table[table["dataset"] == dataset]
        if table.empty:
            return None
        head = ["model"] + costs.COLUMNS
        rows = []
        for r in table.itertuples():
            cells = costs.cost_cells(r)
            rows.append([left(r.model), left(cells[0]), left(cells[1], "l algo"), left(cells[2]), Cell(cells[3]),
                         left(cells[4], "l cost-verdict", title=r.note)] + [Cell(c) for c in cells[5:11]] +
                        [Cell(cells[11], "break-even"), Cell(cells[12])])
        note = ("Cost at equal quality, from quality at pre-declared budgets (the evaluation schedule, fixed before "
                "the run; nothing is chosen per task on the query set). Cheaper: the candidate is non-inferior "
                f"(±{table['margin'].iloc[0]:g}) to the reference at its full budget, and at some smaller compute "
                "budget it is both better than the reference at that budget and non-inferior to the reference's "
                "full-budget quality (one-sided paired t-tests, Holm over the budgets; the claim's error is at most "
                "5%). Dearer: the same test with the roles swapped. Sufficient steps: each side's smallest budget "
                "non-inferior to the reference's final quality. Compute ratio: the reference's FLOPs at its "
                "sufficient budget over the candidate's, each from its own FLOPs per step. Break-even: the extra "
                "up-front FLOPs (meta-training and lr selection, minus the reference's) over the FLOPs saved per "
                "task; 'never' only when even the interval's optimistic end saves nothing. [95%]: percentile "
                "bootstrap over the test units (tasks with one seed, seed means with several).")
        return Section("Cost at equal quality, and when meta-training pays back", [note],
                       Table("amortization", head, rows))

    def regret_table(self) -> Section | None:
        """Selectors against their hindsight oracle: the price of choosing without the query set."""
        oracles = self.data.oracles
        if oracles is None or oracles.empty:
            return None
        table = stats.selector_regret(pd.concat([self.data.tasks, oracles]))
        if table.empty:
            return None
        head = ["model", "dataset", "selector", "tasks", "oracle metric", "selected metric", "regret",
                "regret % of oracle", "picked the oracle's source"]
        rows = [[left(r.model), left(r.dataset), left(r.algo, "l algo"), Cell(r.n), Cell(f"{r.oracle_metric:.3f}"),
                 Cell(f"{r.selected_metric:.3f}"), Cell(f"{r.regret:+.3f}"), Cell(f"{r.regret_pct:.1f}"),
                 Cell(f"{r.picked_oracle_source:.0%}")] for r in table.itertuples()]
        note = ("The oracle fine-tunes from every source and keeps the best on the query set it is scored on, so it "
                "is an upper bound for a selector that sees only the support set; it is never ranked or tested "
                "with the methods. Regret: oracle minus selected metric on the same tasks.")
        return Section("Source selection against the hindsight oracle (bound, not ranked)", [note],
                       Table("regret", head, rows))

    def overlap_items(self) -> list[str]:
        """Where meta-test query sets overlap across tasks, the tasks are not independent."""
        shared = {}
        for m in self.data.manifests.summary().values():  # cached small fields, not 5,000 reads
            for dataset, o in (m.get("query_overlap") or {}).items():
                if o.get("tasks_sharing_a_query"):
                    shared[dataset] = o
        return [f"{d}: {o['tasks_sharing_a_query']} of {o['tasks']} tasks share a query example with another task "
                f"({o['distinct']} distinct of {o['queries']} queries)" for d, o in sorted(shared.items())]

    def version_note(self) -> str:
        keys = sorted(self.data.tasks["benchmark"].dropna().unique())
        if len(keys) < 2:
            return ""
        return (f"Results of {len(keys)} benchmark versions are present ({', '.join(keys)}); rows of different "
                f"versions or protocols are never paired with each other (comparisons between them say "
                f'"not paired").')

    # ------------------------------------------------------------------ pages
    def overview(self) -> str:
        d = self.data
        return self.render(
            "overview.html", "Meta-learned fine-tuning leaderboard",
            runs=[(r, f"{slug(r)}.html") for r in sorted(d.runs["run_id"])], n_tasks=len(d.tasks),
            algorithms=sorted(d.tasks["algo"].unique()), n_resamples=self.n_resamples,
            notes=[QA_HEAD_NOTE, CONTAMINATION_NOTE], version_note=self.version_note(),
            stratified=self.stratified_table(), per_dataset=self.per_dataset(), sections=self.sections(None, ""),
            amortization=self.amortization_table(), regret=self.regret_table(), overlap=self.overlap_items())

    def dataset_page(self, dataset: str) -> str:
        return self.render("dataset.html", dataset, depth=1, verdicts=self.verdict_table(dataset),
                           frontiers=self.frontiers(dataset), costs=self.amortization_table(dataset),
                           sections=self.sections(dataset, f" on {dataset}", depth=1))

    def per_dataset(self) -> list[tuple[str, str, Section | None, list[Markup]]]:
        """The overview's side-by-side view: each dataset's verdicts and frontier."""
        return [(d, f"datasets/{slug(d)}.html", self.compact_verdicts(d), self.frontiers(d)) for d in self.datasets]

    def compact_verdicts(self, dataset: str) -> Section | None:
        table = self.verdicts_of(dataset)
        if table.empty:
            return None
        rows = [[left(r.model), left(r.candidate, "l algo"), left(r.reference), Cell(f"{r.n} {r.unit}"),
                 with_ci(fmt(r.mean_diff, 3), r.ci_low, r.ci_high, 3), left(r.verdict, "l verdict", title=r.note)]
                for r in table.itertuples()]
        return Section(dataset, [], Table("verdicts compact", ["model", "candidate", "vs", "n", "mean diff [95% CI]",
                                                               "verdict"], rows))

    def run_page(self, run_id: str) -> str:
        manifest = self.data.manifests.get(run_id, {})
        row = self._runs_by_id.get(run_id, {})
        return self.render("run.html", f"Run {run_id}", depth=1, plots=False, run_id=run_id,
                           row=[(k, "" if v is None else v) for k, v in row.items()],
                           provenance=json.dumps(manifest, indent=1, sort_keys=True, default=str))

    def write_run_pages(self, tmp: Path) -> None:
        """One page per run; a page whose inputs (row, manifest, navigation, templates) are
        unchanged since the last build into the same folder is linked from it, not rendered
        again (5,000 run pages were 2 s of a 100,000-row build)."""
        keys_file = self.out / PAGE_KEYS
        try:
            old = json.loads(keys_file.read_text()) if keys_file.is_file() else {}
        except (OSError, ValueError):
            old = {}
        version = self.template_version()
        new = {}
        for run_id in sorted(self.data.runs["run_id"].unique()):
            name = f"{slug(run_id)}.html"
            key = hashlib.sha1(json.dumps([version, self._runs_by_id.get(run_id, {}),
                                           self.data.manifests.stamp(run_id)],
                                          sort_keys=True, default=str).encode()).hexdigest()
            new[run_id] = key
            previous = self.out / "runs" / name
            if old.get(run_id) == key and previous.is_file():
                try:
                    os.link(previous, tmp / "runs" / name)
                    continue
                except OSError:  # no hard links on this file system
                    shutil.copyfile(previous, tmp / "runs" / name)
                    continue
            (tmp / "runs" / name).write_text(self.run_page(run_id), encoding="utf-8")
        (tmp / PAGE_KEYS).write_text(json.dumps(new))

    def template_version(self) -> str:
        """What every run page shares: its templates' source and the navigation."""
        loader = self.env.loader
        assert loader is not None  # the builder's environment always has its package loader
        sources = [loader.get_source(self.env, t)[0] for t in ("base.html", "run.html")]
        nav = [(d, f"{slug(d)}.html") for d in self.datasets]
        return hashlib.sha1(json.dumps([sources, nav, __version__]).encode()).hexdigest()

    def build(self, inputs: Sequence[str | Path] = ()) -> Path:
        """Write the site to a temporary folder beside ``out``, then swap it in; ``out`` is
        replaced only when it is new, empty or a site built before (never the results
        folders in ``inputs``, nor a folder of anything else)."""
        out = check_replaceable(self.out, "--out", SITE_MARKER, SITE_ENTRIES, {"--results": inputs})
        tmp = out.with_name(f".{out.name}.building-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        (tmp / "assets").mkdir(parents=True)
        (tmp / "datasets").mkdir()
        (tmp / "runs").mkdir()
        import plotly

        shutil.copyfile(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", tmp / "assets" / "plotly.min.js")
        (tmp / "assets" / "style.css").write_text(CSS)
        (tmp / "index.html").write_text(self.overview(), encoding="utf-8")
        for dataset in self.datasets:
            (tmp / "datasets" / f"{slug(dataset)}.html").write_text(self.dataset_page(dataset), encoding="utf-8")
        self.write_run_pages(tmp)
        (tmp / ".nojekyll").write_text("")
        (tmp / SITE_MARKER).write_text("a site built by `suite leaderboard build`; the next build replaces it\n")
        replace_folder(tmp, out)
        return out


def build_site(results: list[str], out: str | Path, baseline: str = "baseline", n_resamples: int = 1999,
               skip_corrupt: bool = False) -> Path:
    if n_resamples < 0:
        raise ConfigError(f"--resamples must be >= 0 (0: no bootstrap intervals), got {n_resamples}")
    check_replaceable(out, "--out", SITE_MARKER, SITE_ENTRIES, {"--results": results})  # before any reading
    return SiteBuilder(load_site_data(results, skip_corrupt), out, baseline, n_resamples).build(results)
