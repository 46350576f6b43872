"""The one registry policy shared by algorithms, datasets (and any later registry)."""
from __future__ import annotations

import pytest

from metaft.suite.errors import ConfigError, NotFoundError
from metaft.suite.registry import Registry


class Base:
    pass


def test_order_duplicates_type_check_and_did_you_mean():
    reg: Registry[type] = Registry("widget", base=Base)

    @reg.register("zeta")
    class Zeta(Base):
        pass

    @reg.register("alpha")
    class Alpha(Base):
        pass

    assert reg.names() == ["zeta", "alpha"]  # registration order, one policy for every registry
    reg.register("alpha", Alpha)  # the same object again: a no-op (a module imported twice)
    with pytest.raises(ConfigError, match="widget 'alpha' is already registered by"):
        reg.register("alpha", type("Other", (Base,), {}))
    with pytest.raises(ConfigError, match="is not a subclass of test_registry.Base"):
        reg.register("gamma", int)
    with pytest.raises(NotFoundError, match=r"unknown widget 'alpah' \(did you mean 'alpha'\?\); available: zeta, alpha"):
        reg.get("alpah")
    assert "zeta" in reg and "gamma" not in reg and len(reg) == 2


def test_algorithm_and_dataset_registries_share_the_policy():
    from metaft.algorithms import Algorithm, list_algorithms, register_algorithm
    from metaft.algorithms.registry import ALGORITHMS
    from metaft.tasks import get_dataset_spec, list_datasets, register_dataset
    from metaft.tasks.registry import DATASETS, UnknownDatasetError

    assert list_algorithms()[0] == "baseline" and list_datasets()[0] == "imdb"  # built-ins in file order
    # the order does not depend on which built-in module was imported first
    import subprocess
    import sys

    probe = "import metaft.algorithms.transfer; from metaft.algorithms import list_algorithms; print(list_algorithms())"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(list_algorithms()) and list_algorithms()[-2:] == ["merge", "intermediate"]
    with pytest.raises(ConfigError, match="'reptile' is already registered by metaft.algorithms.builtin"):
        register_algorithm("reptile")(type("Impostor", (Algorithm,), {}))
    with pytest.raises(ConfigError, match="is not a subclass of metaft.algorithms.base.Algorithm"):
        register_algorithm("not-an-algorithm")(int)
    spec = get_dataset_spec("imdb")
    assert register_dataset(spec) is spec  # the same spec again is harmless
    with pytest.raises(UnknownDatasetError, match="did you mean 'imdb'"):
        get_dataset_spec("imbd")
    assert isinstance(ALGORITHMS, Registry) and isinstance(DATASETS, Registry)
