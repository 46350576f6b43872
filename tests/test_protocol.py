"""Protocol v2: own adaptation, heads, de-duplicated pools, the validation side, leakage by content."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from metaft.algorithms import Episode, get_algorithm
from metaft.algorithms.transformer_learner import MASKED_LOGIT, EpisodicTransformer, episode_loss
from metaft.tasks import build_manifest, iter_episodes, load_split, make_benchmark
from metaft.tasks.pools import LeakageError, check_leakage, content_key, make_pool, split_keys


class TwoLayer(nn.Module):
    """A body and a head, so per-layer step sizes and head-only adaptation are visible."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(3, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)))

    def head_parameter_names(self):
        return ["head.weight", "head.bias"]


def mse(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, generator=g), torch.randn(8, 1, generator=g)


def test_metasgd_own_adaptation_is_the_hand_written_per_layer_update():
    torch.manual_seed(0)
    model = TwoLayer()
    algo = get_algorithm("metasgd", inner_lr=0.05, inner_steps=1, meta_batch_size=1, lr_lr=0.01)
    algo.meta_train(model, [Episode(_data(1), _data(2)) for _ in range(3)], mse)
    lrs = algo.learned_lrs()
    assert set(lrs) == {"body", "head"} and len({round(v, 8) for v in lrs.values()}) == 2  # learned, per layer
    support = _data(3)
    adapted = algo.adapt(model, support, mse, steps=2, mode="own")
    # by hand: theta <- theta - alpha_layer * grad, twice
    params = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    for _ in range(2):
        loss = nn.functional.mse_loss(torch.func.functional_call(model, params, (support[0],)), support[1])
        grads = torch.autograd.grad(loss, list(params.values()))
        params = {n: (p - lrs[n.split(".")[0]] * g).detach().requires_grad_()
                  for (n, p), g in zip(params.items(), grads)}
    for n, p in adapted.named_parameters():
        torch.testing.assert_close(p.detach(), params[n].detach(), rtol=1e-6, atol=1e-7)


def test_anil_own_adaptation_changes_the_head_and_leaves_the_encoder_untouched():
    torch.manual_seed(0)
    model = TwoLayer()
    algo = get_algorithm("anil", inner_lr=0.1, inner_steps=1)
    adapted = algo.adapt(model, _data(4), mse, steps=5, mode="own")
    assert torch.equal(adapted.body.weight, model.body.weight) and torch.equal(adapted.body.bias, model.body.bias)
    assert not torch.equal(adapted.head.weight, model.head.weight)
    shared = algo.adapt(model, _data(4), mse, steps=5, lr=0.01)  # the shared mode trains everything
    assert not torch.equal(shared.body.weight, model.body.weight)


def test_maml_own_adaptation_is_sgd_at_the_inner_lr():
    torch.manual_seed(0)
    model = TwoLayer()
    support = _data(5)
    own = get_algorithm("maml", inner_lr=0.03).adapt(model, support, mse, steps=3, mode="own")
    by_hand = copy.deepcopy(model)
    opt = torch.optim.SGD(by_hand.parameters(), lr=0.03)
    for _ in range(3):
        opt.zero_grad()
        mse(by_hand, support).backward()
        opt.step()
    for a, b in zip(own.parameters(), by_hand.parameters()):
        torch.testing.assert_close(a, b)


def test_references_have_no_own_adaptation():
    with pytest.raises(ValueError, match="no own adaptation"):
        get_algorithm("baseline").adapt(TwoLayer(), _data(), mse, steps=1, mode="own")
    assert not get_algorithm("multitask").has_own_adaptation()
    assert all(get_algorithm(a).has_own_adaptation() for a in ("maml", "fomaml", "reptile", "anil", "metasgd"))


def test_a_class_without_support_is_masked_not_a_zero_prototype(tiny_models, tokenizers):
    from transformers import AutoModel

    from metaft.tasks import EncodingSettings, EpisodeEncoder

    torch.manual_seed(0)
    model = EpisodicTransformer(AutoModel.from_pretrained(tiny_models["bert"]), pooling="mean")
    enc = EpisodeEncoder(tokenizers["bert"], EncodingSettings(32, 8))
    support = [{"id": f"s{i}", "text": t, "label": y} for i, (t, y) in enumerate(
        [("good film", 0), ("bad film", 1), ("great movie", 0), ("awful movie", 1)])]
    batch = enc.encode("classification", support, num_labels=3)  # class 2 has no support example
    model.begin_episode([batch])
    assert model.class_mask.tolist() == [True, True, False]
    logits = model(batch)
    assert (logits[:, 2] == MASKED_LOGIT).all() and (logits.argmax(-1) != 2).all()
    query = enc.encode("classification", support[:2] + [{"id": "q", "text": "a film", "label": 2}], num_labels=3)
    loss = episode_loss(model, query)  # the unlearnable class-2 example is left out, not a huge loss
    assert torch.isfinite(loss) and loss < 10


