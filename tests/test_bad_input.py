"""Bad input, bad files and bad places, as a new (or hostile) user types them.

`PROBES` is the table CI keeps: each row is a command, the exit code it must give, a fragment of
its one-line message, and the promise that it wrote nothing. All probes run in one subprocess
(one import of torch and transformers, not one per probe). The data-loss cases (a build or a
publish that would replace what it did not write, a resume against other data, two writers, a
damaged or doubled results folder) are tests of their own below.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from suite_process import cli_many, run_suite

from metaft.suite.results import RunFolder, load_results

TINY = """
stride = 8
datasets = ["sst2", "ag_news", "conll2003", "ontonotes5"]
n_meta_train = 2
n_meta_test = 2
meta_batch_size = 2
inner_steps = 1
ft_steps = 2
max_length = 32
batch_size = 8
[shapes.classification]
ways = 3
shots = 2
queries = 2
[shapes.ner]
ways = 2
shots = 2
queries = 2
"""

RUN = "run --algo baseline --model {model} --config {tiny} --no-progress --out {tmp}/new"
# (id, command, exit code, fragment of the one-line message)
PROBES = [
    ("run-out-is-file", "run --algo baseline --model {model} --config {tiny} --out {tiny}", 2, "is a file, not a folder"),
    ("run-out-devnull", "run --algo baseline --model {model} --config {tiny} --out /dev/null", 2, "is a file"),
    ("run-seed-negative", RUN + " --seed -5", 2, "--seed: must be in [0, 4294967295]"),
    ("run-seed-huge", RUN + " --seed 99999999999999999999", 2, "must be in [0, 4294967295]"),
    ("run-tasks-huge", RUN + " --meta-test-tasks 100000000", 2, "at most 10,000 tasks"),
    ("run-lr-inf", RUN + " --finetune-lr inf", 2, "finetune_lr must be a finite number > 0"),
    ("run-lr-nan", RUN + " --finetune-lr nan", 2, "finetune_lr must be a finite number > 0"),
    ("run-ft-steps-0", RUN + " --ft-steps 0", 2, "--ft-steps must be >= 1"),
    ("run-datasets-empty", RUN + " --datasets ''", 2, "--datasets is empty"),
    ("run-meta-epochs-0", RUN.replace("baseline", "reptile") + " --meta-epochs 0", 2, "meta-learns, but meta_epochs is 0"),
    ("run-zero-without-deepspeed", RUN + " --zero 3", 2, "--zero needs --engine deepspeed"),
    ("run-first-order-baseline", RUN + " --first-order", 2, "has no first-order variant"),
    ("run-resume-overwrite", RUN + " --resume --overwrite", 2, "--resume and --overwrite contradict"),
    ("run-one-way", RUN + " --config {one_way}", 2, "ways must be >= 2"),
    ("run-ways-over-classes", RUN + " --config {ten_way}", 2, "no dataset of this benchmark has that many classes"),
    ("run-max-length-huge", RUN + " --max-length 100000", 2, "exceeds the"),
    ("tasks-show-seed", "tasks show ag_news --seed -1", 2, "must be in [0, 4294967295]"),
    ("tasks-episodes-out-dir", "tasks episodes --out {tmp}", 2, "is a folder; give a file name"),
    ("plan-effect-inf", "plan --results {results} --effect inf", 2, "--effect must be a finite number"),
    ("plan-sd-zero", "plan --sd 0", 2, "--sd must be a finite number > 0"),
    ("build-out-cwd", "leaderboard build --results {results} --out .", 2, "contains --results"),
    ("build-out-results", "leaderboard build --results {results} --out {results}", 2, "is --results"),
    ("build-out-foreign", "leaderboard build --results {results} --out {foreign}", 2, "did not write"),
    ("build-out-file", "leaderboard build --results {results} --out {tiny}", 2, "is a file"),
    ("build-resamples-negative", "leaderboard build --results {results} --out {tmp}/s --resamples -5", 2,
     "--resamples must be >= 0"),
    ("build-baseline-typo", "leaderboard build --results {results} --out {tmp}/s --baseline baselin", 2,
     "'baselin' is not an algorithm"),
    ("compare-margin-negative", "leaderboard compare --results {results} --margin -1", 2, "--margin must be"),
    ("compare-margin-nan", "leaderboard compare --results {results} --margin nan", 2, "--margin must be"),
    ("compare-margin-huge", "leaderboard compare --results {results} --margin 1e308", 2, "--margin must be"),
    ("publish-to-site", "leaderboard publish --site {site} --to {site}", 2, "is --site"),
    ("publish-to-parent", "leaderboard publish --site {site} --to {tmp}", 2, "contains --site"),
    ("publish-to-file", "leaderboard publish --site {site} --to {tiny}", 2, "is a file"),
    ("publish-to-foreign", "leaderboard publish --site {site} --to {foreign}", 2, "did not write"),
    ("serve-port-range", "leaderboard serve --site {site} --port 99999", 2, "--port must be in 0..65535"),
    ("serve-bad-host", "leaderboard serve --site {site} --host no-such-host.invalid", 2, "does not resolve"),
    ("add-results-is-file", "leaderboard add {tiny} --results {tiny}", 2, ""),
    ("tune-loguniform-zero", "tune --algos baseline --out {tmp}/t --storage {tmp}/st --search {search_log0}", 2,
     "log-uniform range needs low > 0"),
    ("tune-empty-choice", "tune --algos baseline --out {tmp}/t --storage {tmp}/st --search {search_empty}", 2,
     "non-empty list"),
    ("tune-string-bound", "tune --algos baseline --out {tmp}/t --storage {tmp}/st --search {search_str}", 2,
     "must be a finite number"),
    ("tune-inverted", "tune --algos baseline --out {tmp}/t --storage {tmp}/st --search {search_inv}", 2,
     "low must be < high"),
    ("tune-cpus-zero", "tune --algos baseline --out {tmp}/t --storage {tmp}/st --cpus-per-trial 0", 2,
     "--cpus-per-trial must be > 0"),
    ("tune-samples-negative", "tune --algos baseline --out {tmp}/t --storage {tmp}/st --num-samples -1", 2,
     "--num-samples must be >= 1"),
    ("tune-samples-zero", "tune --algos baseline --out {tmp}/t --storage {tmp}/st --num-samples 0", 2,
     "--num-samples must be >= 1"),
    ("tune-name-escapes", "tune --algos baseline --out {tmp}/t --storage {tmp}/st --name ../../x", 2,
     "must be a plain folder name"),
    ("tune-dead-address", "tune --algos baseline --out {tmp}/t --storage {tmp}/st --address 127.0.0.1:1", 2,
     "no Ray cluster answers"),
    ("tune-dead-ray-client", "tune --algos baseline --out {tmp}/t --storage {tmp}/st --address ray://127.0.0.1:1",
     2, "no Ray cluster answers"),
    ("tune-model-offline", "tune --algos baseline --out {tmp}/t --storage {tmp}/st --models bert-base-uncased", 2,
     "not in the local Hugging Face cache"),
    ("tune-zero-without-deepspeed", "tune --algos baseline --out {tmp}/t --storage {tmp}/st --zero 3", 2,
     "--zero needs --engine deepspeed"),
]

def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if ".cache" not in p.parts)


@pytest.fixture(scope="module")
def place(tmp_path_factory, tiny_models):
    """A results folder with a baseline and a reptile run, a built site, and a folder of someone else's."""
    root = tmp_path_factory.mktemp("bad-input")
    tiny = root / "tiny.toml"
    tiny.write_text(TINY)
    (root / "one_way.toml").write_text(TINY.replace("ways = 3", "ways = 1"))
    (root / "ten_way.toml").write_text(TINY.replace("ways = 3", "ways = 10"))
    for name, body in {"search_log0": 'type = "loguniform"\nlow = 0\nhigh = 1',
                       "search_empty": 'type = "choice"\nvalues = []',
                       "search_str": 'type = "uniform"\nlow = "a"\nhigh = 1',
                       "search_inv": 'type = "uniform"\nlow = 2.0\nhigh = 1.0'}.items():
        (root / f"{name}.toml").write_text(f"[search.finetune_lr]\n{body}\n")
    results, site = root / "results", root / "site"
    run = f"run --model {tiny_models['bert']} --config {tiny} --out {results} --no-progress --algo"
    got = cli_many([("baseline", f"{run} baseline"), ("reptile", f"{run} reptile"),
                    ("site", f"leaderboard build --results {results} --out {site} --resamples 0")])
    assert all(code == 0 for code, _, _ in got.values()), got
    foreign = root / "project"
    foreign.mkdir()
    (foreign / "train.py").write_text("print('mine')\n")
    return {"tmp": root, "tiny": tiny, "results": results, "site": site, "foreign": foreign,
            "model": tiny_models["bert"], **{k: root / f"{k}.toml" for k in
                                             ("one_way", "ten_way", "search_log0", "search_empty", "search_str",
                                              "search_inv")}}


