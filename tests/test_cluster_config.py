"""Search spaces and cluster manifests: what a study on a real cluster depends on."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from metaft.cluster.tune import load_search_file, parse_search_space
from metaft.suite.foundation.errors import SuiteError

CLUSTER = Path(__file__).resolve().parent.parent / "cluster"


def test_example_search_space_parses_into_tune_domains():
    from ray.tune.search.sample import Categorical, Float

    space = parse_search_space(load_search_file(str(CLUSTER / "search-example.toml")))
    assert isinstance(space["inner_lr"], Float) and isinstance(space["inner_steps"], Categorical)
    assert space["inner_lr"].lower == 1e-4 and space["inner_lr"].upper == 1e-2


@pytest.mark.parametrize("spec,message", [
    ({"dropout": {"type": "uniform", "low": 0, "high": 1}}, "cannot be searched"),
    ({"inner_lr": {"type": "normal"}}, "needs type"),
    ({"inner_lr": {"type": "loguniform", "low": 1e-4}}, "lacks 'high'"),
])
def test_bad_search_spaces_name_the_problem(spec, message):
    with pytest.raises(SuiteError, match=message):
        parse_search_space(spec)


@pytest.mark.parametrize("path", sorted(p.name for p in CLUSTER.rglob("*.yaml")))
def test_cluster_manifests_turn_token_auth_on(path):
    text = next(CLUSTER.rglob(path)).read_text()
    yaml.safe_load(text)
    assert "RAY_AUTH_MODE" in text and "token" in text


def test_run_level_hyperparameters_are_declared_once_on_the_config():
    """What `suite tune` may search and what the runner forwards to algorithms both come from the
    RunConfig fields marked as hyperparameters; every forwarded one reaches every algorithm that has it."""
    import dataclasses

    from metaft.algorithms import algorithm_class, list_algorithms
    from metaft.cluster.tune import SEARCHABLE
    from metaft.suite.config import RunConfig, hyperparameters
    from metaft.suite.runner import algorithm_kwargs

    forwarded = hyperparameters("algorithm")
    assert set(forwarded) == {"inner_lr", "inner_steps", "outer_lr", "meta_batch_size", "finetune_lr"}
    assert SEARCHABLE == set(forwarded) | {"head_init"}
    reached = 0
    for algo in list_algorithms():
        fields = {f.name for f in dataclasses.fields(algorithm_class(algo).Config)}
        for name in forwarded:
            value = getattr(RunConfig(), name) * 3  # a value no default has
            kwargs = algorithm_kwargs(RunConfig(algo=algo, **{name: value}))
            assert (kwargs.get(name) == value) == (name in fields), (algo, name)
            reached += name in fields
    assert reached >= 20


def test_per_algorithm_tables_reach_only_their_algorithm(tmp_path):
    """A preset's tuned setting for one algorithm must not break (or change the identity of) runs of
    the others, and gives the same run identity as the same setting passed with --algo-arg."""
    from metaft.suite.config import resolve_config
    from metaft.suite.foundation.errors import SuiteError
    from metaft.suite.runner import algorithm_kwargs

    path = tmp_path / "c.toml"
    path.write_text("[per_algorithm.multitask]\nlr = 2e-4\n[per_algorithm.reptile]\nouter = \"interpolate\"\n")
    multitask = resolve_config("quick", str(path), {"algo": "multitask"})
    reptile = resolve_config("quick", str(path), {"algo": "reptile"})
    baseline = resolve_config("quick", str(path), {"algo": "baseline"})
    assert algorithm_kwargs(multitask)["lr"] == 2e-4 and "outer" not in algorithm_kwargs(multitask)
    assert algorithm_kwargs(reptile)["outer"] == "interpolate" and "lr" not in algorithm_kwargs(reptile)
    assert baseline.fingerprint() == resolve_config("quick", None, {"algo": "baseline"}).fingerprint()
    assert multitask.fingerprint() == resolve_config("quick", None, {"algo": "multitask",
                                                                     "algorithm": {"lr": 2e-4}}).fingerprint()
    explicit = resolve_config("quick", str(path), {"algo": "multitask", "algorithm": {"lr": 1e-3}})
    assert algorithm_kwargs(explicit)["lr"] == 1e-3  # [algorithm] / --algo-arg win
    path.write_text("[per_algorithm.reptil]\nouter_lr = 1e-3\n")
    with pytest.raises(SuiteError, match="per_algorithm.reptil is not an algorithm"):
        resolve_config("quick", str(path), {"algo": "reptile"})
