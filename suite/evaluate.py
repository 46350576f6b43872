"""Query-set evaluation of an adapted model: the task type decodes predictions, the dataset's
metric (a registered `tasks.metrics.Metric`) scores them."""
from __future__ import annotations

from typing import Sequence

import torch

from metaft.tasks.metrics import Metric, get_metric
from metaft.tasks.task_types import get_task_type


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Sequence[dict], label_names: Sequence[str],
             metric: str | Metric | None = None) -> dict[str, float | None]:
    """``{"metric": ..., "exact_match": ...}``: ``metric`` (a name or object; default: the task
    type's) on the query batches; ``exact_match`` is None unless the metric records it."""
    was_training = model.training
    model.eval()
    try:
        task_type = get_task_type(batches[0]["task_type"])
        predictions, references = task_type.decode(model, batches, label_names)
    finally:
        model.train(was_training)
    if not isinstance(metric, Metric):
        metric = get_metric(metric or task_type.default_metric)
    return {"exact_match": None, **metric.compute(predictions, references)}


def eval_schedule(steps: int, points_rule: str = "log2") -> list[int]:
    """0, 1, 2, 4, 8, ... and the last step ("log2"), or 0 and the last step ("ends")."""
    if points_rule == "ends":
        return [0, steps] if steps > 0 else [0]
    points, k = [0], 1
    while k < steps:
        points.append(k)
        k *= 2
    if steps > 0:
        points.append(steps)
    return sorted(set(points))
