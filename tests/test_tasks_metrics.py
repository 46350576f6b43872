"""Metrics equal hand-computed values, edge cases included."""
from __future__ import annotations

import numpy as np
import pytest

from metaft.tasks.metrics import accuracy, decode_spans, entity_f1, exact_match, normalize_answer, qa_f1, squad_scores


def test_accuracy():
    assert accuracy([0, 1, 1, 2], [0, 1, 2, 2]) == 0.75
    with pytest.raises(ValueError):
        accuracy([], [])


def test_entity_f1_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "O"]]
    # 2 of 2 predicted entities correct (precision 1), 2 of 3 gold found (recall 2/3) -> F1 0.8
    assert entity_f1(gold, pred) == pytest.approx(0.8)
    # a split entity (B then B instead of B then I) is two wrong entities, not a partial hit
    assert entity_f1([["B-PER", "I-PER"]], [["B-PER", "B-PER"]]) == 0.0
    assert entity_f1([["O", "O"]], [["O", "O"]]) == 0.0


def test_squad_normalisation_and_scores():
    assert normalize_answer("The  Eiffel, Tower!") == "eiffel tower"
    assert exact_match("the Eiffel Tower", ["Eiffel Tower", "Paris"]) == 1.0
    # F1 is the max over gold answers: "in Paris" vs "Paris" = 2*(1/2*1)/(1/2+1) = 2/3
    assert qa_f1("in Paris", ["Eiffel Tower", "Paris"]) == pytest.approx(2 / 3)
    assert qa_f1("", ["Paris"]) == 0.0 and exact_match("", ["Paris"]) == 0.0
    scores = squad_scores(["Denver Broncos", "a cat"], [["Denver Broncos", "Broncos"], ["dog"]])
    assert scores == {"exact_match": 0.5, "f1": 0.5}


def test_span_decoding_picks_the_best_valid_span_across_windows():
    context = "Paris is the capital of France"
    offsets = [[None, (0, 5), (6, 8), (9, 12), (13, 20), (21, 23), (24, 30)],
               [None, (13, 20), (21, 23), (24, 30), None, None, None]]
    start = np.array([[9, 1, 0, 0, 0, 0, 0], [0, 0, 0, 5, 9, 0, 0]], float)
    end = np.array([[9, 2, 0, 0, 0, 0, 0], [0, 0, 0, 5, 9, 0, 0]], float)
    # position 0 is outside the context; the best valid span is "France" in window 2
    assert decode_spans(start, end, [0, 0], offsets, [context]) == ["France"]
    # end before start is never chosen; the length cap removes long spans
    one = offsets[:1]
    assert decode_spans(np.array([[0, 0, 0, 0, 0, 0, 5.0]]), np.array([[0, 5.0, 0, 0, 0, 0, 0]]), [0], one,
                        [context]) != ["Paris is the capital of France"]
    s = np.array([[0, 5.0, 1, 0, 0, 0, 0]]); e = np.array([[0, 0, 0, 2.0, 0, 0, 5.0]])
    assert decode_spans(s, e, [0], one, [context]) == ["Paris is the capital of France"]
    assert decode_spans(s, e, [0], one, [context], max_answer_length=3) == ["Paris is the"]
    assert decode_spans(np.zeros((1, 7)), np.zeros((1, 7)), [0], [[None] * 7], [context]) == [""]
