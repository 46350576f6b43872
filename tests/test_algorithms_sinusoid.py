"""The MAML paper's sinusoid regression: meta-learners beat joint pretraining by far.

After meta-training, 5 SGD steps on 10 points of an unseen sine task must give a
query MSE well below that of the same network pretrained on all tasks jointly and
adapted the same way (identical adaptation procedure for both).
"""
from __future__ import annotations

import pytest
import torch
from sinusoid import episodes, mlp, mse, post_adaptation_loss, pretrain_jointly

from metaft.algorithms import get_algorithm

SETTINGS = {
    "maml": (dict(inner_lr=0.01, inner_steps=1, outer_lr=2e-3, meta_batch_size=5), 1000),
    "maml-checkpointed": (dict(inner_lr=0.01, inner_steps=1, outer_lr=2e-3, meta_batch_size=5,
                               checkpoint_inner=True), 1000),
    "maml-batched": (dict(inner_lr=0.01, inner_steps=1, outer_lr=2e-3, meta_batch_size=5, batched_tasks=True), 1000),
    "fomaml-batched": (dict(inner_lr=0.01, inner_steps=3, outer_lr=2e-3, meta_batch_size=5, batched_tasks=True),
                       1000),
    "fomaml": (dict(inner_lr=0.01, inner_steps=3, outer_lr=2e-3, meta_batch_size=5), 1000),
    "anil": (dict(inner_lr=0.05, inner_steps=3, outer_lr=2e-3, meta_batch_size=5), 1000),
    "metasgd": (dict(inner_lr=0.01, inner_steps=1, outer_lr=2e-3, meta_batch_size=5, lr_lr=1e-3), 1000),
    "reptile": (dict(inner_lr=0.02, inner_steps=5, outer="interpolate", epsilon=0.2, meta_batch_size=1), 3000),
}


@pytest.fixture(scope="module")
def pretrained_loss():
    torch.set_num_threads(1)
    model = pretrain_jointly(mlp(), 3000)
    return post_adaptation_loss(get_algorithm("baseline"), model)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_meta_learner_adapts_far_better_than_joint_pretraining(name, pretrained_loss):
    torch.set_num_threads(1)
    kwargs, steps = SETTINGS[name]
    algo, model = get_algorithm(name.split("-")[0], **kwargs), mlp()
    algo.meta_train(model, episodes(steps * kwargs["meta_batch_size"], seed=0), mse)
    loss = post_adaptation_loss(algo, model)
    assert pretrained_loss > 1.5  # joint training learns roughly the mean function, zero
    assert loss < 0.6 * pretrained_loss, (loss, pretrained_loss)
