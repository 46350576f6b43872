"""Query-set evaluation of an adapted model with the task's metric (tasks.metrics)."""
from __future__ import annotations

from typing import Sequence

import torch

from tasks.metrics import accuracy, decode_spans, entity_f1, squad_scores
from tasks.tokenize import IGNORE_INDEX


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Sequence[dict], label_names: Sequence[str]) -> dict[str, float]:
    """``{"metric": ..., "exact_match": ...}``; metric is accuracy, entity F1 or SQuAD F1 in [0, 1]."""
    was_training = model.training
    model.eval()
    try:
        task = batches[0]["task_type"]
        if task == "classification":
            preds, gold = [], []
            for b in batches:
                preds += model(b).argmax(-1).tolist()
                gold += b["labels"].tolist()
            return {"metric": accuracy(preds, gold), "exact_match": None}
        if task == "ner":
            gold_tags, pred_tags = [], []
            for b in batches:
                pred = model(b).argmax(-1).cpu()
                labels = b["labels"].cpu()
                for p_row, l_row in zip(pred, labels):
                    keep = l_row != IGNORE_INDEX
                    gold_tags.append([label_names[i] for i in l_row[keep].tolist()])
                    pred_tags.append([label_names[i] for i in p_row[keep].tolist()])
            return {"metric": entity_f1(gold_tags, pred_tags), "exact_match": None}
        predictions, answers = [], []
        for b in batches:
            start, end = model(b)
            predictions += decode_spans(start.float().cpu().numpy(), end.float().cpu().numpy(),
                                        b["example_index"].tolist(), b["offsets"], b["contexts"])
            answers += b["answers"]
        scores = squad_scores(predictions, answers)
        return {"metric": scores["f1"], "exact_match": scores["exact_match"]}
    finally:
        model.train(was_training)


def eval_schedule(steps: int) -> list[int]:
    """0, 1, 2, 4, 8, ... and the last step."""
    points, k = [0], 1
    while k < steps:
        points.append(k)
        k *= 2
    if steps > 0:
        points.append(steps)
    return sorted(set(points))
