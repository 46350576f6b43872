"""The one registry policy shared by algorithms, datasets (and any later registry)."""
from __future__ import annotations

from pathlib import Path

import pytest

from metaft.suite.foundation.errors import ConfigError, NotFoundError
from metaft.suite.foundation.registry import Registry


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
    import ast

    fresh = ast.literal_eval(out.strip())  # a new process: the built-ins only (other tests here may add plugins)
    assert list_algorithms()[: len(fresh)] == fresh and fresh[-2:] == ["merge", "intermediate"]
    with pytest.raises(ConfigError, match="'reptile' is already registered by metaft.algorithms.builtin"):
        register_algorithm("reptile")(type("Impostor", (Algorithm,), {}))
    with pytest.raises(ConfigError, match="is not a subclass of metaft.algorithms.base.Algorithm"):
        register_algorithm("not-an-algorithm")(int)
    spec = get_dataset_spec("imdb")
    assert register_dataset(spec) is spec  # the same spec again is harmless
    with pytest.raises(UnknownDatasetError, match="did you mean 'imdb'"):
        get_dataset_spec("imbd")
    assert isinstance(ALGORITHMS, Registry) and isinstance(DATASETS, Registry)


def encode_with_marker(encoder, examples, num_labels):
    """A plugin task type's encoder (referenced as ``test_registry:encode_with_marker``)."""
    from metaft.tasks.tokenize import encode_classification

    batch = encode_classification(encoder, [dict(ex, text="headline: " + ex["text"]) for ex in examples], num_labels)
    batch["marked"] = True
    return batch


def test_a_task_type_from_one_file_samples_encodes_and_configures_without_suite_edits(data_dir, tmp_path,
                                                                                     monkeypatch):
    """Everything a task type needs (columns, sampler, encoder, content key, default shape, metric)
    is on its `TaskType`; a dataset of the new type is sampled, encoded and budgeted by the suite."""
    import numpy as np
    from transformers import AutoTokenizer

    from metaft.suite.config import RunConfig
    from metaft.suite.models import resolve_model_path
    from metaft.tasks import DatasetSpec, register_dataset
    from metaft.tasks.benchmark import default_shapes
    from metaft.tasks.episodes import sample_episode
    from metaft.tasks.loading import load_split
    from metaft.tasks.pools import content_key
    from metaft.tasks.registry import DATASETS
    from metaft.tasks.task_types import TASK_TYPES, TaskType, get_task_type, register_task_type
    from metaft.tasks.tokenize import EncodingSettings, EpisodeEncoder

    for registry in (TASK_TYPES, DATASETS):  # registrations end with the test
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
        monkeypatch.setattr(registry, "_order", dict(registry._order))
    classification = get_task_type("classification")
    headlines = TaskType("headline", ("text", "label"), "accuracy", classification.decode,
                         classification.sampler, "test_registry:encode_with_marker", ("text",), (2, 3, 4))
    register_task_type(headlines)
    spec = DatasetSpec(name="ag_news_headlines", hub_id="fancyzhx/ag_news", task_type="headline",
                       label_names=("World", "Sports", "Business", "Sci/Tech"),
                       columns={"text": "text", "label": "label"}, splits=("test",), train_split=None,
                       eval_split="test")
    register_dataset(spec)
    mirror = tmp_path / "mirror" / "ag_news_headlines"
    mirror.mkdir(parents=True)
    (mirror / "test.parquet").symlink_to(Path(data_dir) / "ag_news" / "test.parquet")

    shape = default_shapes()["headline"]
    assert (shape.ways, shape.shots, shape.queries) == (2, 3, 4)
    loaded = load_split("ag_news_headlines", "test", tmp_path / "mirror")
    episode = sample_episode(loaded, shape, np.random.default_rng(0))
    assert episode.task_type == "headline" and len(episode.support) == 6 and len(episode.query) == 8
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    batch = EpisodeEncoder(tokenizer, EncodingSettings(max_length=32, stride=8)).encode("headline", episode.support, 2)
    assert batch["marked"] and batch["input_ids"].shape[0] == 6 and batch["labels"].tolist() == [
        ex["label"] for ex in episode.support]
    assert content_key("headline", episode.query[0]) == content_key("classification", episode.query[0])
    assert RunConfig(budgets={"headline": 16}, shapes={"headline": {"ways": 2}}).validate() is not None


def test_a_datasets_protocol_side_is_checked_where_it_is_declared():
    from metaft.suite.foundation.errors import ConfigError
    from metaft.tasks import DatasetSpec

    base = dict(name="probe", hub_id=None, task_type="classification", label_names=("a", "b"),
                columns={"text": "text", "label": "label"}, splits=("test",), train_split=None, eval_split="test")
    with pytest.raises(ConfigError, match="protocol_sides.*must be one of meta-train, meta-test"):
        DatasetSpec(**base, protocol_sides={"cross-dataset": "meta-val"})
    with pytest.raises(ConfigError, match="meta-train but the dataset has no train_split"):
        DatasetSpec(**base, protocol_sides={"cross-dataset": "meta-train"})
