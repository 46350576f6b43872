"""Results, Tune state and the published site on object storage: a real S3 server (moto's server
mode on 127.0.0.1, started here) and the real `suite` commands, with nothing shared on disk."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from results_fixture import write_results
from s3_server import SECRET, credentials_checked, free_port, s3_server
from suite_process import SUITE, cli_many, run_suite
from test_run import TINY

from metaft.leaderboard.site import PAGE_KEYS
from metaft.suite.results import RunFolder, load_results

COLS = ["run_id", "task_index", "task_id", "metric", "metric_at_0", "target", "steps_to_target"]


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


def run_cmd(model, cfg, out, algo="reptile", *extra) -> str:
    return f"run --algo {algo} --model {model} --config {cfg} --out {out} --no-progress " + " ".join(extra)


def rows(where) -> pd.DataFrame:
    _, tasks = load_results(where)
    return tasks.sort_values(["run_id", "task_index"]).reset_index(drop=True)


def test_a_run_on_s3_killed_and_resumed_equals_the_same_run_on_disk(s3, tiny_models, tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.format(n_test=8, ft_steps=24))
    model, local, remote = tiny_models["bert"], tmp_path / "local", s3.uri("killed")
    first = cli_many([("base-local", run_cmd(model, cfg, local, "baseline")),
                      ("base-s3", run_cmd(model, cfg, remote, "baseline")),
                      ("reptile-local", run_cmd(model, cfg, local))])
    assert all(code == 0 for code, _, _ in first.values()), first
    # kill -9 while the reptile run on S3 is in its meta-test tasks
    proc = subprocess.Popen([SUITE, *run_cmd(model, cfg, remote).split()], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and sum("/tasks/" in k and k.startswith("killed/reptile") for k in s3.keys("killed/")) < 2:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    parts = [k for k in s3.keys("killed/") if k.startswith("killed/reptile") and "/tasks/" in k]
    assert 2 <= len(parts) < 8, "the kill should land during meta-testing"
    assert not [k for k in s3.keys("killed/reptile") if k.endswith("/run.parquet")]
    # the same results folder copied to the bucket gives the same leaderboard, byte for byte
    copy = s3.uri("copy")
    for file in (p for p in local.rglob("*") if p.is_file() and ".index" not in p.parts and ".locks" not in p.parts):
        s3.client().put_object(Bucket=s3.bucket, Key=f"copy/{file.relative_to(local).as_posix()}",
                               Body=file.read_bytes())
    site_local, site_s3 = tmp_path / "site-local", tmp_path / "site-s3"
    second = cli_many([("again", run_cmd(model, cfg, remote)),
                       ("resumed", run_cmd(model, cfg, remote, "reptile", "--resume")),
                       ("compare-local", f"leaderboard compare --results {local} --resamples 99"),
                       ("compare-s3", f"leaderboard compare --results {copy} --resamples 99"),
                       ("build-local", f"leaderboard build --results {local} --out {site_local} --resamples 99"),
                       ("build-s3", f"leaderboard build --results {copy} --out {site_s3} --resamples 99"),
                       ("results-s3", f"results {remote}")])
    assert second["again"][0] == 2 and "--resume" in second["again"][2]
    for name in ("resumed", "compare-local", "compare-s3", "build-local", "build-s3", "results-s3"):
        assert second[name][0] == 0, (name, second[name])
    # the killed and resumed run on S3 has exactly the rows of the uninterrupted run on disk
    a, b = rows(local), rows(remote)
    assert len(b) == 16 and not b.duplicated(["run_id", "task_index"]).any()
    pd.testing.assert_frame_equal(a[COLS], b[COLS])
    assert a["curve_metric"].map(list).tolist() == b["curve_metric"].map(list).tolist()
    assert second["compare-local"][1] == second["compare-s3"][1] and "reptile" in second["compare-s3"][1]
    files = sorted(p.relative_to(site_local) for p in site_local.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(site_s3) for p in site_s3.rglob("*") if p.is_file())
    assert {"copy/.index/runs.parquet", "copy/.index/tasks.parquet"} <= set(s3.keys("copy/.index/"))  # the index too
    differ = [f for f in files if (site_local / f).read_bytes() != (site_s3 / f).read_bytes()
              and f.name != PAGE_KEYS]  # the incremental build's cache: it holds the manifests' stamps
    assert not differ, differ
    # what is stored: whole objects under deterministic names, the parts consolidated, no temporaries
    keys = s3.keys("killed/")
    assert not [k for k in keys if "/tasks/" in k or k.endswith(".tmp")], keys
    # the credentials reached the client through the environment only: in no object, no output
    client = s3.client()
    assert not [k for k in keys if SECRET.encode() in client.get_object(Bucket=s3.bucket, Key=k)["Body"].read()]
    assert SECRET not in json.dumps([first, second])
    assert {k.split("/", 2)[2] for k in keys if k.startswith("killed/reptile")} >= {
        "manifest.json", "episodes.json", "tasks.parquet", "run.parquet"}


def test_two_processes_writing_the_same_run_leave_one_row_per_task(s3, tiny_models, tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.format(n_test=4, ft_steps=5))
    model, remote = tiny_models["bert"], s3.uri("twice")
    args = [SUITE, *run_cmd(model, cfg, remote, "baseline", "--resume").split()]
    procs = [subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    runs, tasks = load_results(remote)
    assert len(runs) == 1 and len(tasks) == 4 and tasks["task_index"].is_unique
    alone = cli_many([("alone", run_cmd(model, cfg, tmp_path / "alone", "baseline"))])
    assert alone["alone"][0] == 0, alone
    pd.testing.assert_frame_equal(rows(tmp_path / "alone")[COLS], rows(remote)[COLS])


@pytest.mark.parametrize("reader", ["write_run", "read_tasks"])
def test_a_second_writer_removing_the_parts_mid_read_loses_no_row(reader, s3, monkeypatch):
    """The interleaving that failed CI once, made deterministic: writer A lists the task parts, then
    writer B consolidates the same run and removes the parts, then A reads what it listed."""
    from metaft.suite.storage import Location

    a, b = RunFolder(s3.uri("race-" + reader), "r"), RunFolder(s3.uri("race-" + reader), "r")
    for i in range(4):
        a.write_task(i, {"run_id": "r", "task_index": i, "metric": i / 10})
    listing, raced = Location.glob, []

    def glob_then_race(self, pattern):
        found = listing(self, pattern)
        if not raced:
            raced.append(True)
            b.write_run({"run_id": "r", "n_tasks": 4})  # B finishes the run: consolidates, removes the parts
            assert not listing(self, pattern)
        return found

    monkeypatch.setattr(Location, "glob", glob_then_race)
    if reader == "write_run":
        a.write_run({"run_id": "r", "n_tasks": 4})
    got = a.read_tasks()
    assert raced and sorted(got["task_index"]) == [0, 1, 2, 3] and got["metric"].tolist() == [0, 0.1, 0.2, 0.3]


def test_publish_to_a_bucket_with_content_types(s3, tmp_path):
    write_results(tmp_path / "results", n_tasks=8, seeds=(0,), hostile=False)
    site = tmp_path / "site"
    s3.client().put_object(Bucket=s3.bucket, Key="foreign/data.csv", Body=b"a,b\n")
    out = cli_many([("build", f"leaderboard build --results {tmp_path / 'results'} --out {site} --resamples 99"),
                    ("publish", f"leaderboard publish --site {site} --to {s3.uri('www')}"),
                    ("again", f"leaderboard publish --site {site} --to {s3.uri('www')}"),
                    ("foreign", f"leaderboard publish --site {site} --to {s3.uri('foreign')}")])
    assert out["build"][0] == 0 and out["publish"][0] == 0 and out["again"][0] == 0, out
    files = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    keys = s3.keys("www/")
    assert sorted(k[len("www/"):] for k in keys if not k.endswith(".metaft-publication")) == files
    client = s3.client()
    head = {k: client.head_object(Bucket=s3.bucket, Key=k)["ContentType"] for k in keys}
    assert head["www/index.html"].startswith("text/html")
    assert any(k.endswith(".js") for k in keys) and all(v.startswith("text/javascript") for k, v in head.items()
                                                        if k.endswith(".js"))
    body = client.get_object(Bucket=s3.bucket, Key="www/index.html")["Body"].read()
    assert body == (site / "index.html").read_bytes()
    assert out["foreign"][0] != 0 and "did not write" in out["foreign"][2]  # someone else's prefix is not replaced
    assert s3.keys("foreign/") == ["foreign/data.csv"]


def test_a_two_trial_tune_study_keeps_its_state_and_rows_on_s3(s3, tiny_models, tmp_path):
    cfg = tmp_path / "tune.toml"
    cfg.write_text(TINY.format(n_test=2, ft_steps=3))
    proc = run_suite("tune", "--name", "s3study", "--models", str(tiny_models["bert"]), "--config",
                     str(cfg), "--num-cpus", "2", "--algos", "baseline", "--seeds", "0", "1",
                     "--storage", s3.uri("tune"), "--out", s3.uri("tune-results"), env={**os.environ, "RAY_ADDRESS": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs, tasks = load_results(s3.uri("tune-results"))
    assert sorted(runs["seed"]) == [0, 1] and len(tasks) == 4
    state = s3.keys("tune/s3study/")
    assert any(Path(k).name.startswith("experiment_state") for k in state), state[:20]
    assert any("run_trial_" in k for k in state)
    client = s3.client()
    assert not [k for k in state if SECRET.encode() in client.get_object(Bucket=s3.bucket, Key=k)["Body"].read()]


@pytest.mark.parametrize("case", ["missing-bucket", "wrong-credentials", "unreachable"])
def test_storage_failures_are_one_line_naming_the_uri_and_the_fix(case, s3, tiny_models, tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.format(n_test=2, ft_steps=2))
    env = dict(os.environ)
    uri = s3.uri("bad")
    if case == "missing-bucket":
        uri = "s3://no-such-bucket-here/results"
    elif case == "unreachable":
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    commands = [("run", run_cmd(tiny_models["bert"], cfg, uri, "baseline")), ("results", f"results {uri}"),
                ("compare", f"leaderboard compare --results {uri}")]
    start = time.time()
    if case == "wrong-credentials":
        with credentials_checked():
            out = cli_many(commands, env=env)
    else:
        out = cli_many(commands, env=env)
    fix = {"missing-bucket": "does not exist", "wrong-credentials": "credentials",
           "unreachable": "cannot reach"}[case]
    for name, (code, _, stderr) in out.items():
        assert code != 0 and "Traceback" not in stderr, (name, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and fix in lines[0] and uri.split("/")[2] in lines[0], (name, stderr)
    assert time.time() - start < 120
    assert not s3.keys("bad/")
