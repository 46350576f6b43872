"""Metrics: accuracy, entity-level F1 for BIO tags, SQuAD exact match and F1, as registered
`Metric` objects (what evaluation computes and how the leaderboard reads it: direction, range).

SQuAD scoring follows the official v1.1 evaluation script: lower-case, strip
punctuation and the articles a/an/the, collapse whitespace; the score of a
prediction is the max over its gold answers. NER F1 is entity-level (seqeval's
CoNLL evaluation). Span decoding turns start/end logits of the windows of one
example into the best-scoring text span of its context.
"""
from __future__ import annotations

import collections
import re
import string
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from metaft.suite.foundation.registry import Registry

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    predicted, truth = np.asarray(predictions), np.asarray(labels)
    if len(truth) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(np.mean(predicted == truth))


def entity_f1(gold: list[list[str]], predicted: list[list[str]]) -> float:
    """Entity-level micro F1 over BIO tag sequences (seqeval, CoNLL-style)."""
    from seqeval.metrics import f1_score

    if len(gold) != len(predicted) or any(len(g) != len(p) for g, p in zip(gold, predicted)):
        raise ValueError("gold and predicted tag sequences differ in shape")
    return float(f1_score(gold, predicted, zero_division=0))


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold_answers: Sequence[str]) -> float:
    if not gold_answers:
        return float(normalize_answer(prediction) == "")
    return max(float(normalize_answer(prediction) == normalize_answer(g)) for g in gold_answers)


def _f1(prediction: str, gold: str) -> float:
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def qa_f1(prediction: str, gold_answers: Sequence[str]) -> float:
    if not gold_answers:
        return float(normalize_answer(prediction) == "")
    return max(_f1(prediction, g) for g in gold_answers)


def squad_scores(predictions: Sequence[str], gold: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean exact match and F1 (fractions in [0, 1]) over examples."""
    if len(predictions) != len(gold) or not gold:
        raise ValueError("predictions and gold answers must be non-empty and of equal length")
    em = float(np.mean([exact_match(p, g) for p, g in zip(predictions, gold)]))
    f1 = float(np.mean([qa_f1(p, g) for p, g in zip(predictions, gold)]))
    return {"exact_match": em, "f1": f1}


def decode_spans(start_logits: np.ndarray, end_logits: np.ndarray, example_index: Sequence[int],
                 offsets: Sequence[Sequence], contexts: Sequence[str], n_best: int = 20,
                 max_answer_length: int = 30) -> list[str]:
    """Best span text per example from the logits of its windows (features).

    Candidates pair the ``n_best`` top start and end positions inside the context
    (``offsets`` is None outside it) with end >= start and a length of at most
    ``max_answer_length`` tokens; the score is start + end logit.
    """
    best: dict[int, tuple[float, str]] = {}
    for f, ex in enumerate(example_index):
        s_log, e_log, offs = np.asarray(start_logits[f]), np.asarray(end_logits[f]), offsets[f]
        n = min(len(offs), len(s_log))
        starts = np.argsort(s_log[:n])[::-1][:n_best]
        ends = np.argsort(e_log[:n])[::-1][:n_best]
        for s in starts:
            if offs[s] is None:
                continue
            for e in ends:
                if offs[e] is None or e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(s_log[s] + e_log[e])
                if int(ex) not in best or score > best[int(ex)][0]:
                    best[int(ex)] = (score, contexts[int(ex)][offs[s][0]: offs[e][1]])
    return [best.get(i, (0.0, ""))[1].strip() for i in range(len(contexts))]


@dataclass(frozen=True)
class Metric:
    """A query-set metric. ``compute(predictions, references)`` returns ``{"metric": value, ...}``
    (extra keys, e.g. ``exact_match``, are recorded beside it); ``higher_is_better`` and
    ``bounds`` tell the leaderboard how to rank, test and check values of this metric."""

    name: str
    compute: Callable[[Sequence, Sequence], dict[str, float | None]]
    higher_is_better: bool = True
    bounds: tuple[float, float] = (0.0, 1.0)
    description: str = ""

    def oriented(self, value: float) -> float:
        """The value with "larger is better" for every metric (ranks and tests use it)."""
        return value if self.higher_is_better else -value


METRICS: Registry[Metric] = Registry("metric", base=Metric, group="metaft.metrics",
                                      legacy_groups=("suite.metrics",), builtins=("metaft.tasks.metrics",))


def register_metric(metric: Metric) -> Metric:
    return METRICS.register(metric.name, metric)


def get_metric(name: str) -> Metric:
    return METRICS.get(name)


LEGACY_NAMES = {("ner", "f1"): "entity_f1", ("qa", "f1"): "squad_f1"}  # rows written before metrics were objects


def metric_name_for(name: str, task_type: str) -> str:
    """The registered name of a row's metric (rows before v0.2 said "f1" for both F1s)."""
    return LEGACY_NAMES.get((task_type, name), name)


def _squad_f1(predictions, references):
    scores = squad_scores(predictions, references)
    return {"metric": scores["f1"], "exact_match": scores["exact_match"]}


register_metric(Metric("accuracy", lambda p, r: {"metric": accuracy(p, r)},
                       description="fraction of query examples whose predicted label is right"))
register_metric(Metric("entity_f1", lambda p, r: {"metric": entity_f1(list(r), list(p))},
                       description="entity-level micro F1 over BIO tags (seqeval, CoNLL)"))
register_metric(Metric("squad_f1", _squad_f1, description="SQuAD v1.1 token F1 (max over gold answers); "
                                                          "exact match recorded beside it"))