def test_pools_drop_duplicates_and_cut_train_and_validation_by_content(data_dir):
    test = load_split("imdb", "test", data_dir)
    pool = make_pool(test, "all")
    keys = split_keys(test)
    assert pool.duplicates == len(keys) - len(set(keys)) > 0  # the mirror's IMDb test repeats texts
    assert len(set(keys[pool.allowed])) == pool.size
    train = load_split("sst2", "train", data_dir)
    tr, va = make_pool(train, "train", 0.2), make_pool(train, "val", 0.2)
    assert not (tr.allowed & va.allowed).any()
    keys = split_keys(train)
    assert not set(keys[tr.allowed]) & set(keys[va.allowed])
    assert 0.15 < va.size / (va.size + tr.size) < 0.25


def test_content_keys_are_cached_by_data_fingerprint_and_a_damaged_cache_is_recomputed(data_dir, tmp_path,
                                                                                         monkeypatch):
    """The on-disk content keys equal the keys computed row by row; they are found again by the same
    data and never by changed data (another fingerprint); a damaged file is recomputed, not trusted."""
    monkeypatch.setenv("SUITE_CACHE_DIR", str(tmp_path / "own-cache"))
    ner = load_split("conll2003", "train", data_dir)  # a list column (tokens), not only text
    column = ner.dataset.data.table.column(ner.spec.columns["tokens"]).to_pylist()
    direct = [content_key("ner", {"tokens": t}) for t in column]
    cold = split_keys.__wrapped__(ner)
    files = list((tmp_path / "own-cache" / "content-keys").iterdir())
    assert len(files) == 1 and files[0].name.startswith("conll2003-train-")
    assert list(cold) == direct and all(type(k) is str for k in cold[:3])
    before = files[0].stat().st_mtime_ns
    warm = split_keys.__wrapped__(ner)
    assert list(warm) == direct and files[0].stat().st_mtime_ns == before  # read, not rewritten
    changed = dataclasses.replace(ner, fingerprint="sha256:" + "0" * 64)
    assert list(split_keys.__wrapped__(changed)) == direct
    assert len(list((tmp_path / "own-cache" / "content-keys").iterdir())) == 2  # its own entry
    files[0].write_bytes(files[0].read_bytes()[:100])  # truncated
    assert list(split_keys.__wrapped__(ner)) == direct
    assert files[0].stat().st_size > 100  # rewritten whole
    monkeypatch.setenv("SUITE_CACHE_DIR", str(tmp_path / "blocked"))  # its content-keys is a file: no cache
    (tmp_path / "blocked").mkdir()
    (tmp_path / "blocked" / "content-keys").write_text("not a folder")
    assert list(split_keys.__wrapped__(ner)) == direct  # an unwritable cache costs time, never a result


@pytest.mark.parametrize("protocol", ["cross-dataset", "in-dataset"])
def test_the_validation_side_never_draws_from_what_meta_testing_uses(data_dir, protocol):
    bench = make_benchmark(protocol, n_meta_train=8, n_meta_test=8, n_meta_val=16)
    manifest = build_manifest(bench, 0, data_dir)
    test_splits = {(t["dataset"], t["split"]) for t in manifest.tasks if t["side"] == "meta-test"}
    val = [t for t in manifest.tasks if t["side"] == "meta-val"]
    assert len(val) == 16
    for t in val:
        assert t["dataset"] in bench.meta_train_datasets and (t["dataset"], t["split"]) not in test_splits
        assert t["split"] == load_split(t["dataset"], bench.split_for("meta-train", t["dataset"]), data_dir).split
    if protocol == "cross-dataset":
        assert not {t["dataset"] for t in val} & set(bench.meta_test_datasets)
    episodes = {side: list(iter_episodes(bench, 0, side, data_dir)) for side in ("meta-train", "meta-val", "meta-test")}
    train_keys = {content_key(e.task_type, x) for e in episodes["meta-train"] for x in e.support + e.query}
    val_keys = {content_key(e.task_type, x) for e in episodes["meta-val"] for x in e.support + e.query}
    test_keys = {content_key(e.task_type, x) for e in episodes["meta-test"] for x in e.query}
    assert not val_keys & train_keys and not val_keys & test_keys and not train_keys & test_keys
    check_leakage(episodes["meta-test"], episodes["meta-train"] + episodes["meta-val"])
    assert manifest.pools[f"meta-test/{bench.meta_test_datasets[0]}"]["eligible"] > 0


