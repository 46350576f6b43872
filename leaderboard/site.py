"""Static leaderboard site: HTML + one copy of plotly.js, works from file:// with no network.

Everything shown comes from result files that other people may submit, so every
string goes through ``html.escape`` and all embedded JSON escapes ``<``, ``>`` and
``&``.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from suite.results import load_results

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


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


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
    manifests: dict[str, dict]
    oracles: pd.DataFrame | None = None  # hindsight rows: bounds, shown apart, never ranked


def load_site_data(dirs: list[str]) -> SiteData:
    runs, tasks = load_results(*dirs)
    if tasks.empty:
        raise ValueError(f"no complete runs under {', '.join(map(str, dirs))}; run `suite run` first")
    tasks, oracles = stats.split_oracles(stats.prepare(tasks))
    manifests = {}
    for d in dirs:
        for path in list(Path(d).glob("*/manifest.json")) + ([Path(d) / "manifest.json"] if (Path(d) / "manifest.json").is_file() else []):
            m = json.loads(path.read_text())
            manifests[m.get("run_id", path.parent.name)] = m
    return SiteData(runs, tasks, manifests, oracles)


class SiteBuilder:
    def __init__(self, data: SiteData, out: str | Path, baseline: str = "baseline", n_resamples: int = 1999):
        self.data, self.out, self.baseline, self.n_resamples = data, Path(out), baseline, n_resamples
        self._plot_id = 0
        self._ci: dict[tuple, tuple[float, float]] = {}
        self._runs_by_id = {r["run_id"]: r for r in data.runs.to_dict("records")}
        # the learning-curve columns are heavy; the tables and tests never need them
        self.core = data.tasks.drop(columns=["curve_steps", "curve_metric", "curve_seconds"])
        self.curves = figures.curve_table(data.tasks, data.runs)
        self.datasets = sorted(self.core["dataset"].unique())

    def prefetch_cis(self, items: list[tuple[tuple, pd.Series]]) -> None:
        """Bootstrap CIs of means, batched; the overview and dataset pages share cells."""
        todo = [(k, v) for k, v in items if k not in self._ci]
        for (key, _), ci in zip(todo, stats.bootstrap_many([v for _, v in todo], self.n_resamples)):
            self._ci[key] = ci

    # ------------------------------------------------------------------ page scaffolding
    def page(self, title: str, body: str, depth: int = 0, plots: bool = True) -> str:
        up = "../" * depth
        script = f'<script src="{up}assets/plotly.min.js"></script>' if plots else ""
        nav = f'<a href="{up}index.html">Overview</a>' + "".join(
            f'<a href="{up}datasets/{esc(slug(d))}.html">{esc(d)}</a>' for d in self.datasets)
        return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<link rel=\"stylesheet\" href=\"{up}assets/style.css\">{script}</head><body>"
                f"<header><h1>{esc(title)}</h1><nav>{nav}</nav></header><main>{body}</main></body></html>")

    def plot(self, fig) -> str:
        self._plot_id += 1
        pid = f"plot{self._plot_id}"
        return (f'<div class="plot" id="{pid}"></div><script>(function(){{var f={figures.figure_json(fig)};'
                f'Plotly.newPlot("{pid}",f.data,f.layout,{{responsive:true,displaylogo:false}});}})();</script>')

    # ------------------------------------------------------------------ tables
    def leaderboard_table(self, tasks: pd.DataFrame, model: str, with_datasets: bool, depth: int = 0):
        """The ranked table of one model, plus the comparisons it was ranked by."""
        sub = tasks[tasks["model"] == model]
        algos = sorted(sub["algo"].unique())
        pairs = stats.all_pairs(sub, measures=("metric",), model=model, n_resamples=0)  # p-values for ranks
        ranks = stats.ranks_for(sub, pairs)
        refs = stats.references_in(sub, self.baseline)
        vs_refs = {r: stats.against_baseline(sub, r, model=model, n_resamples=self.n_resamples) for r in refs}
        datasets = sorted(sub["dataset"].unique()) if with_datasets else []
        head = ["rank", "algorithm", "tasks", "metric (95% CI)"] + [esc(d) for d in datasets] + \
               [f"vs {esc(r)}" for r in refs] + ["FLOPs / task", "ft s / task (descriptive)", "GPU-h (ft)", "runs"]
        order = sorted(algos, key=lambda a: (ranks[a], a))
        scope = tuple(sorted(sub["dataset"].unique()))
        by_algo = {a: df for a, df in sub.groupby("algo")}
        self.prefetch_cis([((model, a, scope), by_algo[a]["metric"]) for a in order] +
                          [((model, a, (d,)), x["metric"]) for a in order for d, x in by_algo[a].groupby("dataset")
                           if d in datasets])
        rows = []
        for algo in order:
            df = by_algo[algo]
            lo, hi = self._ci[(model, algo, scope)]
            cells = [str(ranks[algo]), f'<td class="l algo">{esc(algo)}</td>', str(len(df)),
                     f'{fmt(df["metric"].mean())} <span class="ci">[{fmt(lo)}, {fmt(hi)}]</span>']
            for d in datasets:
                x = df[df["dataset"] == d]["metric"]
                if len(x):
                    l2, h2 = self._ci[(model, algo, (d,))]
                    cells.append(f'{fmt(x.mean())} <span class="ci">[{fmt(l2)}, {fmt(h2)}]</span>')
                else:
                    cells.append("–")
            cells += [self.significance_mark(vs_refs[r], algo, r) for r in refs]
            flops = df["ft_flops"].mean() if "ft_flops" in df else float("nan")
            cells += ["–" if pd.isna(flops) else f"{flops:.3g}", fmt(df["ft_seconds"].mean(), 2),
                      fmt(df["ft_gpu_hours"].sum(), 5),
                      " ".join(f'<a href="{"../" * depth}runs/{esc(slug(r))}.html">{i + 1}</a>' for i, r in
                               enumerate(sorted(df["run_id"].unique())))]
            rows.append("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>")
        table = (f'<table class="leaderboard" data-model="{esc(model)}"><thead><tr>' +
                 "".join(f'<th{" class=l" if h == "algorithm" else ""}>{h}</th>' for h in head) +
                 "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
        return table, pairs, vs_refs, algos

    def significance_mark(self, vs_base: pd.DataFrame, algo: str, reference: str) -> str:
        if algo == reference or vs_base.empty:
            return "–"
        r = vs_base[(vs_base["measure"] == "metric") & (vs_base["a"] == algo)]
        if r.empty:
            return "–"
        r = r.iloc[0]
        if r["p_holm"] is None or pd.isna(r["p_holm"]):
            return f'<span class="ns" title="{esc(r["note"])}">not tested</span>'
        if r["significant"]:
            better = r["mean_diff"] > 0
            cls, sym = ("sig-better", "▲") if better else ("sig-worse", "▼")
            return f'<span class="{cls}" title="Holm p={r["p_holm"]:.3g}">{sym} p={r["p_holm"]:.3g}</span>'
        return f'<span class="ns" title="Holm p={r["p_holm"]:.3g}">n.s. p={r["p_holm"]:.3g}</span>'

    def verdict_table(self, dataset: str) -> str:
        """The per-dataset verdicts (one metric, config-matched pairs, Holm, TOST, MDE)."""
        table = verdicts.verdicts(self.core[self.core["dataset"] == dataset])
        if table.empty:
            return '<p class="note">No reference runs (baseline or multitask): no verdicts.</p>'
        head = ["model", "candidate", "vs", "pairs", "mean diff [95% CI]", "Holm p", "TOST p", "MDE (80%)",
                "verdict"]
        rows = []
        for r in table.itertuples():
            rows.append("<tr>" + "".join([
                f'<td class="l">{esc(r.model)}</td>', f'<td class="l algo">{esc(r.candidate)}</td>',
                f'<td class="l">{esc(r.reference)}</td>', f"<td>{r.n}</td>",
                f'<td>{fmt(r.mean_diff, 4)} <span class="ci">[{fmt(r.ci_low, 4)}, {fmt(r.ci_high, 4)}]</span></td>',
                f"<td>{fmt(r.p_holm, 4)}</td>", f"<td>{fmt(r.p_equivalence, 4)}</td>", f"<td>{fmt(r.mde, 4)}</td>",
                f'<td class="l verdict" title="{esc(r.note)}">{esc(r.verdict)}</td>']) + "</tr>")
        margin = table["margin"].iloc[0]
        return (f'<p class="note">Verdicts on {esc(dataset)} ({esc(table["metric_name"].iloc[0])}): paired t-test, '
                f'Holm over the candidates compared with one reference; equivalence: TOST within ±{margin:g}; '
                f'MDE: the smallest difference these pairs detect with 80% power. "inconclusive (underpowered)": '
                f'the study could not have detected a difference as small as the margin.</p>'
                '<table class="verdicts"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) +
                "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")

    def comparisons_table(self, comp: pd.DataFrame) -> str:
        if comp.empty:
            return '<p class="note">No reference runs: nothing to compare against.</p>'
        head = ["measure", "algorithm", "vs", "test", "pairs", "mean diff (95% CI)", "statistic", "p", "Holm p",
                "effect size", "note"]
        rows = []
        for r in comp.itertuples():
            rows.append("<tr>" + "".join([
                f'<td class="l">{esc(r.measure)}</td>', f'<td class="l">{esc(r.a)}</td>', f'<td class="l">{esc(r.b)}</td>',
                f'<td class="l">{esc(r.test)}</td>', f"<td>{r.n}</td>",
                f'<td>{fmt(r.mean_diff, 4)} <span class="ci">[{fmt(r.ci_low, 4)}, {fmt(r.ci_high, 4)}]</span></td>',
                f"<td>{fmt(r.statistic, 3)}</td>", f"<td>{fmt(r.p_value, 4)}</td>", f"<td>{fmt(r.p_holm, 4)}</td>",
                f'<td>{fmt(r.effect_size, 3)} <span class="ci">{esc(r.effect_name)}</span></td>',
                f'<td class="l note">{esc(r.note)}</td>']) + "</tr>")
        return ('<table class="comparisons"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) +
                "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")

    # ------------------------------------------------------------------ pages
    def section(self, dataset: str | None, title_suffix: str, depth: int = 0) -> str:
        core = self.core if dataset is None else self.core[self.core["dataset"] == dataset]
        parts = []
        for model in sorted(core["model"].unique()):
            sub = core[core["model"] == model]
            table, pairs, vs_refs, algos = self.leaderboard_table(core, model, dataset is None, depth)
            parts.append(f"<h2>Model {esc(model)}{esc(title_suffix)}</h2>{table}")
            parts.append('<div class="grid">' +
                         self.plot(figures.learning_curves(self.curves, model, dataset, "steps",
                                                           "Learning curve: metric vs fine-tuning steps")) +
                         self.plot(figures.learning_curves(self.curves, model, dataset, "seconds",
                                                           "Learning curve: metric vs seconds")) +
                         self.plot(figures.learning_curves(self.curves, model, dataset, "compute",
                                                           "Metric vs compute, meta-training amortized")) +
                         self.plot(figures.quality_vs_cost(sub, "ft_seconds", "Quality vs fine-tuning cost")) +
                         self.plot(figures.pvalue_matrix(pairs, algos, "metric", "Holm-adjusted p-values (paired t, metric)")) +
                         "</div>")
            for ref, comp in vs_refs.items():
                parts.append(f"<h3>Against {esc(ref)} ({esc(model)})</h3>" + self.comparisons_table(comp))
            if not vs_refs:
                parts.append(self.comparisons_table(pd.DataFrame()))
        return "".join(parts)

    def overview(self) -> str:
        d = self.data
        intro = (f'<p>{len(d.runs)} runs, {len(d.tasks)} task results, algorithms: '
                 f'{esc(", ".join(sorted(d.tasks["algo"].unique())))}. Ranks: algorithms whose difference in mean '
                 f'metric is not significant (paired t-test, Holm-Bonferroni, α=0.05) share a rank. Marks against '
                 f'the baseline: ▲ significantly better, ▼ significantly worse, n.s. not significant. '
                 f'Cost comparisons (FLOPs, tokens: load-independent) use the Wilcoxon signed-rank test; seconds and '
                 f'GPU-hours are shown as measured and are descriptive (runs of different algorithms are not '
                 f'interleaved, so machine load can differ). CIs: percentile bootstrap, '
                 f'{self.n_resamples} resamples. Each dataset page leads with per-dataset verdicts; the overview\'s '
                 f'mean over datasets mixes unlike metrics and is descriptive only.</p>'
                 f'<p class="note">{esc(QA_HEAD_NOTE)}</p><p class="note">{esc(CONTAMINATION_NOTE)}</p>'
                 + self.version_note())
        runs = "".join(f'<li><a href="runs/{esc(slug(r))}.html">{esc(r)}</a></li>' for r in sorted(d.runs["run_id"]))
        return self.page("Meta-learned fine-tuning leaderboard",
                         intro + self.stratified_table() + self.section(None, "") + self.amortization_table() +
                         self.regret_table() + self.overlap_note() +
                         f"<h2>Runs</h2><ul class=\"runs\">{runs}</ul>")

    def stratified_table(self) -> str:
        """The cross-dataset answer: per-dataset standardised effects, datasets as strata."""
        table = verdicts.stratified_summary(self.core)
        if table.empty:
            return ""
        head = ["model", "candidate", "vs", "datasets", "tasks", "standardised effect", "p (stratified)", "Holm p"]
        rows = "".join("<tr>" + "".join([
            f'<td class="l">{esc(r.model)}</td>', f'<td class="l algo">{esc(r.candidate)}</td>',
            f'<td class="l">{esc(r.reference)}</td>', f"<td>{r.datasets}</td>", f"<td>{r.tasks}</td>",
            f"<td>{r.effect:+.3f}</td>", f"<td>{r.p_value:.4f}</td>", f"<td>{r.p_holm:.4f}</td>"]) + "</tr>"
            for r in table.itertuples())
        return ("<h2>Across datasets (stratified)</h2>"
                '<p class="note">Never a mean of unlike metrics: each dataset\'s paired differences are divided by '
                "their root mean square (a unit-free effect), datasets count equally, and the p-value is a "
                "permutation test flipping signs within datasets (strata). Per-dataset verdicts are on each "
                "dataset's page. The ranked table below averages raw metrics across datasets and is descriptive "
                "only.</p>"
                '<table class="stratified"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) +
                "</tr></thead><tbody>" + rows + "</tbody></table>")

    def amortization_table(self) -> str:
        """Steps-to-target from the stored curves (misses censored), reach rates, break-even tasks."""
        table = costs.amortization(self.data.tasks, self.data.runs)
        if table.empty:
            return ""
        head = ["model", "dataset", "candidate", "vs", "pairs", "reached", "steps (candidate)", "steps (reference)",
                "p (steps, Wilcoxon)", f"steps verdict (±{costs.STEPS_MARGIN})", "FLOPs saved / task",
                "extra up-front FLOPs", "break-even tasks"]
        rows = []
        for r in table.itertuples():
            be = "never" if not np.isfinite(r.break_even_tasks) else f"{r.break_even_tasks:.3g}"
            rows.append("<tr>" + "".join([
                f'<td class="l">{esc(r.model)}</td>', f'<td class="l">{esc(r.dataset)}</td>',
                f'<td class="l algo">{esc(r.candidate)}</td>', f'<td class="l">{esc(r.reference)}</td>',
                f"<td>{r.n}</td>", f"<td>{r.reach_rate:.0%}</td>", f"<td>{fmt(r.steps_candidate, 1)}</td>",
                f"<td>{fmt(r.steps_reference, 1)}</td>", f"<td>{fmt(r.p_steps, 4)}</td>",
                f'<td class="l">{esc(r.steps_verdict)}</td>',
                f"<td>{r.saved_flops_per_task:.3g}</td>",
                f"<td>{r.extra_upfront_flops:.3g}</td>", f'<td class="break-even">{be}</td>']) + "</tr>")
        return ("<h2>Cost to the reference's quality, and when meta-training pays back</h2>"
                '<p class="note">Target: the reference\'s final metric on the same task. Steps-to-target are read '
                "from the stored learning curves; a task whose curve never reaches the target is censored at twice "
                "the budget (never dropped), and the reach rate is shown. Break-even: the candidate's extra "
                "up-front FLOPs (meta-training and lr selection, minus the reference's) over the FLOPs it saves per "
                "task; \"never\" when it saves nothing.</p>"
                '<table class="amortization"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) +
                "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")

    def regret_table(self) -> str:
        """Selectors against their hindsight oracle: the price of choosing without the query set."""
        oracles = self.data.oracles
        if oracles is None or oracles.empty:
            return ""
        table = stats.selector_regret(pd.concat([self.data.tasks, oracles]))
        if table.empty:
            return ""
        head = ["model", "dataset", "selector", "tasks", "oracle metric", "selected metric", "regret",
                "regret % of oracle", "picked the oracle's source"]
        rows = "".join("<tr>" + "".join([
            f'<td class="l">{esc(r.model)}</td>', f'<td class="l">{esc(r.dataset)}</td>',
            f'<td class="l algo">{esc(r.algo)}</td>', f"<td>{r.n}</td>", f"<td>{r.oracle_metric:.3f}</td>",
            f"<td>{r.selected_metric:.3f}</td>", f"<td>{r.regret:+.3f}</td>", f"<td>{r.regret_pct:.1f}</td>",
            f"<td>{r.picked_oracle_source:.0%}</td>"]) + "</tr>" for r in table.itertuples())
        return ("<h2>Source selection against the hindsight oracle (bound, not ranked)</h2>"
                '<p class="note">The oracle fine-tunes from every source and keeps the best on the query set it is '
                "scored on, so it is an upper bound for a selector that sees only the support set; it is never "
                "ranked or tested with the methods. Regret: oracle minus selected metric on the same tasks.</p>"
                '<table class="regret"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) +
                "</tr></thead><tbody>" + rows + "</tbody></table>")

    def overlap_note(self) -> str:
        """Where meta-test query sets overlap across tasks, the tasks are not independent."""
        shared = {}
        for m in self.data.manifests.values():
            for dataset, o in (m.get("query_overlap") or {}).items():
                if o.get("tasks_sharing_a_query"):
                    shared[dataset] = o
        if not shared:
            return ""
        items = "".join(f"<li>{esc(d)}: {o['tasks_sharing_a_query']} of {o['tasks']} tasks share a query example "
                        f"with another task ({o['distinct']} distinct of {o['queries']} queries)</li>"
                        for d, o in sorted(shared.items()))
        return (f'<p class="note overlap">Query sets overlap across tasks where the pool is too small for '
                f'disjoint sets; there the effective number of independent tasks is smaller than shown:</p>'
                f'<ul class="note">{items}</ul>')

    def version_note(self) -> str:
        keys = sorted(self.data.tasks["benchmark"].dropna().unique())
        if len(keys) < 2:
            return ""
        return (f'<p class="note version">Results of {len(keys)} benchmark versions are present '
                f'({esc(", ".join(keys))}); rows of different versions or protocols are never paired with each '
                f'other (comparisons between them say "not paired").</p>')

    def dataset_page(self, dataset: str) -> str:
        body = "<h2>Verdicts</h2>" + self.verdict_table(dataset) + self.section(dataset, f" on {dataset}", depth=1)
        return self.page(f"{dataset}", body, depth=1)

    def run_page(self, run_id: str) -> str:
        manifest = self.data.manifests.get(run_id, {})
        row = self._runs_by_id.get(run_id, {})
        table = "".join(f'<tr><th class="l">{esc(k)}</th><td class="l">{esc(v)}</td></tr>' for k, v in row.items())
        body = (f"<h2>Run {esc(run_id)}</h2><table>{table}</table><h2>Provenance</h2>"
                f"<pre>{esc(json.dumps(manifest, indent=1, sort_keys=True, default=str))}</pre>")
        return self.page(f"Run {run_id}", body, depth=1, plots=False)

    def build(self) -> Path:
        out = self.out
        tmp = out.with_name(f".{out.name}.building")
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
        for run_id in sorted(self.data.runs["run_id"].unique()):
            (tmp / "runs" / f"{slug(run_id)}.html").write_text(self.run_page(run_id), encoding="utf-8")
        (tmp / ".nojekyll").write_text("")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        return out


def build_site(results: list[str], out: str | Path, baseline: str = "baseline", n_resamples: int = 1999) -> Path:
    return SiteBuilder(load_site_data(results), out, baseline, n_resamples).build()
