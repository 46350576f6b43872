"""Algorithm plugins: baseline, multitask, maml, fomaml, reptile, anil, metasgd, merge, intermediate.

    from metaft.algorithms import Episode, get_algorithm, list_algorithms, register_algorithm
    algo = get_algorithm("maml", inner_lr=1e-3, inner_steps=5, outer_lr=1e-4, first_order=False)
    algo.meta_train(model, episodes, loss_fn, steps=1000)
    adapted = algo.adapt(model, support, loss_fn, steps=5)
"""
from .base import Algorithm, AlgorithmConfig, Episode, MetaConfig, MetaTrainStats, NonFiniteLossError, begin_episode
from .finetune import as_batches
from .outer import OuterStep, TorchOuterStep
from .registry import AlgorithmError, algorithm_class, get_algorithm, list_algorithms, register_algorithm

__all__ = [
    "Algorithm", "AlgorithmConfig", "AlgorithmError", "Episode", "MetaConfig", "MetaTrainStats",
    "NonFiniteLossError", "OuterStep", "TorchOuterStep", "algorithm_class", "get_algorithm",
    "list_algorithms", "register_algorithm",
    "as_batches", "begin_episode",  # helpers for plugins: a support set as batches; a task head per episode
]
