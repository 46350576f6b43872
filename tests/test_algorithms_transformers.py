"""Transformer learners: heads for the three task types on BERT, RoBERTa and GPT-2, Proto-MAML
heads, dropout in the functional loop, memory options, and real learning with MiniLM."""
from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModel

from metaft.algorithms import Episode, get_algorithm
from metaft.algorithms.transformer_learner import EpisodicTransformer, episode_loss
from metaft.tasks import EncodingSettings, EpisodeEncoder, EpisodeShape, iter_episodes, make_benchmark

SHAPES = {"classification": EpisodeShape(3, 2, 2), "ner": EpisodeShape(2, 2, 2), "qa": EpisodeShape(1, 3, 3)}


def encoded(tokenizer, datasets, n=3, seed=0, shapes=SHAPES, max_length=64):
    enc = EpisodeEncoder(tokenizer, EncodingSettings(max_length, 16))
    bench = make_benchmark("in-dataset", datasets=datasets, n_meta_train=n, n_meta_test=1, shapes=shapes)
    out = []
    for ep in iter_episodes(bench, seed, "meta-train"):
        out.append(Episode(enc.batches(ep.task_type, ep.support, ep.num_labels, 8),
                           enc.batches(ep.task_type, ep.query, ep.num_labels, 8)))
    return out


@pytest.mark.parametrize("arch", ["bert", "roberta", "gpt2"])
def test_every_architecture_runs_every_task_type(arch, tiny_models, tokenizers):
    torch.manual_seed(0)
    model = EpisodicTransformer(AutoModel.from_pretrained(tiny_models[arch]))
    eps = encoded(tokenizers[arch], ["ag_news", "conll2003", "squad"], n=3)
    assert [e.support[0]["task_type"] for e in eps] == ["classification", "ner", "qa"]
    stats = get_algorithm("fomaml", inner_steps=1, meta_batch_size=3).meta_train(model, eps, episode_loss)
    assert stats.steps == 1 and stats.episodes == 3
    for ep in eps:
        adapted = get_algorithm("baseline").adapt(model, ep.support, episode_loss, steps=1)
        out = adapted(ep.query[0])
        batch = ep.query[0]
        if batch["task_type"] == "qa":
            assert out[0].shape == batch["input_ids"].shape
        elif batch["task_type"] == "ner":
            assert out.shape == (*batch["input_ids"].shape, 5)  # O + B/I of 2 types
        else:
            assert out.shape == (batch["input_ids"].shape[0], 3)


def test_gpt2_classifies_from_the_last_real_token(tiny_models, tokenizers):
    model = EpisodicTransformer(AutoModel.from_pretrained(tiny_models["gpt2"])).eval()
    tok = tokenizers["gpt2"]
    ids = tok("a fine movie")["input_ids"]
    pad = tok.pad_token_id
    short = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
             "task_type": "classification"}
    padded = {"input_ids": torch.tensor([ids + [pad] * 5]),
              "attention_mask": torch.tensor([[1] * len(ids) + [0] * 5]), "task_type": "classification"}
    with torch.no_grad():
        torch.testing.assert_close(model.features(short), model.features(padded), rtol=1e-5, atol=1e-5)


