"""Episodes are deterministic, balanced, of the requested shape, and sides never share examples."""
from __future__ import annotations

from collections import Counter

import pytest

from metaft.tasks import (
    EpisodeManifest,
    EpisodeShape,
    build_manifest,
    check_disjoint,
    iter_episodes,
    load_split,
    make_benchmark,
    sample_episode,
)
from metaft.tasks.benchmark import episode_rng


def _ids(episodes):
    return [(ep.support_ids, ep.query_ids) for ep in episodes]


def test_same_seed_same_ids_other_seed_other_ids(data_dir):
    bench = make_benchmark(n_meta_train=8, n_meta_test=8)
    for side in ("meta-train", "meta-test"):
        a = list(iter_episodes(bench, 0, side, data_dir))
        b = list(iter_episodes(bench, 0, side, data_dir))
        c = list(iter_episodes(bench, 1, side, data_dir))
        assert _ids(a) == _ids(b)
        assert all(x != y for x, y in zip(_ids(a), _ids(c)))


def test_a_generator_slice_equals_the_whole(data_dir):
    bench = make_benchmark(n_meta_train=6, n_meta_test=6)
    whole = list(iter_episodes(bench, 3, "meta-test", data_dir))
    part = list(iter_episodes(bench, 3, "meta-test", data_dir, start=4))
    assert _ids(whole[4:]) == _ids(part)


@pytest.mark.parametrize("name,ways", [("ag_news", 3), ("yelp_review_full", 5), ("imdb", 5), ("sst2", 2)])
def test_classification_is_balanced_n_way_k_shot_with_remapped_labels(data_dir, name, ways):
    loaded = load_split(name, "train", data_dir)
    shape = EpisodeShape(ways=ways, shots=4, queries=3)
    bench = make_benchmark("in-dataset", datasets=[name])
    seen_orders = set()
    for i in range(6):
        ep = sample_episode(loaded, shape, episode_rng(bench, 0, "meta-train", i))
        n = min(ways, loaded.spec.num_labels)
        assert Counter(ex["label"] for ex in ep.support) == {c: 4 for c in range(n)}
        assert Counter(ex["label"] for ex in ep.query) == {c: 3 for c in range(n)}
        assert not set(ep.support_ids) & set(ep.query_ids)
        # the remapping is consistent with the original label of each row
        rows = {f"{name}/train/{i}": i for i in range(loaded.num_rows)}
        for ex in ep.support + ep.query:
            original = loaded.dataset[rows[ex["id"]]]["label"]
            assert loaded.spec.label_names[original] == ep.label_names[ex["label"]]
        seen_orders.add(ep.classes)
    assert len(seen_orders) > 1  # the label order is random per episode


@pytest.mark.parametrize("name", ["conll2003", "ontonotes5"])
def test_ner_support_meets_the_k_mention_rule(data_dir, name):
    loaded = load_split(name, "train", data_dir)
    shape = EpisodeShape(ways=3, shots=5, queries=4)
    bench = make_benchmark("in-dataset", datasets=[name])
    for i in range(5):
        ep = sample_episode(loaded, shape, episode_rng(bench, 0, "meta-train", i))
        assert len(ep.classes) == 3 and ep.label_names[0] == "O" and len(ep.label_names) == 7
        for part, k in ((ep.support, 5), (ep.query, 4)):
            begins = Counter(ep.label_names[t][2:] for ex in part for t in ex["tags"] if ep.label_names[t][:2] == "B-")
            assert all(begins[c] >= k for c in ep.classes), begins
            assert all(0 <= t < 7 for ex in part for t in ex["tags"])
        assert not set(ep.support_ids) & set(ep.query_ids)


def test_qa_episodes_group_questions_by_article(data_dir):
    loaded = load_split("squad", "train", data_dir)
    bench = make_benchmark("in-dataset", datasets=["squad"])
    ep = sample_episode(loaded, EpisodeShape(1, 8, 8), episode_rng(bench, 0, "meta-train", 0))
    assert len(ep.support) == 8 and len(ep.query) == 8
    assert len({ex["title"] for ex in ep.support + ep.query}) == 1  # squad articles hold hundreds of questions


@pytest.mark.parametrize("protocol", ["cross-dataset", "in-dataset"])
def test_meta_train_and_meta_test_never_share_an_example(data_dir, protocol):
    bench = make_benchmark(protocol, n_meta_train=16, n_meta_test=16)
    manifest = build_manifest(bench, 0, data_dir)
    check_disjoint(manifest)
    assert manifest.ids("meta-train") and manifest.ids("meta-test")
    assert not manifest.ids("meta-train") & manifest.ids("meta-test")
    for task in manifest.tasks:
        expected = "train" if task["side"] == "meta-train" else bench.split_for("meta-test", task["dataset"])
        assert task["split"] == expected
    if protocol == "cross-dataset":
        train_sets = {t["dataset"] for t in manifest.tasks if t["side"] == "meta-train"}
        test_sets = {t["dataset"] for t in manifest.tasks if t["side"] == "meta-test"}
        assert train_sets == {"imdb", "sst2", "conll2003", "squad"}
        assert test_sets == {"ag_news", "yelp_review_full", "ontonotes5", "natural_questions"}
    else:
        assert "natural_questions" not in {t["dataset"] for t in manifest.tasks if t["side"] == "meta-train"}


def test_manifest_round_trips_and_fingerprint_tracks_content(data_dir, tmp_path):
    bench = make_benchmark(n_meta_train=4, n_meta_test=4)
    manifest = build_manifest(bench, 0, data_dir)
    back = EpisodeManifest.read(manifest.write(tmp_path / "m.json"))
    assert back.fingerprint == manifest.fingerprint and back.tasks == manifest.tasks
    assert build_manifest(bench, 1, data_dir).fingerprint != manifest.fingerprint
    text = (tmp_path / "m.json").read_text().replace(manifest.tasks[0]["support"][0], "imdb/train/999999")
    (tmp_path / "m.json").write_text(text)
    with pytest.raises(Exception, match="fingerprint"):
        EpisodeManifest.read(tmp_path / "m.json")


def test_default_benchmark_has_the_seed_plan_task_counts():
    bench = make_benchmark()
    assert (bench.n_meta_train, bench.n_meta_test) == (50, 20)
    with pytest.raises(ValueError, match="unknown protocol"):
        make_benchmark("leave-one-out")
