"""`suite run` end to end on a tiny config with the mirror: rows, determinism, resume, errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from suite_process import SUITE, cli_many, run_suite

from metaft.suite.results import TASK_COLUMNS, load_results

TINY = """
stride = 8
protocol = "cross-dataset"
datasets = ["sst2", "ag_news", "conll2003", "ontonotes5"]
n_meta_train = 4
meta_epochs = 1
n_meta_test = {n_test}
meta_batch_size = 2
inner_steps = 1
ft_steps = {ft_steps}
max_length = 40
batch_size = 8
finetune_lr = 1e-3
[shapes.classification]
ways = 3
shots = 2
queries = 3
[shapes.ner]
ways = 2
shots = 2
queries = 2
"""


@pytest.fixture
def tiny_config(tmp_path):
    def make(n_test=4, ft_steps=5, name="tiny.toml"):
        path = tmp_path / name
        path.write_text(TINY.format(n_test=n_test, ft_steps=ft_steps))
        return path
    return make


def suite(*args, timeout=600):
    return run_suite(*map(str, args), timeout=timeout)


def run_args(model, config, out, algo="reptile", *extra):
    return ["run", "--algo", algo, "--model", str(model), "--config", str(config), "--out", str(out),
            "--no-progress", *extra]


@pytest.mark.parametrize("algo", ["baseline", "reptile", "fomaml", "maml"])
def test_run_writes_complete_rows(algo, tiny_models, tiny_config, tmp_path):
    out = tmp_path / "results"
    proc = suite(*run_args(tiny_models["bert"], tiny_config(), out, algo))
    assert proc.returncode == 0, proc.stderr
    assert "overall" in proc.stdout and "oracle stop" in proc.stdout
    runs, tasks = load_results(out)
    assert len(runs) == 1 and len(tasks) == 4
    assert set(TASK_COLUMNS) <= set(tasks.columns)
    assert tasks["task_index"].tolist() == [0, 1, 2, 3]
    assert set(tasks["dataset"]) == {"ag_news", "ontonotes5"}
    assert tasks["metric"].between(0, 1).all() and tasks["metric_at_0"].between(0, 1).all()
    for steps, metric, seconds in zip(tasks["curve_steps"], tasks["curve_metric"], tasks["curve_seconds"]):
        assert list(steps) == [0, 1, 2, 4, 5]
        assert all(0 <= m <= 1 for m in metric)
        assert list(seconds) == sorted(seconds) and seconds[0] >= 0
    assert (tasks["ft_seconds"] > 0).all() and (tasks["ft_tokens"] > 0).all()
    per_token = tasks["ft_flops"] / tasks["ft_tokens"]  # 6 x non-embedding parameters for full fine-tuning
    assert ((per_token > 0) & (per_token < 6 * runs["trainable_parameters"].iloc[0])).all()
    run = runs.iloc[0]
    assert run["meta_steps"] == (0 if algo == "baseline" else 2)
    manifest = json.loads((out / run["run_id"] / "manifest.json").read_text())
    assert manifest["config"]["algo"] == algo and manifest["packages"]["torch"].startswith("2.")
    assert manifest["hardware"]["torch_threads"] >= 1  # seconds per task depend on it
    assert manifest["episodes_fingerprint"] == run["episodes_fingerprint"]
    assert all(v.startswith("sha256:") for v in manifest["data_fingerprints"].values())
    assert not (out / run["run_id"] / "init.pt").exists()


def test_the_manifest_records_the_thread_count_the_run_used():
    """Seconds per task depend on torch's thread count (two runs side by side at one thread each
    take 1.6x as long per task as one at two), so the manifest's hardware says which it was."""
    from metaft.suite.results import hardware

    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert hardware()["torch_threads"] == threads
    finally:
        torch.set_num_threads(before)


