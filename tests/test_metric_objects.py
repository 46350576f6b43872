"""Metrics and task types as registered objects: evaluation computes the dataset's metric, and
the leaderboard reads a metric's direction and range from it."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
from results_fixture import PLANTED_VERDICTS, write_planted_verdicts

from metaft.leaderboard import costs, stats, verdicts
from metaft.suite.evaluate import evaluate
from metaft.suite.foundation.errors import NotFoundError
from metaft.suite.results import load_results
from metaft.tasks.metrics import METRICS, Metric, accuracy, get_metric, register_metric
from metaft.tasks.task_types import get_task_type

ERROR_RATE = Metric("error_rate", lambda p, r: {"metric": 1.0 - accuracy(p, r)}, higher_is_better=False,
                    description="share of wrong labels (a smaller-is-better metric, for the tests)")


@pytest.fixture(scope="module", autouse=True)
def error_rate_metric():
    if "error_rate" not in METRICS:
        register_metric(ERROR_RATE)


def test_builtin_metrics_and_task_types_carry_their_properties():
    assert [get_task_type(t).default_metric for t in ("classification", "ner", "qa")] == \
        ["accuracy", "entity_f1", "squad_f1"]
    assert all(get_metric(m).higher_is_better and get_metric(m).bounds == (0.0, 1.0)
               for m in ("accuracy", "entity_f1", "squad_f1"))
    assert get_metric("squad_f1").compute(["the cat"], [["a cat"]]) == {"metric": 1.0, "exact_match": 1.0}
    with pytest.raises(NotFoundError, match=r"unknown metric 'acuracy' \(did you mean 'accuracy'\?\)"):
        get_metric("acuracy")


def test_evaluate_scores_with_the_metric_it_is_given():
    class Fixed(torch.nn.Module):
        def forward(self, batch):  # always class 1
            return torch.tensor([[0.0, 1.0]]).expand(len(batch["labels"]), 2)

    batches = [{"task_type": "classification", "labels": torch.tensor([1, 1, 0, 1])}]
    assert evaluate(Fixed(), batches, ["a", "b"]) == {"metric": 0.75, "exact_match": None}
    assert evaluate(Fixed(), batches, ["a", "b"], "error_rate")["metric"] == pytest.approx(0.25)


def test_a_smaller_is_better_metric_is_ranked_and_judged_by_its_direction(tmp_path):
    """The planted study written as error rates (1 - accuracy): the same candidates must rank
    first and get the same verdicts and cost rows (a lower error reaches the target), and
    rows from before metrics were objects ("f1") are read as the task type's F1."""
    _, tasks = load_results(write_planted_verdicts(tmp_path / "err", metric_name="error_rate", as_error_rate=True))
    prepared = stats.prepare(tasks)
    assert (prepared["metric_sign"] == -1).all()
    pairs = stats.all_pairs(prepared, measures=("metric",), n_resamples=0)
    ranks = stats.ranks_for(prepared, pairs)
    assert ranks["plants-better"] == 1 and ranks["plants-worse"] == max(ranks.values())
    table = verdicts.verdicts(tasks, references=["baseline"])
    got = dict(zip(table["candidate"], table["verdict"]))
    assert got == PLANTED_VERDICTS
    better = table[table["candidate"] == "plants-better"].iloc[0]
    assert better["mean_diff"] == pytest.approx(-0.10) and not better["higher_is_better"]  # shown as measured
    accuracy_costs = costs.amortization(load_results(write_planted_verdicts(tmp_path / "acc"))[1], None,
                                        n_resamples=0).set_index("candidate")
    error_costs = costs.amortization(tasks, None, n_resamples=0).set_index("candidate")
    columns = ["verdict", "sufficient_candidate", "sufficient_reference", "compute_ratio", "p_cheaper", "p_dearer"]
    pd.testing.assert_frame_equal(error_costs[columns], accuracy_costs[columns])
    assert error_costs.loc["plants-better", "sufficient_candidate"] == 8  # a lower error reaches the baseline's
    assert pd.isna(error_costs.loc["plants-worse", "sufficient_candidate"])  # a higher one never does

    legacy = tasks.assign(metric_name="f1", task_type="ner")
    assert set(stats.prepare(legacy)["metric_name"]) == {"entity_f1"}
