"""The consolidated index of a results folder: a cache that never changes what is loaded."""
from __future__ import annotations

import shutil

import pandas as pd
from results_fixture import write_results

from metaft.suite.results import INDEX_DIR, load_results


def _without_index(root):
    shutil.rmtree(root / INDEX_DIR, ignore_errors=True)
    runs, tasks = load_results(root)
    shutil.rmtree(root / INDEX_DIR, ignore_errors=True)
    return runs, tasks


def same(a, b):
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])


def test_the_index_gives_what_the_files_hold_and_follows_new_changed_and_removed_runs(tmp_path):
    root = write_results(tmp_path / "r", n_tasks=8, seeds=(0,), hostile=False)
    truth = _without_index(root)
    first = load_results(root)  # builds the index
    assert (root / INDEX_DIR / "tasks.parquet").is_file()
    same(first, truth)
    same(load_results(root), truth)  # served from the index
    # a new run appears, one run is rewritten, one is removed
    write_results(tmp_path / "more", n_tasks=8, seeds=(1,), hostile=False)
    shutil.copytree(tmp_path / "more" / "good-minilm-s1", root / "good-minilm-s1")
    runs, tasks = load_results(root / "same-minilm-s0")
    tasks.loc[0, "metric"] = 0.123456
    import pyarrow as pa

    from metaft.suite.results import atomic_write_table, task_schema

    atomic_write_table(root / "same-minilm-s0" / "tasks.parquet",
                       pa.Table.from_pandas(tasks, schema=task_schema(), preserve_index=False))
    shutil.rmtree(root / "baseline-minilm-s0")
    updated = load_results(root)
    same(updated, _without_index(root))
    assert set(updated[0]["run_id"]) == {"good-minilm-s0", "same-minilm-s0", "good-minilm-s1"}
    assert 0.123456 in updated[1]["metric"].tolist()


def test_a_corrupt_index_is_rebuilt_not_trusted(tmp_path):
    root = write_results(tmp_path / "r", n_tasks=8, seeds=(0,), hostile=False)
    truth = _without_index(root)
    load_results(root)
    (root / INDEX_DIR / "tasks.parquet").write_bytes(b"not parquet")
    same(load_results(root), truth)
    (root / INDEX_DIR / "state.json").write_text("{")
    same(load_results(root), truth)