@pytest.fixture(scope="module")
def probe_results(place):
    before = tree(place["tmp"])
    results = cli_many([(pid, cmd.format(**place)) for pid, cmd, _, _ in PROBES], cwd=place["tmp"])
    return results, before, tree(place["tmp"])


@pytest.mark.parametrize("pid, cmd, code, fragment", PROBES, ids=[p[0] for p in PROBES])
def test_probe_is_a_clean_one_line_refusal(probe_results, pid, cmd, code, fragment):
    results, _, _ = probe_results
    got, _, stderr = results[pid]
    assert got == code, f"{cmd}: exit {got}, stderr: {stderr}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"{cmd}: not one line:\n{stderr}"
    assert fragment in lines[0]


def test_no_probe_wrote_anything(probe_results):
    _, before, after = probe_results
    assert sorted(set(after) - set(before)) == []
    assert sorted(set(before) - set(after)) == []


def suite(*args, cwd=None, env=None):
    return run_suite(*map(str, args), cwd=cwd, env={**os.environ, **(env or {})})


def test_build_never_replaces_the_working_folder_or_the_results(place, tmp_path):
    project = tmp_path / "proj"
    shutil.copytree(place["results"], project / "results")
    (project / "train.py").write_text("mine\n")
    got = cli_many([("cwd", f"leaderboard build --results results --out {project}"),
                    ("results", "leaderboard build --results results --out results"),
                    ("first", "leaderboard build --results results --out site --resamples 0"),
                    ("again", "leaderboard build --results results --out site --resamples 0")], cwd=project)
    for name in ("cwd", "results"):
        assert got[name][0] == 2 and "choose a separate folder" in got[name][2]
    assert got["first"][0] == got["again"][0] == 0, got["again"][2]  # its own site is replaced
    assert (project / "train.py").read_text() == "mine\n"
    assert len(load_results(project / "results")[0]) == 2
    assert (project / "site" / ".metaft-site").is_file() and (project / "site" / "index.html").is_file()
    assert sorted(p.name for p in project.iterdir()) == ["results", "site", "train.py"], "no temporary folder left"


