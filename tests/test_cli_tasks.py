"""`suite tasks ...` as a user runs it: the installed console script, real data."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from suite_process import run_suite


def run(*args, env=None):
    return run_suite(*args, timeout=300, env={**os.environ, **(env or {})})


def test_tasks_list_shows_the_eight_with_rows(data_dir):
    out = run("tasks", "list", "--data-dir", str(data_dir))
    assert out.returncode == 0, out.stderr
    for name in ("imdb", "ag_news", "yelp_review_full", "sst2", "conll2003", "ontonotes5", "squad",
                 "natural_questions"):
        assert name in out.stdout
    assert "train=14041" in out.stdout and "validation=2655" in out.stdout


def test_tasks_show_renders_spec_and_episode(data_dir):
    out = run("tasks", "show", "ontonotes5")
    assert out.returncode == 0, out.stderr
    assert "tner/ontonotes5" in out.stdout and "support:" in out.stdout and "]B-" in out.stdout


def test_tasks_episodes_writes_a_manifest(tmp_path):
    out = run("tasks", "episodes", "--benchmark", "cross-dataset", "--meta-train-tasks", "8",
              "--meta-test-tasks", "4", "--out", str(tmp_path / "m.json"))
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "m.json").read_text())
    assert len(manifest["tasks"]) == 12 and manifest["fingerprint"] in out.stdout


def test_bad_input_is_one_line_and_nonzero(tmp_path):
    out = run("tasks", "show", "imbd")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "available: imdb" in out.stderr
    out = run("tasks", "list", "--data-dir", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "does not exist" in out.stderr and out.stdout == ""
    out = run("tasks", "show", "imdb", env={"SUITE_DATA_DIR": "", "HF_DATASETS_CACHE": str(tmp_path)})
    assert out.returncode == 2 and "--data-dir" in out.stderr


def test_the_cli_starts_without_torch_transformers_or_datasets():
    """`suite --help` and the `suite tune` driver stay light: the heavy libraries load where they are used."""
    code = ("import sys; from metaft.suite.cli import build_parser, _configure_logging; build_parser(); "
            "_configure_logging(0); print(sorted({'torch', 'transformers', 'datasets'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
