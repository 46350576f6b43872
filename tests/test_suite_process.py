"""The tests' forked `suite` commands (tests/suite_process.py) behave as the installed script does."""
from __future__ import annotations

import os
import subprocess
import time

import pytest
import suite_process
from suite_process import SUITE, run_suite
from test_run import TINY

from metaft.suite.results import load_results


def test_a_forked_run_equals_a_fresh_process(tiny_models, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY.format(n_test=2, ft_steps=3))
    args = ["run", "--algo", "reptile", "--model", str(tiny_models["bert"]), "--config", str(config), "--no-progress"]
    forked = run_suite(*args, "--out", str(tmp_path / "forked"))
    fresh = subprocess.run([SUITE, *args, "--out", str(tmp_path / "fresh")], capture_output=True, text=True,
                           timeout=600)
    assert forked.returncode == fresh.returncode == 0, (forked.stderr, fresh.stderr)
    assert forked.stderr == fresh.stderr == ""
    columns = ["run_id", "task_index", "metric", "metric_at_0", "steps_to_target"]
    assert load_results(tmp_path / "forked")[1][columns].equals(load_results(tmp_path / "fresh")[1][columns])
    first_line = fresh.stdout.splitlines()[0]
    assert forked.stdout.splitlines()[0] == first_line
    bad = ["run", "--algo", "reptil", "--model", str(tiny_models["bert"]), "--config", str(config)]
    forked, fresh = run_suite(*bad), subprocess.run([SUITE, *bad], capture_output=True, text=True, timeout=600)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert forked.returncode == 2 and forked.stderr.count("\n") == 1


def test_cwd_environment_and_timeout_are_the_commands_own(tiny_models, tmp_path):
    here = tmp_path / "here"
    here.mkdir()
    (here / "tiny.toml").write_text(TINY.format(n_test=2, ft_steps=1))
    relative = run_suite("run", "--algo", "baseline", "--model", str(tiny_models["bert"]), "--config", "tiny.toml",
                         "--out", "r", "--no-progress", cwd=here)
    assert relative.returncode == 0 and len(load_results(here / "r")[0]) == 1, relative.stderr
    assert not (tmp_path / "r").exists() and os.getcwd() != str(here)
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    missing = run_suite("tasks", "show", "ag_news", env={**os.environ, "SUITE_DATA_DIR": str(empty)})
    assert missing.returncode == 2 and f"missing data file {empty}/ag_news/" in missing.stderr, missing.stderr
    config = tmp_path / "slow.toml"
    config.write_text(TINY.format(n_test=8, ft_steps=400))
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_suite("run", "--algo", "baseline", "--model", str(tiny_models["bert"]), "--config", str(config),
                  "--out", str(tmp_path / "slow"), "--no-progress", timeout=3)
    assert time.monotonic() - start < 60
    assert run_suite("--version").returncode == 0  # the server survives a killed command


def test_a_change_to_an_import_time_variable_runs_as_a_plain_subprocess(monkeypatch):
    monkeypatch.delenv("SUITE_TEST_NO_FORK", raising=False)  # the rule itself, also in a no-fork session
    assert suite_process._forkable(dict(os.environ))
    assert not suite_process._forkable({**os.environ, "HF_HUB_OFFLINE": "0"})
    assert not suite_process._forkable({**os.environ, "OMP_NUM_THREADS": "7"})
    assert suite_process._forkable({**os.environ, "SUITE_DATA_DIR": "/elsewhere", "RAY_ADDRESS": ""})