def test_proto_head_is_a_nearest_prototype_classifier(tiny_models, tokenizers):
    torch.manual_seed(0)
    model = EpisodicTransformer(AutoModel.from_pretrained(tiny_models["bert"])).eval()
    ep = encoded(tokenizers["bert"], ["ag_news"], n=1)[0]
    model.begin_episode(ep.support)
    with torch.no_grad():
        feats = torch.cat([model.features(b) for b in ep.support])
        labels = torch.cat([b["labels"] for b in ep.support])
        protos = torch.stack([feats[labels == c].mean(0) for c in range(3)])
        q = model.features(ep.query[0])
        # logits = 2 c.x - |c|^2 = |x|^2 - |x - c|^2: the nearest prototype has the largest logit
        expected = (q.double() ** 2).sum(1, keepdim=True) - torch.cdist(q.double(), protos.double()) ** 2
        torch.testing.assert_close(model(ep.query[0]).double(), expected, atol=1e-3, rtol=1e-4)
    for init in ("zero", "random"):
        other = EpisodicTransformer(AutoModel.from_pretrained(tiny_models["bert"]), head_init=init)
        other.begin_episode(ep.support)
        assert (other.head.weight.abs().max() == 0) == (init == "zero")
    with pytest.raises(ValueError, match="head_init"):
        EpisodicTransformer(AutoModel.from_pretrained(tiny_models["bert"]), head_init="xavier")


def test_dropout_works_inside_the_functional_inner_loop(tiny_models, tokenizers):
    torch.manual_seed(0)
    backbone = AutoModel.from_pretrained(tiny_models["bert"], hidden_dropout_prob=0.3)
    model = EpisodicTransformer(backbone).train()
    ep = encoded(tokenizers["bert"], ["ag_news"], n=1)[0]
    maml = get_algorithm("maml", inner_steps=2)
    a, _ = maml.meta_loss(model, ep, episode_loss)
    b, _ = maml.meta_loss(model, ep, episode_loss)
    assert float(a.detach()) != float(b.detach())  # dropout masks differ between calls
    a.backward()
    grads = [p.grad for p in model.meta_parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_frozen_embeddings_and_gradient_checkpointing(tiny_models, tokenizers):
    ep = encoded(tokenizers["bert"], ["ag_news"], n=1)[0]
    torch.manual_seed(0)
    frozen = EpisodicTransformer(AutoModel.from_pretrained(tiny_models["bert"]), freeze_embeddings=True)
    emb = frozen.backbone.get_input_embeddings().weight.detach().clone()
    get_algorithm("fomaml", inner_steps=1, outer_lr=1e-2).meta_train(frozen, [ep], episode_loss)
    assert torch.equal(emb, frozen.backbone.get_input_embeddings().weight)

    plain = EpisodicTransformer(AutoModel.from_pretrained(tiny_models["bert"])).eval()
    ckpt = copy.deepcopy(plain)
    ckpt.enable_gradient_checkpointing()
    ckpt.backbone.train()
    for m in ckpt.modules():  # checkpointing needs train mode; keep dropout off to compare
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    for m in plain.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    fo = get_algorithm("fomaml", inner_steps=2)
    grads = []
    for model in (plain, ckpt):
        model.zero_grad()
        fo.meta_loss(model, ep, episode_loss)[0].backward()
        grads.append([p.grad.clone() for p in model.meta_parameters() if p.grad is not None])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def minilm():
    from metaft.suite.models import load_backbone

    return load_backbone("minilm")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["multitask", "maml", "fomaml", "reptile", "anil", "metasgd"])
def test_every_algorithm_learns_on_real_episodes_with_minilm(name, minilm):
    """Meta-training on a fixed set of SST-2 episodes for several epochs lowers the meta-loss."""
    torch.manual_seed(0)
    shapes = {"classification": EpisodeShape(2, 4, 4)}
    eps = encoded(minilm.tokenizer, ["sst2"], n=3, shapes=shapes, max_length=48)
    model = EpisodicTransformer(copy.deepcopy(minilm.backbone))
    kwargs = {"multitask": dict(lr=1e-4, meta_batch_size=1)}.get(
        name, dict(inner_steps=2, inner_lr=1e-3, outer_lr=1e-4, meta_batch_size=1))
    algo = get_algorithm(name, **kwargs)
    stats = algo.meta_train(model, eps * 5, episode_loss)
    first, last = sum(stats.losses[:3]) / 3, sum(stats.losses[-3:]) / 3
    assert stats.steps == 15
    assert last < 0.7 * first, (name, stats.losses)