def test_a_run_that_starts_on_a_busy_machine_says_so_and_records_the_load(tiny_models, tiny_config, tmp_path):
    """With a busy loop on one core, a CPU run records in its manifest that other processes used at
    least half a core as it started, and its summary says so in a note under the seconds it qualifies
    (stdout: stderr stays free for a one-line error)."""
    from metaft.suite.results import busy_note

    out = tmp_path / "results"
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        proc = suite(*run_args(tiny_models["bert"], tiny_config(n_test=1, ft_steps=1), out, "baseline"))
    finally:
        loop.kill()
        loop.wait()
    assert proc.returncode == 0, proc.stderr
    info = json.loads(next(out.glob("*/manifest.json")).read_text())["hardware"]
    assert info["usable_cores"] >= 1 and info["load_average_1m"] >= 0
    assert info["busy_cores_at_start"] >= 0.5, info  # the loop alone is one core's worth
    notes = [line for line in proc.stdout.splitlines() if line.startswith("note: the machine is busy")]
    assert len(notes) == 1 and f"of its {info['usable_cores']} cores" in notes[0], proc.stdout
    assert "busy" not in proc.stderr
    assert busy_note({"usable_cores": 2, "busy_cores_at_start": 0.3}) is None  # daemons, not a run
    assert busy_note({"usable_cores": 2, "busy_cores_at_start": None}) is None  # not measurable here


def test_same_seed_same_numbers_and_same_episodes_across_algorithms(tiny_models, tiny_config, tmp_path):
    cfg = tiny_config()
    for out in ("a", "b"):
        assert suite(*run_args(tiny_models["bert"], cfg, tmp_path / out)).returncode == 0
    assert suite(*run_args(tiny_models["bert"], cfg, tmp_path / "a", "baseline")).returncode == 0
    _, a = load_results(tmp_path / "a" / next(p.name for p in (tmp_path / "a").glob("reptile-*")))
    _, b = load_results(tmp_path / "b")
    assert a["metric"].tolist() == b["metric"].tolist()
    assert a["curve_metric"].map(list).tolist() == b["curve_metric"].map(list).tolist()
    runs, tasks = load_results(tmp_path / "a")
    assert runs["episodes_fingerprint"].nunique() == 1 and len(runs) == 2
    # the reptile run found the baseline only if it ran after it; the baseline's own target is itself
    base = tasks[tasks["algo"] == "baseline"]
    assert (base["target_source"] == "baseline").all() and (base["target"] == base["metric"]).all()


def test_curve_points_ends_gives_the_same_final_metric_and_is_its_own_protocol(tiny_models, tiny_config, tmp_path):
    """Evaluating only at step 0 and the last step changes nothing the model sees (evaluation is
    no-grad in eval mode), so the final metric equals the log2 curve's; the rows never pair."""

    cfg = tiny_config(ft_steps=8)
    base = " ".join(run_args(tiny_models["bert"], cfg, tmp_path / "r", "baseline"))
    out = cli_many([("log2", base), ("ends", base + " --curve-points ends"), ("bad", base + " --curve-points x")])
    assert out["log2"][0] == 0 and out["ends"][0] == 0, out
    assert out["bad"][0] == 2 and "--curve-points" in out["bad"][2]
    runs, tasks = load_results(tmp_path / "r")
    assert len(runs) == 2 and runs["protocol_fingerprint"].nunique() == 2
    from metaft.suite.results import load_manifests

    manifests = load_manifests(tmp_path / "r")
    by = {manifests[r]["config"]["curve_points"]: tasks[tasks.run_id == r].set_index("task_index") for r in runs.run_id}
    assert by["log2"]["curve_steps"].map(list).iloc[0] == [0, 1, 2, 4, 8]
    assert by["ends"]["curve_steps"].map(list).tolist() == [[0, 8]] * len(by["ends"])
    assert by["ends"]["metric"].tolist() == by["log2"]["metric"].tolist()
    assert by["ends"]["metric_at_0"].tolist() == by["log2"]["metric_at_0"].tolist()


def test_target_comes_from_the_baseline_in_the_same_folder(tiny_models, tiny_config, tmp_path):
    cfg, out = tiny_config(), tmp_path / "r"
    assert suite(*run_args(tiny_models["bert"], cfg, out, "baseline")).returncode == 0
    assert suite(*run_args(tiny_models["bert"], cfg, out, "fomaml")).returncode == 0
    _, tasks = load_results(out)
    base = tasks[tasks.algo == "baseline"].set_index("task_index")
    fo = tasks[tasks.algo == "fomaml"].set_index("task_index")
    assert (fo["target_source"] == "baseline").all()
    assert fo["target"].tolist() == base["metric"].tolist()


