"""Search spaces and cluster manifests: what a study on a real cluster depends on."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from metaft.cluster.tune import load_search_file, parse_search_space
from metaft.suite.errors import SuiteError

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