def _planted(data_dir):
    bench = make_benchmark("cross-dataset", datasets=["sst2", "ag_news"], n_meta_train=2, n_meta_test=2)
    train = list(iter_episodes(bench, 0, "meta-train", data_dir))
    test = list(iter_episodes(bench, 0, "meta-test", data_dir))
    planted = dict(test[1].query[3])
    train[0].support[0]["text"] = "  " + planted["text"].upper() + " "  # same content after normalisation
    return bench, train, test, planted


def test_a_planted_meta_test_text_in_a_meta_training_episode_is_refused(data_dir):
    _, train, test, planted = _planted(data_dir)
    with pytest.raises(LeakageError, match=rf"meta-test task meta-test/0001/ag_news.*{planted['id']}.*meta-train/0000"):
        check_leakage(test, train)


def test_the_run_refuses_a_planted_leak_before_writing_anything(data_dir, tiny_models, tmp_path, monkeypatch):
    from metaft.suite import runner as runner_module
    from metaft.suite.config import resolve_config

    bench, train, test, planted = _planted(data_dir)
    real = runner_module.iter_episodes

    def planted_episodes(b, seed, side, data_dir=None):
        return iter(train if side == "meta-train" else test if side == "meta-test" else real(b, seed, side, data_dir))

    monkeypatch.setattr(runner_module, "iter_episodes", planted_episodes)
    config = resolve_config("quick", overrides={"models": [str(tiny_models["bert"])], "datasets": ["sst2", "ag_news"],
                                                 "n_meta_train": 2, "n_meta_test": 2, "algo": "baseline"})
    run = runner_module.Runner(config, tmp_path / "out", str(data_dir), progress=False)
    with pytest.raises(LeakageError, match=planted["id"]):
        run.run_all()
    assert not (tmp_path / "out").exists()


def test_a_split_without_duplicates_loses_nothing(data_dir):
    loaded = load_split("ag_news", "train", data_dir)
    pool = make_pool(loaded, "all")
    assert pool.size + pool.duplicates == loaded.num_rows
    assert bool(pool.allowed.all()) == (pool.duplicates == 0)


def test_flops_count_the_forward_pass_and_the_traversed_backward(tiny_models):
    from transformers import AutoModel

    from metaft.suite.flops import flops_per_token

    model = EpisodicTransformer(AutoModel.from_pretrained(tiny_models["bert"]))
    embedding = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    n = sum(p.numel() for p in model.parameters() if id(p) not in embedding)
    assert flops_per_token(model, model.parameters()) == 6 * n  # full fine-tuning: Kaplan's 6N
    head = list(model.qa_head.parameters())
    n_head = sum(p.numel() for p in head)
    assert flops_per_token(model, head) == 2 * n + 2 * n_head + 2 * n_head  # a forward pass, then only the head
    top = list(model.backbone.encoder.layer[-1].parameters())
    above = sum(p.numel() for p in top) + sum(p.numel() for p in model.backbone.pooler.parameters()) + n_head
    n_top = sum(p.numel() for p in top)
    assert flops_per_token(model, top) == 2 * n + 2 * above + 2 * n_top


def test_meta_test_query_sets_are_disjoint_while_the_pool_allows_and_overlap_is_recorded(data_dir):
    from metaft.tasks import EpisodeShape
    from metaft.tasks.benchmark import query_overlap

    shapes = {"classification": EpisodeShape(4, 8, 32)}
    bench = make_benchmark("cross-dataset", datasets=["imdb", "ag_news", "yelp_review_full"], n_meta_train=0,
                           n_meta_test=24, shapes=shapes)
    manifest = build_manifest(bench, 0, data_dir)
    overlap = query_overlap(manifest.tasks)
    assert overlap["ag_news"]["tasks_sharing_a_query"] == 0  # 7,600 rows: 12 disjoint query sets
    assert overlap["ag_news"]["distinct"] == overlap["ag_news"]["queries"] == 12 * 128
    # Yelp's mirror test split (790 rows after de-duplication) cannot hold 12 disjoint query sets
    assert overlap["yelp_review_full"]["tasks_sharing_a_query"] > 0
    assert overlap["yelp_review_full"]["distinct"] < overlap["yelp_review_full"]["queries"]
    whole = list(iter_episodes(bench, 0, "meta-test", data_dir))
    part = list(iter_episodes(bench, 0, "meta-test", data_dir, start=10))
    assert [e.query_ids for e in whole[10:]] == [e.query_ids for e in part]  # a slice replays the draw
