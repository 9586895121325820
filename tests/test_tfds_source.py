"""The optional TensorFlow Datasets source (runs where `pip install -e ".[tfds]"` was done)."""

from __future__ import annotations

import numpy as np
import pytest

from shared_data import DataError, load_image_dataset


def test_missing_package_or_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"tensorflow-datasets|not prepared|tfds build"):
        load_image_dataset("tfds:mnist", tmp_path / "empty")


def test_reads_a_prepared_dataset_through_data_source():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        dataset = load_image_dataset("tfds:mnist")
    assert dataset.train["image"].shape == (12, 28, 28, 1)
    assert dataset.train["image"].dtype == np.float32
    assert dataset.test["label"].dtype == np.int32
    assert set(np.unique(dataset.train["label"])) <= set(range(10))
    assert "TensorFlow Datasets mnist" in dataset.source