def test_publish_replaces_only_its_own_publication(place, tmp_path):
    to, home = tmp_path / "public", tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    first = cli_many([("first", f"leaderboard publish --site {place['site']} --to {to}")])
    assert first["first"][0] == 0
    (to / "stale.html").write_text("old")
    got = cli_many([("again", f"leaderboard publish --site {place['site']} --to {to}"),
                    *[(str(t), f"leaderboard publish --site {place['site']} --to {t}")
                      for t in (home, tmp_path, place["site"])]])
    assert got["again"][0] == 0
    assert (to / ".metaft-publication").is_file() and (to / "index.html").is_file() and not (to / "stale.html").exists()
    for target in (home, tmp_path, place["site"]):
        assert got[str(target)][0] == 2, target
    assert (home / "notes").is_dir() and (place["site"] / "index.html").is_file()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_resume_against_changed_data_is_refused_and_keeps_the_rows(place, data_dir, tmp_path):
    """The mirror is copied with its manifest; a changed meta-test file is refused by its sha256, and
    with the manifest updated too (an intended change) the resume is refused by the episode
    fingerprint, so one run never holds rows of two samples."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    mirror = tmp_path / "mirror"
    for name in ("sst2", "ag_news", "conll2003", "ontonotes5"):
        shutil.copytree(data_dir / name, mirror / name)
    shutil.copy(data_dir / "manifest.json", mirror / "manifest.json")
    out = tmp_path / "results"  # the fixture's baseline run: the same episodes (data by content, not path)
    shutil.copytree(next(place["results"].glob("baseline-*")), out / next(place["results"].glob("baseline-*")).name)
    args = ["run", "--algo", "baseline", "--model", place["model"], "--config", place["tiny"], "--out", out,
            "--no-progress"]
    (run_dir,) = out.glob("baseline-*")
    (run_dir / "run.parquet").unlink()  # as if killed before the end
    before = {p.name: sha256(p) for p in run_dir.iterdir() if p.is_file()}

    table = pq.read_table(mirror / "ag_news" / "test.parquet")
    rows = table.to_pylist()
    rows[0]["text"] = "changed " + rows[0]["text"]
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), mirror / "ag_news" / "test.parquet")
    proc = suite(*args, "--resume", env={"SUITE_DATA_DIR": str(mirror)})
    assert proc.returncode == 2 and "does not match the mirror's" in proc.stderr

    manifest = json.loads((mirror / "manifest.json").read_text())
    manifest["datasets"]["ag_news"]["splits"]["test"]["sha256"] = sha256(mirror / "ag_news" / "test.parquet")
    (mirror / "manifest.json").write_text(json.dumps(manifest))
    proc = suite(*args, "--resume", env={"SUITE_DATA_DIR": str(mirror)})
    assert proc.returncode == 2 and "cannot resume" in proc.stderr and "ag_news/test" in proc.stderr
    assert {p.name: sha256(p) for p in run_dir.iterdir() if p.is_file()} == before


def test_a_second_writer_of_the_same_run_is_refused(place, tmp_path):
    out = tmp_path / "results"
    shutil.copytree(next(place["results"].glob("baseline-*")), out / next(place["results"].glob("baseline-*")).name)
    args = ["run", "--algo", "baseline", "--model", place["model"], "--config", place["tiny"], "--out", out,
            "--no-progress"]
    (run_dir,) = out.glob("baseline-*")
    (run_dir / "run.parquet").unlink()
    with RunFolder(out, run_dir.name).lock():  # another process holds the run
        proc = suite(*args, "--resume")
    assert proc.returncode == 2 and "is being written by" in proc.stderr
    assert not (run_dir / "run.parquet").exists()
    assert suite(*args, "--resume").returncode == 0  # the lock goes with its holder
    assert len(load_results(out)[1]) == 2


def test_the_same_run_never_enters_an_analysis_twice(place):
    results = place["results"]
    runs, tasks = load_results(results)
    (run_dir,) = results.glob("reptile-*")
    for dirs in ((results, results), (results, run_dir), (results, results.parent / results.name)):
        again_runs, again_tasks = load_results(*dirs)
        assert len(again_runs) == len(runs) and len(again_tasks) == len(tasks)
    one = suite("leaderboard", "compare", "--results", results)
    two = suite("leaderboard", "compare", "--results", results, results)
    assert one.returncode == two.returncode == 0 and one.stdout == two.stdout
    assert "counted once" in two.stderr


def test_a_damaged_run_is_named_in_one_line_or_left_out_on_request(place, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(place["results"], results)
    (damaged,) = results.glob("reptile-*")
    data = (damaged / "tasks.parquet").read_bytes()
    (damaged / "tasks.parquet").write_bytes(data[: len(data) // 2])
    commands = {"results": f"results {results}", "compare": f"leaderboard compare --results {results}",
                "plan": f"plan --results {results}", "build": f"leaderboard build --results {results} --out {tmp_path}/s",
                "skip": f"results {results} --skip-corrupt"}
    got = cli_many(list(commands.items()))
    for name in ("results", "compare", "plan", "build"):
        code, _, stderr = got[name]
        assert code == 2 and stderr.count("\n") == 1 and f"{damaged.name}/tasks.parquet" in stderr, (name, stderr)
    code, stdout, stderr = got["skip"]
    assert code == 0 and "left out 1 damaged run" in stderr and "baseline" in stdout and "reptile" not in stdout
    assert not (tmp_path / "s").exists()
    (kept,) = results.glob("baseline-*")
    (kept / "manifest.json").write_text("")
    code, _, stderr = cli_many([("build", f"leaderboard build --results {results} --out {tmp_path}/s "
                                          f"--skip-corrupt")])["build"]
    lines = stderr.strip().splitlines()  # the note on what was left out, then the one-line error
    assert code == 2 and len(lines) == 2 and "left out 1 damaged run" in lines[0]
    assert "manifest.json is not valid JSON" in lines[1]


def test_control_characters_in_a_row_reach_the_terminal_escaped(place, tmp_path):
    runs, tasks = load_results(place["results"])
    rows = tasks[tasks["algo"] == "baseline"].copy()
    rows["run_id"] = "hostile-run"
    rows["model"] = "evil\x1b[2J\x1b[31m"
    path = tmp_path / "sub.jsonl"
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    out = tmp_path / "added"
    proc = suite("leaderboard", "add", path, "--results", out)
    if proc.returncode != 0:  # the submission validator may refuse the name itself: that is fine too
        assert proc.stderr.count("\n") == 1
        return
    listed = suite("results", out)
    assert "\x1b" not in listed.stdout and "\\x1b[2J" in listed.stdout


def test_no_network_for_the_hub_is_one_line_and_quick(place, tmp_path):
    """Without a mirror and without network the Hub client would retry for about 25 s and print each
    warning twice; one connect to the Hub says so at once, and the error is one line."""
    cmd = f"run --algo baseline --model {place['model']} --config {place['tiny']} --out {tmp_path}/r --no-progress"
    code, _, stderr = cli_many([("hub", cmd)], env={"SUITE_DATA_DIR": "", "HF_HUB_OFFLINE": "0",
                                                    "HF_DATASETS_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"})["hub"]
    assert code == 2 and "cannot load" in stderr and "local mirror" in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "r").exists()
