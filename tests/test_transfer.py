"""Merged-model and intermediate-task starts: the merge arithmetic against peft's definitions and
hand-worked examples, source selection on a planted fixture, caching, and bad input."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import AutoModel

from metaft.algorithms import Episode, get_algorithm
from metaft.algorithms.transfer import (
    finetune_per_source,
    group_by_source,
    merge_states,
    merge_task_vectors,
    trainable_state,
)
from metaft.algorithms.transformer_learner import EpisodicTransformer, episode_loss


def mse(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def two_source_episodes(n=4):
    g = torch.Generator().manual_seed(0)
    out = []
    for source, w in (("a", torch.tensor([[1.0], [0.0], [0.0]])), ("b", torch.tensor([[0.0], [0.0], [-1.0]]))):
        for _ in range(n):
            x = torch.randn(8, 3, generator=g)
            out.append(Episode((x, x @ w), (x, x @ w), source=source))
    return out


def tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))


def source_states(model, episodes, lr=1e-2):
    return finetune_per_source(model, group_by_source(episodes), mse, steps=0, lr=lr)


@pytest.mark.parametrize("method,scale", [("average", 1.0), ("task_arithmetic", 0.5), ("task_arithmetic", 2.0)])
def test_merged_start_is_start_plus_scaled_mean_change(method, scale):
    model, episodes = tiny_net(), two_source_episodes()
    start = trainable_state(model)
    states = source_states(model, episodes)
    deltas = {s: {n: st[n] - start[n] for n in start} for s, st in states.items()}
    for name in start:  # each source really moved every weight, and differently
        assert deltas["a"][name].abs().min() > 0 and deltas["b"][name].abs().min() > 0
        assert not torch.allclose(deltas["a"][name], deltas["b"][name])
    merged_model = copy.deepcopy(model)
    get_algorithm("merge", method=method, scale=scale, source_lr=1e-2).meta_train(merged_model, episodes, mse)
    for name, p in merged_model.named_parameters():
        expected = start[name] + scale * (deltas["a"][name] + deltas["b"][name]) / 2
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-7)
    assert trainable_state(model).keys() == start.keys()  # the caller's model was not the one merged
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), start[name])


def test_task_arithmetic_with_scale_zero_gives_the_start():
    model, episodes = tiny_net(), two_source_episodes()
    start = trainable_state(model)
    get_algorithm("merge", method="task_arithmetic", scale=0.0, source_lr=1e-2).meta_train(model, episodes, mse)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), start[name], rtol=0, atol=0)


def test_ties_equals_a_worked_example():
    # Trim to the top 50% by magnitude per vector, elect the sign by the summed mass, average the agreeing ones.
    t1 = torch.tensor([0.5, -0.1, 0.3, -0.8])
    t2 = torch.tensor([-0.2, 0.4, 0.6, 0.1])
    t3 = torch.tensor([0.1, -0.9, -0.05, 0.7])
    # trimmed: t1 -> [0.5, 0, 0, -0.8]; t2 -> [0, 0.4, 0.6, 0]; t3 -> [0, -0.9, 0, 0.7]
    # elected signs (sum of trimmed): [+0.5, -0.5, +0.6, -0.1] -> [+, -, +, -]
    # agreeing entries: [0.5], [-0.9], [0.6], [-0.8] -> disjoint means
    expected = torch.tensor([0.5, -0.9, 0.6, -0.8])
    torch.testing.assert_close(merge_task_vectors([t1, t2, t3], "ties", density=0.5), expected)
    torch.testing.assert_close(merge_task_vectors([t1, t2, t3], "ties", density=0.5, scale=0.5), expected * 0.5)


def test_a_parameter_only_one_source_changed_keeps_that_change():
    start = {"shared": torch.zeros(3), "qa_head": torch.zeros(2)}
    a = {"shared": torch.tensor([1.0, 1.0, 1.0]), "qa_head": torch.tensor([2.0, -2.0])}
    b = {"shared": torch.tensor([3.0, 3.0, 3.0]), "qa_head": torch.zeros(2)}  # b never touched the QA head
    merged = merge_states(start, [a, b], "average")
    torch.testing.assert_close(merged["shared"], torch.tensor([2.0, 2.0, 2.0]))
    torch.testing.assert_close(merged["qa_head"], torch.tensor([2.0, -2.0]))


def test_rounds_restart_from_the_merged_model_and_cost_adds_up():
    episodes = two_source_episodes()
    one, two = tiny_net(), tiny_net()
    s1 = get_algorithm("merge", source_lr=1e-2).meta_train(one, episodes, mse)
    s2 = get_algorithm("merge", source_lr=1e-2, rounds=2).meta_train(two, episodes, mse)
    assert s1.steps == 8 and s2.steps == 16  # one step per episode per source per round
    assert get_algorithm("merge", rounds=2).meta_steps(8, 2, 2) == 16
    assert not torch.allclose(one[0].weight, two[0].weight)


def test_bad_merge_settings_and_sourceless_episodes_are_refused():
    with pytest.raises(ValueError, match="merge method must be one of"):
        get_algorithm("merge", method="mean")
    with pytest.raises(ValueError, match="scale does not apply to method 'average'"):
        get_algorithm("merge", scale=0.5)
    with pytest.raises(ValueError, match="density"):
        get_algorithm("merge", method="ties", density=0)
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="has no source"):
        get_algorithm("merge").meta_train(tiny_net(), [Episode((x, x[:, :1]), (x, x[:, :1]))], mse)


# ---------------------------------------------------------------------------------------------- intermediate
SOURCES = {
    "films": ["the film was a moving story with great actors", "a dull movie with a weak plot and bad acting",
              "the director made a beautiful picture", "i loved the soundtrack and the cast of this film"],
    "football": ["the striker scored twice in the second half", "the keeper saved a penalty in extra time",
                 "the club won the league after a long season", "the coach changed the team at half time"],
    "chemistry": ["the acid reacts with the metal to form a salt", "the molecule has two carbon atoms",
                  "heat the solution until the crystals dissolve", "the catalyst lowers the activation energy"],
}


def batch(tokenizer, texts, labels):
    enc = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "labels": torch.tensor(labels), "task_type": "classification", "num_labels": 2}


def text_episode(tokenizer, texts, source=None):
    return Episode([batch(tokenizer, texts[:2], [0, 1])], [batch(tokenizer, texts[2:], [0, 1])], source=source)


def test_selector_picks_the_source_whose_texts_the_target_nearly_duplicates(tiny_models, tokenizers):
    tok = tokenizers["bert"]
    model = EpisodicTransformer(AutoModel.from_pretrained(tiny_models["bert"]))
    episodes = [text_episode(tok, texts, source) for source, texts in SOURCES.items()]
    algo = get_algorithm("intermediate", source_lr=1e-3)
    stats = algo.meta_train(model, episodes, episode_loss)
    assert stats.steps == 3 and algo.candidate_sources() == list(SOURCES)
    target = ["the striker scored twice in the first half", "the keeper saved a penalty in normal time"]
    support = [batch(tok, target, [0, 1])]
    chosen, sims = algo.select(model, support)
    assert chosen == "football", sims
    assert sims["football"] > max(sims["films"], sims["chemistry"])
    before = trainable_state(model)
    adapted = algo.adapt(model, support, episode_loss, steps=1)
    assert algo.adaptation_info()["source"] == "football"
    for name, value in before.items():  # the caller's model is the start, untouched
        assert torch.equal(dict(model.named_parameters())[name].detach(), value)
    moved = dict(adapted.named_parameters())
    assert any(not torch.equal(moved[n].detach(), algo.sources["football"][n]) for n in before)
    # the oracle's forced start is honoured and recorded, only while forced, and declared (SelectsSource)
    from metaft.algorithms.base import SelectsSource
    from metaft.suite.foundation.errors import ConfigError

    assert isinstance(algo, SelectsSource) and not isinstance(get_algorithm("reptile"), SelectsSource)
    with algo.forcing_source("chemistry"):
        algo.adapt(model, support, episode_loss, steps=0)
    assert algo.adaptation_info()["source"] == "chemistry"
    algo.adapt(model, support, episode_loss, steps=0)
    assert algo.adaptation_info()["source"] == "football"
    with pytest.raises(ConfigError, match="unknown source 'physics'"), algo.forcing_source("physics"):
        pass


def test_intermediate_state_round_trips_for_resume(tiny_models, tokenizers):
    tok = tokenizers["bert"]
    model = EpisodicTransformer(AutoModel.from_pretrained(tiny_models["bert"]))
    episodes = [text_episode(tok, texts, source) for source, texts in SOURCES.items()]
    algo = get_algorithm("intermediate", source_lr=1e-3)
    algo.meta_train(model, episodes, episode_loss)
    again = get_algorithm("intermediate")
    again.load_state_dict(algo.state_dict())
    support = [batch(tok, SOURCES["films"][:2], [0, 1])]
    assert again.select(model, support) == algo.select(model, support)
