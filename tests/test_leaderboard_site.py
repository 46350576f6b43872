"""The site in a real headless Chromium: no console errors, expected ranks, plots render,
hostile names stay text; plus build, publish and add as a user runs them."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from results_fixture import HOSTILE, write_results
from suite_process import SUITE, run_suite

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
SEEDS = (0, 1, 2, 3, 4)  # ranks and marks test over seeds, and need five of them to claim anything


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    results = write_results(tmp_path_factory.mktemp("results"), seeds=SEEDS)
    out = tmp_path_factory.mktemp("site") / "site"
    proc = run_suite("leaderboard", "build", "--results", str(results), "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("Debian chromium and chromium-driver are required (apt-get install chromium chromium-driver; "
                    ".ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--allow-file-access-from-files", "--window-size=1400,2200"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    yield driver
    driver.quit()


def console_errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_overview_in_headless_chromium(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get((site / "index.html").as_uri())
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.querySelectorAll('.plot .main-svg').length") >=
        d.execute_script("return document.querySelectorAll('.plot').length") > 0)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "leaderboard-overview.png"))
    assert console_errors(browser) == []
    assert browser.execute_script("return window.__pwned === undefined")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.leaderboard tbody tr")
    ranks = {r.find_element(By.CSS_SELECTOR, "td.algo").text: int(r.find_elements(By.TAG_NAME, "td")[0].text)
             for r in rows}
    assert ranks["good"] == 1
    assert ranks["baseline"] == ranks["same"] == 2  # not significantly different: a shared rank
    assert ranks[HOSTILE] == 4
    assert HOSTILE in [r.find_element(By.CSS_SELECTOR, "td.algo").text for r in rows]  # shown as text
    plots = browser.find_elements(By.CSS_SELECTOR, ".plot")
    assert len(browser.find_elements(By.CSS_SELECTOR, ".plot.frontier")) == 4  # one per dataset, side by side
    assert len(plots) == 4 + 4  # and the model's curves vs steps, seconds, compute, and its p-values
    for plot in plots:
        assert plot.find_elements(By.CSS_SELECTOR, ".main-svg"), "a plot did not render"
    marks = browser.find_elements(By.CSS_SELECTOR, ".sig-better")
    assert marks and marks[0].text.startswith("▲")
    assert "plotly.min.js" in browser.page_source and "cdn" not in browser.page_source.lower()


def test_dataset_and_run_pages_render(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get((site / "datasets" / "ag_news.html").as_uri())
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "return document.querySelectorAll('.plot.frontier .main-svg').length") > 0)
    assert console_errors(browser) == []
    headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
    assert headings[:2] == ["Verdicts", "Cost-quality frontier"]  # the page leads with both
    frontier = browser.execute_script(
        "var gd = document.querySelector('.plot.frontier'); return {names: gd.data.map(t => t.name), "
        "pareto: gd.data[gd.data.length - 1].text, ticks: gd.layout.xaxis.ticktext, "
        "buttons: gd.layout.updatemenus[0].buttons.map(b => b.label)};")
    assert frontier["names"][-1] == "Pareto set" and frontier["pareto"]
    assert all(p.startswith("good: ") for p in frontier["pareto"])  # the better and cheaper curve dominates
    assert frontier["ticks"][0] == "0" and frontier["buttons"][0] == "fine-tuning only"
    steps = browser.execute_script("return document.querySelector('.plot.curve-steps').layout.xaxis.ticktext")
    assert steps == ["0", "1", "2", "4", "8"]  # the log-spaced step axis reads in steps, 0 included
    verdict = {r.find_elements(By.TAG_NAME, "td")[1].text: r.find_elements(By.TAG_NAME, "td")[-1].text
               for r in browser.find_elements(By.CSS_SELECTOR, "table.verdicts tbody tr")}
    head = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "table.leaderboard th")]
    column = head.index("vs baseline")
    marks = {r.find_element(By.CSS_SELECTOR, "td.algo").text: r.find_elements(By.TAG_NAME, "td")[column].text
             for r in browser.find_elements(By.CSS_SELECTOR, "table.leaderboard tbody tr")}
    assert verdict["good"] == "better" and marks["good"].startswith("▲")
    for algo, text in verdict.items():  # the mark is the verdict: it can never contradict it
        assert marks[algo].startswith("▲") == text.startswith("better"), (algo, marks[algo], text)
        assert marks[algo].startswith("▼") == text.startswith("worse"), (algo, marks[algo], text)
    assert browser.find_elements(By.CSS_SELECTOR, "table.leaderboard tbody tr")
    link = browser.find_element(By.CSS_SELECTOR, "table.leaderboard a")
    link.click()
    assert "Provenance" in browser.page_source and "2.13.0" in browser.page_source
    assert console_errors(browser) == []


def test_plotly_is_included_once_and_from_disk(site):
    assert (site / "assets" / "plotly.min.js").stat().st_size > 1_000_000
    pages = list(site.rglob("*.html"))
    for page in pages:
        text = page.read_text()
        assert text.count("plotly.min.js") <= 1 and "https://" not in text
        assert "<script>window.__pwned" not in text


def test_publish_to_folder_and_gh_pages(site, tmp_path):
    out = tmp_path / "ready"
    proc = run_suite("leaderboard", "publish", "--site", str(site), "--to", str(out))
    assert proc.returncode == 0 and (out / "index.html").is_file() and (out / ".nojekyll").exists()
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    (repo / "README").write_text("x")
    subprocess.run(["git", "add", "README"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True, env=env)
    for _ in range(2):
        proc = run_suite("leaderboard", "publish", "--site", str(site), "--gh-pages", "--repo", str(repo), env=env)
        assert proc.returncode == 0, proc.stderr
    files = subprocess.run(["git", "ls-tree", "-r", "--name-only", "gh-pages"], cwd=repo, capture_output=True,
                           text=True).stdout.split()
    assert "index.html" in files and "assets/plotly.min.js" in files
    log = subprocess.run(["git", "log", "--oneline", "gh-pages"], cwd=repo, capture_output=True, text=True).stdout
    assert len(log.splitlines()) == 2
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == ""
    assert subprocess.run(["git", "branch", "--show-current"], cwd=repo, capture_output=True, text=True).stdout.strip() == "main"


def test_add_validates_and_names_row_and_field(tmp_path):
    results = write_results(tmp_path / "src", n_tasks=4, seeds=(0,), algos=["good"], hostile=False)
    from metaft.suite.results import RunFolder

    good = RunFolder(results, "good-minilm-s0").read_tasks()
    rows = good.copy()
    good["run_id"] = "submitted-good"
    path = tmp_path / "sub.parquet"

    def attempt(df):
        df.to_parquet(path, index=False)
        return run_suite("leaderboard", "add", str(path), "--results", str(tmp_path / "lb"))

    bad = good.copy(); bad.loc[2, "metric"] = 1.7
    proc = attempt(bad)
    assert proc.returncode == 2 and "row 2" in proc.stderr and "field metric = 1.7 is outside [0, 1]" in proc.stderr
    bad = good.copy(); bad.loc[1, "ft_seconds"] = float("nan")
    assert "row 1" in (p := attempt(bad)).stderr and "ft_seconds" in p.stderr and "NaN" in p.stderr
    bad = good.copy(); bad.loc[3, "dataset"] = "imdbx"
    assert "row 3" in (p := attempt(bad)).stderr and "unknown dataset 'imdbx'" in p.stderr
    bad = pd.concat([good, good.iloc[[0]]], ignore_index=True)
    assert "row 4" in (p := attempt(bad)).stderr and "duplicates" in p.stderr
    assert "missing column(s) metric" in attempt(good.drop(columns=["metric"])).stderr
    assert not (tmp_path / "lb").exists()  # nothing written on rejection
    proc = attempt(good)
    assert proc.returncode == 0, proc.stderr
    from metaft.suite.results import load_results

    runs, tasks = load_results(tmp_path / "lb")
    assert len(runs) == 1 and len(tasks) == 4 and rows["metric"].iloc[0] == tasks["metric"].iloc[0]
    assert attempt(good).returncode == 2  # the same run twice is refused


def test_serve_answers_on_localhost(site):
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([SUITE, "leaderboard", "serve", "--site", str(site), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "serving" in proc.stdout.readline()
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10).read().decode()
        js = urllib.request.urlopen(f"http://127.0.0.1:{port}/assets/plotly.min.js", timeout=10).read()
        assert "table class=\"leaderboard\"" in page and len(js) > 1_000_000
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_each_planted_verdict_shows_on_its_row(browser, tmp_path):
    from results_fixture import PLANTED_VERDICTS, write_planted_verdicts
    from selenium.webdriver.common.by import By

    results = write_planted_verdicts(tmp_path / "results")
    out = tmp_path / "site"
    proc = run_suite("leaderboard", "build", "--results", str(results), "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    browser.get((out / "datasets" / "ag_news.html").as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "table.verdicts tbody tr")
    shown = {r.find_element(By.CSS_SELECTOR, "td.algo").text: r.find_element(By.CSS_SELECTOR, "td.verdict").text
             for r in rows}
    assert shown == PLANTED_VERDICTS
    assert console_errors(browser) == []


def test_the_hindsight_oracle_is_shown_apart_and_never_ranked(browser, tmp_path):
    import json

    from selenium.webdriver.common.by import By

    from metaft.suite.results import RunFolder, load_results

    results = write_results(tmp_path / "results", n_tasks=8, seeds=(0,), hostile=False)
    _, tasks = load_results(results)
    for mode, bump in (("shared", 0.0), ("hindsight", 0.05)):
        rows = tasks[tasks["algo"] == "good"].copy()
        run_id = f"intermediate-{mode}"
        folder = RunFolder(results, run_id)
        for row in rows.to_dict("records"):
            chosen = "sst2" if (row["task_index"] // 4) % 2 else "imdb"  # per dataset: one hit, one miss
            finals = {"imdb": row["metric"] + bump, "sst2": row["metric"]}
            info = {"source": max(finals, key=finals.get), "final_metric": finals} if mode == "hindsight" \
                else {"source": chosen}
            row.update(run_id=run_id, algo="intermediate", eval_mode=mode, metric=max(finals.values()) if
                       mode == "hindsight" else finals[chosen], adapt_info=json.dumps(info))
            folder.write_task(int(row["task_index"]), row)
        (folder.path / "manifest.json").write_text(json.dumps({"run_id": run_id}))
        folder.write_run({"run_id": run_id, "algo": "intermediate", "model": "minilm", "seed": 0,
                          "benchmark": "cross-dataset-v1", "episodes_fingerprint": "fp0", "n_tasks": len(rows),
                          "eval_mode": mode})
    out = tmp_path / "site"
    proc = run_suite("leaderboard", "build", "--results", str(results), "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    browser.get((out / "index.html").as_uri())
    ranked = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "table.leaderboard td.algo")]
    assert "intermediate" in ranked and not any("oracle" in a for a in ranked)
    for table in ("stratified", "amortization"):
        assert not any("oracle" in c.text for c in browser.find_elements(By.CSS_SELECTOR, f"table.{table} td.algo"))
    regret = browser.find_elements(By.CSS_SELECTOR, "table.regret tbody tr")
    assert len(regret) == 4  # one row per dataset
    cells = [td.text for td in regret[0].find_elements(By.TAG_NAME, "td")]
    assert cells[2] == "intermediate" and float(cells[6]) > 0  # the selector missed the oracle's source half the time
    assert cells[8] == "50%"
    assert console_errors(browser) == []


def test_the_overview_neither_ranks_nor_averages_unlike_metrics(tmp_path):
    from metaft.leaderboard.site import SiteBuilder, load_site_data

    data = load_site_data([str(write_results(tmp_path / "r", n_tasks=8, seeds=(0,), hostile=False))])
    names = data.tasks["metric_name"].astype(str)
    data.tasks["metric_name"] = names.where(data.tasks["dataset"].astype(str) != "ontonotes5", "entity_f1")
    builder = SiteBuilder(data, tmp_path / "site", n_resamples=0)
    overview, *_ = builder.leaderboard_table(builder.core, "minilm", with_datasets=True)
    assert all(row[0].text == "–" and row[3].text == "–" for row in overview.rows)  # no rank, no pooled mean
    page, *_ = builder.leaderboard_table(builder.core[builder.core["dataset"] == "ag_news"], "minilm", False)
    assert all(isinstance(row[0].text, int) for row in page.rows)  # one metric on a dataset page: ranked