def test_kill_9_during_meta_testing_then_resume_equals_an_uninterrupted_run(tiny_models, tiny_config, tmp_path):
    cfg = tiny_config(n_test=8, ft_steps=24)
    whole = suite(*run_args(tiny_models["bert"], cfg, tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen([SUITE, *run_args(tiny_models["bert"], cfg, out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        parts = list(out.glob("*/tasks/*.parquet"))
        if len(parts) >= 2:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(out.glob("*/tasks/*.parquet")))
    assert 2 <= done < 8, "the kill should land during meta-testing"
    assert not list(out.glob("*/run.parquet"))
    again = suite(*run_args(tiny_models["bert"], cfg, out))
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = suite(*run_args(tiny_models["bert"], cfg, out, "reptile", "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    _, a = load_results(tmp_path / "whole")
    _, b = load_results(out)
    assert len(b) == 8 and b["task_index"].is_unique
    cols = ["task_index", "task_id", "metric", "metric_at_0", "target", "steps_to_target"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert a["curve_metric"].map(list).tolist() == b["curve_metric"].map(list).tolist()
    assert not list(out.glob("*/.*.tmp")) and not list(out.glob("*/tasks/.*.tmp"))


def test_bad_input_fails_in_one_line_without_output(tiny_models, tiny_config, tmp_path):
    out = tmp_path / "r"
    proc = suite(*run_args(tiny_models["bert"], tiny_config(), out, "reptil"))
    assert proc.returncode == 2 and "unknown algorithm 'reptil' (did you mean 'reptile'?); available:" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not out.exists()
    bad = tmp_path / "bad.toml"
    bad.write_text("inner_lr = 1e-3\nmeta_batch = 4\n")
    proc = suite(*run_args(tiny_models["bert"], bad, out))
    assert proc.returncode == 2 and "unknown key 'meta_batch'" in proc.stderr and not out.exists()
    bad.write_text("inner_steps = 'three'\n")
    proc = suite(*run_args(tiny_models["bert"], bad, out))
    assert proc.returncode == 2 and "inner_steps must be int" in proc.stderr
    proc = suite(*run_args(tmp_path / "no-such-model", tiny_config(), out))
    assert proc.returncode == 2 and "does not exist" in proc.stderr and not out.exists()
    proc = suite(*run_args("bert-base-uncased", tiny_config(), out))
    assert proc.returncode == 2 and "cannot fetch model 'bert-base-uncased'" in proc.stderr and not out.exists()


def test_nan_loss_stops_and_says_where(tiny_models, tiny_config, tmp_path):
    out = tmp_path / "r"
    proc = suite(*run_args(tiny_models["bert"], tiny_config(), out, "baseline", "--finetune-lr", "1e30"))
    assert proc.returncode == 1, proc.stderr
    assert "task meta-test/0000/ag_news stopped: loss became nan" in proc.stderr or "loss became inf" in proc.stderr
    assert "--resume" in proc.stderr


def test_help_lists_every_option():
    proc = suite("run", "--help")
    assert proc.returncode == 0
    for option in ("--algo", "--model", "--preset", "--benchmark", "--seed", "--data-dir", "--out", "--device",
                   "--engine", "--config", "--ft-steps", "--resume"):
        assert option in proc.stdout


def test_learning_rate_is_chosen_on_validation_tasks_and_recorded(tiny_models, tmp_path):
    cfg = tmp_path / "val.toml"
    cfg.write_text(TINY.format(n_test=4, ft_steps=0).replace("ft_steps = 0", "n_meta_val = 4\n"
                   "finetune_lr_grid = [1e-4, 3e-3]") + "[budgets]\nclassification = 4\nner = 3\n")
    out = tmp_path / "r"
    proc = suite(*run_args(tiny_models["bert"], cfg, out, "fomaml"))
    assert proc.returncode == 0, proc.stderr
    runs, tasks = load_results(out)
    run = runs.iloc[0]
    manifest = json.loads((out / run["run_id"] / "manifest.json").read_text())
    selection = manifest["lr_selection"]
    assert selection["grid"] == [1e-4, 3e-3]
    assert set(selection["chosen"]) == {"classification", "ner"} == set(selection["mean_final_metric"])
    assert selection["validation_tasks"] == {"classification": 2, "ner": 2}
    assert run["selection_wall_seconds"] > 0 and run["selection_tokens"] > 0
    for row in tasks.itertuples():
        assert row.finetune_lr == selection["chosen"][row.task_type]
        assert row.ft_steps == {"classification": 4, "ner": 3}[row.task_type]
    assert manifest["leakage_check"]["examples_checked"] > 0
    assert {k.split("/")[0] for k in manifest["pools"]} == {"meta-train", "meta-val", "meta-test"}
    # the validation side can be scored instead of the test side (tuning), never mixed with it
    cfg.write_text(cfg.read_text().replace("finetune_lr_grid = [1e-4, 3e-3]", 'evaluate_on = "meta-val"'))
    proc = suite(*run_args(tiny_models["bert"], cfg, tmp_path / "v", "fomaml"))
    assert proc.returncode == 0, proc.stderr
    _, val = load_results(tmp_path / "v")
    assert val["task_id"].str.startswith("meta-val/").all()
    assert set(val["dataset"]) <= {"sst2", "conll2003"}
    assert val["protocol_fingerprint"].iloc[0] != tasks["protocol_fingerprint"].iloc[0]


def test_own_adaptation_rows_are_labelled_and_references_refuse_it(tiny_models, tiny_config, tmp_path):
    out = tmp_path / "r"
    proc = suite(*run_args(tiny_models["bert"], tiny_config(), out, "anil", "--eval-mode", "own"))
    assert proc.returncode == 0, proc.stderr
    _, tasks = load_results(out)
    assert (tasks["eval_mode"] == "own").all() and tasks["finetune_lr"].isna().all()
    proc = suite(*run_args(tiny_models["bert"], tiny_config(), out, "baseline", "--eval-mode", "own"))
    assert proc.returncode == 2 and "no own adaptation" in proc.stderr and proc.stderr.count("\n") == 1


def test_results_errors_and_a_too_long_max_length_are_one_line(tiny_models, tiny_config, tmp_path):
    for args in (["results", str(tmp_path / "MISSING")],
                 ["leaderboard", "build", "--results", str(tmp_path / "MISSING"), "--out", str(tmp_path / "s")],
                 run_args(tiny_models["bert"], tiny_config(), tmp_path / "r", "baseline", "--max-length", "100000")):
        proc = suite(*args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "exceeds the" in proc.stderr and not (tmp_path / "r").exists()


@pytest.mark.parametrize("bug", [TypeError, ValueError, FileNotFoundError])
def test_an_internal_bug_keeps_its_traceback(bug, tiny_models, tiny_config, tmp_path, monkeypatch):
    """Only `SuiteError` becomes one line and exit 2; a bug in the suite (a plain ValueError or
    FileNotFoundError included) must surface as itself."""
    from metaft.suite import cli
    from metaft.suite.runner import Runner

    def broken(self):
        raise bug("a bug inside the runner")

    monkeypatch.setattr(Runner, "run_all", broken)
    with pytest.raises(bug, match="a bug inside the runner"):
        cli.main(run_args(tiny_models["bert"], tiny_config(), tmp_path / "r", "baseline"))


def test_algo_args_reach_the_algorithm_and_episodes_carry_their_source(tiny_models, tiny_config, tmp_path):
    from metaft.algorithms import Algorithm, register_algorithm
    from metaft.algorithms.base import MetaConfig
    from metaft.suite.cli.run import parse_algo_args
    from metaft.suite.config import resolve_config
    from metaft.suite.runner import Runner, algorithm_kwargs

    assert parse_algo_args(["lr_lr=1e-3", "outer=interpolate", "first_order=true"]) == [
        ("lr_lr", 1e-3), ("outer", "interpolate"), ("first_order", True)]
    config = resolve_config("quick", str(tiny_config()), {"algo": "metasgd",
                                                        "algorithm": dict(parse_algo_args(["lr_lr=0.5"]))})
    assert algorithm_kwargs(config)["lr_lr"] == 0.5
    proc = suite(*run_args(tiny_models["bert"], tiny_config(), tmp_path / "bad", "reptile", "--algo-arg", "lr_lr=1"))
    assert proc.returncode == 2 and "unknown hyperparameter(s) lr_lr for 'reptile'" in proc.stderr

    seen = []

    @register_algorithm("source-recorder")
    class SourceRecorder(Algorithm):
        """Records where each meta-training episode came from."""

        Config = MetaConfig

        def meta_train(self, model, episodes, loss_fn, steps=None, **kw):
            seen.extend(ep.source for ep in episodes)
            return super().meta_train(model, [], loss_fn)

    config = resolve_config("quick", str(tiny_config()), {"algo": "source-recorder", "models": [str(tiny_models["bert"])]})
    Runner(config, tmp_path / "r", progress=False).run_all()
    assert seen and set(seen) == {"sst2", "conll2003"}


def test_merge_intermediate_and_the_oracle_run_end_to_end_and_pair_with_the_baseline(tiny_models, tiny_config,
                                                                                     tmp_path):
    from metaft.leaderboard import stats
    from metaft.leaderboard.verdicts import verdicts

    out, cfg = tmp_path / "r", tiny_config(n_test=4, ft_steps=3)
    for algo, extra in (("baseline", ()), ("merge", ("--algo-arg", "method=ties")), ("intermediate", ()),
                        ("intermediate", ("--eval-mode", "hindsight"))):
        proc = suite(*run_args(tiny_models["bert"], cfg, out, algo, *extra))
        assert proc.returncode == 0, proc.stderr
    runs, tasks = load_results(out)
    by = runs.set_index(["algo", "eval_mode"])
    # one fine-tuning step per meta-training episode, each source fine-tuned once (4 episodes: sst2, conll2003)
    for algo in ("merge", "intermediate"):
        assert by.loc[(algo, "shared"), "meta_steps"] == by.loc[(algo, "shared"), "meta_episodes"] == 4
        assert by.loc[(algo, "shared"), "meta_flops"] > 0
    inter = tasks[(tasks["algo"] == "intermediate") & (tasks["eval_mode"] == "shared")]
    chosen = inter["adapt_info"].map(lambda s: json.loads(s)["source"])
    assert set(chosen) <= {"sst2", "conll2003"}
    oracle = tasks[tasks["eval_mode"] == "hindsight"]
    finals = oracle["adapt_info"].map(lambda s: json.loads(s)["final_metric"])
    assert (oracle["metric"].to_numpy() == [max(f.values()) for f in finals]).all()
    assert (oracle["metric"].to_numpy() >= inter["metric"].to_numpy() - 1e-12).all()  # a bound, by construction
    ranked, oracles = stats.split_oracles(tasks)
    assert set(oracles["algo"]) == {"intermediate (oracle)"} and "intermediate (oracle)" not in set(ranked["algo"])
    table = verdicts(ranked)
    assert {"merge", "intermediate"} <= set(table["candidate"]) and (table["n"] == 2).all()
    assert "oracle" not in " ".join(table["candidate"])
    regret = stats.selector_regret(tasks)
    assert len(regret) == 2 and (regret["regret"] >= 0).all()
    proc = suite(*run_args(tiny_models["bert"], cfg, out, "reptile", "--eval-mode", "hindsight"))
    assert proc.returncode == 2 and "needs an algorithm that chooses among candidate starts" in proc.stderr


def test_lora_runs_record_adapters_save_a_peft_start_and_never_pair_with_full_fine_tuning(tiny_models, tiny_config,
                                                                                          tmp_path):
    from metaft.leaderboard import stats

    out, cfg = tmp_path / "r", tiny_config(n_test=2, ft_steps=2)
    for algo, extra in (("baseline", ("--peft", "lora")), ("reptile", ("--peft", "lora", "--keep-init")),
                        ("baseline", ())):
        proc = suite(*run_args(tiny_models["bert"], cfg, out, algo, *extra))
        assert proc.returncode == 0, proc.stderr
    runs, tasks = load_results(out)
    by = runs.set_index(["algo", "peft"])
    assert by.loc[("reptile", "lora"), "trainable_parameters"] < by.loc[("baseline", "none"), "trainable_parameters"] / 10
    reptile = runs[runs["algo"] == "reptile"]["run_id"].iloc[0]
    assert (out / reptile / "adapter" / "adapter_config.json").is_file()
    assert set(tasks["peft"]) == {"lora", "none"}
    prepared = stats.prepare(tasks)
    # (the tiny config runs the quick preset's precision; a bf16 run is labelled "bert (bf16)")
    assert set(prepared["model"].map(lambda m: m.split("/")[-1].replace(" (bf16)", ""))) == {"bert", "bert + lora"}
    # adapters pair with adapters; full fine-tuning is another protocol, never paired with them
    lora_base, full_base = (tasks[(tasks["algo"] == "baseline") & (tasks["peft"] == p)] for p in ("lora", "none"))
    assert set(lora_base["protocol_fingerprint"]) & set(full_base["protocol_fingerprint"]) == set()
    lora_model = next(m for m in prepared["model"].unique() if m.endswith("+ lora"))
    a, b = stats.paired_values(prepared, "metric", "reptile", "baseline", model=lora_model)
    assert len(a) == 2
    proc = suite(*run_args(tiny_models["bert"], cfg, tmp_path / "bad", "baseline", "--peft", "lora",
                           "--peft-targets", "nonexistent"))
    assert proc.returncode == 2 and "name the modules with --peft-targets" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "bad").exists()
