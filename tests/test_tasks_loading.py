"""Datasets load through the mirror with the Hub schemas; bad inputs fail clearly."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from metaft.tasks import DataError, UnknownDatasetError, get_dataset_spec, list_datasets, load_split
from metaft.tasks.loading import _load_split_cached

EIGHT = ["imdb", "ag_news", "yelp_review_full", "sst2", "conll2003", "ontonotes5", "squad", "natural_questions"]


def test_the_eight_datasets_are_registered():
    assert list_datasets()[:8] == EIGHT


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(UnknownDatasetError) as err:
        get_dataset_spec("imbd")
    assert "imbd" in str(err.value) and "imdb" in str(err.value) and "natural_questions" in str(err.value)


@pytest.mark.parametrize("name", EIGHT)
def test_every_split_loads_from_the_mirror_with_hub_schema(name, data_dir):
    spec = get_dataset_spec(name)
    for split in spec.splits:
        loaded = load_split(name, split, data_dir)
        assert loaded.num_rows > 0
        assert set(spec.columns.values()) <= set(loaded.dataset.column_names)
        assert loaded.fingerprint.startswith("sha256:")
        features = loaded.dataset.features
        if spec.task_type == "classification":
            assert list(features[spec.columns["label"]].names) == list(spec.label_names)
        if spec.task_type == "qa":
            assert set(features["answers"]) == {"text", "answer_start"}


def _copy(data_dir, tmp_path, name, split, transform):
    table = pq.read_table(data_dir / name / f"{split}.parquet")
    (tmp_path / name).mkdir(parents=True, exist_ok=True)
    pq.write_table(transform(table), tmp_path / name / f"{split}.parquet")
    _load_split_cached.cache_clear()
    return tmp_path


def test_missing_file_names_the_path_and_the_fix(tmp_path):
    (tmp_path / "imdb").mkdir()
    with pytest.raises(DataError, match=r"missing data file .*imdb/train.parquet.*suite data export"):
        load_split("imdb", "train", tmp_path)


def test_missing_column_names_file_and_column(data_dir, tmp_path):
    root = _copy(data_dir, tmp_path, "ag_news", "test", lambda t: t.drop(["label"]))
    with pytest.raises(DataError, match=r"ag_news/test.parquet: missing column 'label'"):
        load_split("ag_news", "test", root)


def test_label_out_of_range_names_file_and_column(data_dir, tmp_path):
    def shift(t):
        i = t.schema.get_field_index("label")
        return t.set_column(i, pa.field("label", pa.int64()), pa.array([7] * t.num_rows, pa.int64()))
    root = _copy(data_dir, tmp_path, "yelp_review_full", "test", shift)
    with pytest.raises(DataError, match=r"yelp_review_full/test.parquet: column 'label' has labels in \[7, 7\]"):
        load_split("yelp_review_full", "test", root)


def test_corrupt_file_is_a_clear_error(tmp_path):
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / "validation.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match=r"cannot read .*sst2/validation.parquet"):
        load_split("sst2", "validation", tmp_path)


def test_unknown_split_lists_the_splits(data_dir):
    with pytest.raises(DataError, match="its splits are validation"):
        load_split("natural_questions", "train", data_dir)


def test_offline_hub_without_mirror_says_how_to_point_at_one(monkeypatch, tmp_path):
    monkeypatch.delenv("SUITE_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    _load_split_cached.cache_clear()
    with pytest.raises(DataError, match="--data-dir"):
        load_split("imdb", "test")
    with pytest.raises(DataError, match="no Hub copy"):
        load_split("natural_questions", "validation")
