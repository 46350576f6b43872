"""The quick preset's fine-tuning budget trains: a real run of the packaged MiniLM on the mirror."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from suite_process import run_suite

from metaft.suite.results import load_results


@pytest.mark.slow
# 376-438 s in make test on a processor with avx512 and bf16 (one thread, beside the other worker; 393 s
# with fused Adam, 2026-12-07); on an AVX2-only one (no bf16, so the preset runs fp32) 1309 s before
# --curve-points ends, fused Adam and the cached content keys, 823-926 s after (2026-12-07, idle):
# the limit keeps 3.9x or more for such a machine under load
@pytest.mark.timeout(3600)
def test_quick_preset_baseline_raises_the_classification_metric(tmp_path):
    """Between step 0 and the last step the query accuracy rises by >= 0.02 in the median over 16
    classification tasks, and more tasks rise than fall (one-sided sign test at 0.05). The quick
    preset as shipped (bf16 where native since round 3: 2.14x the tasks per hour at the same metric),
    measured at step 0 and the last step only (``--curve-points ends``: the same final metric as the
    log2 curve, tests/test_run.py, without 5 of the 7 query-set evaluations)."""
    out = tmp_path / "r"
    proc = run_suite("run", "--algo", "baseline", "--preset", "quick", "--out", str(out),
                     "--datasets", "imdb,sst2,ag_news,yelp_review_full", "--meta-train-tasks", "0",
                     "--meta-test-tasks", "16", "--curve-points", "ends", "--no-progress", timeout=3500)
    assert proc.returncode == 0, proc.stderr
    _, tasks = load_results(out)
    assert len(tasks) == 16 and (tasks["task_type"] == "classification").all()
    assert (tasks["ft_steps"] == 32).all() and list(tasks["curve_steps"].iloc[0]) == [0, 32]
    gain = (tasks["metric"] - tasks["metric_at_0"]).to_numpy()
    assert np.median(gain) >= 0.02, gain
    up, down = int((gain > 0).sum()), int((gain < 0).sum())
    assert sps.binomtest(up, up + down, 0.5, alternative="greater").pvalue < 0.05, gain
