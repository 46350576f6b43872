"""The consolidated index of a results folder: a cache that never changes what is loaded."""
from __future__ import annotations

import json
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


def test_manifests_are_read_lazily_and_their_summary_follows_edits(tmp_path):
    """A site build reads a few small fields of every manifest through a stamp-keyed cache and
    whole manifests only when asked for; an edited manifest is read again, a removed run drops out."""
    from metaft.suite.results import load_manifests

    root = write_results(tmp_path / "r", n_tasks=4)
    overlap = {"ag_news": {"tasks": 4, "tasks_sharing_a_query": 1, "distinct": 60, "queries": 64}}
    edited = sorted(root.glob("*/manifest.json"))[0]
    edited.write_text(json.dumps({**json.loads(edited.read_text()), "query_overlap": overlap}))
    manifests = load_manifests(root)
    assert manifests._read == {}  # nothing read yet
    summary = manifests.summary()
    assert summary[edited.parent.name]["query_overlap"] == overlap
    assert set(summary) == {p.parent.name for p in root.glob("*/manifest.json")}
    assert (root / INDEX_DIR / "manifests.json").is_file()

    again = load_manifests(root)
    assert again.summary() == summary and again._read == {}  # served from the cache, no manifest read
    edited.write_text(json.dumps({**json.loads(edited.read_text()), "query_overlap": {}}))
    removed = sorted(root.glob("*/manifest.json"))[-1].parent
    shutil.rmtree(removed)
    third = load_manifests(root)
    fresh = third.summary()
    assert fresh[edited.parent.name]["query_overlap"] == {} and removed.name not in fresh
    assert list(third._read) == [edited.parent.name]  # only the edited one was read
    assert third[edited.parent.name]["run_id"] == json.loads(edited.read_text())["run_id"]
