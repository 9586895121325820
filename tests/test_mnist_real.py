"""Checks against the real MNIST files, when a copy is available offline."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from shared_data import load_image_dataset
from shared_data.mnist import load_mnist

# DESIGN.md: the project's real datasets sit at ../shared/data beside the checkout.
_BESIDE_CHECKOUT = Path(__file__).resolve().parents[2] / "shared" / "data"

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _data_root() -> Path | None:
    for root in (os.environ.get("ROADMAP_DATA_DIR"), _BESIDE_CHECKOUT):
        if root and (Path(root) / "mnist").is_dir():
            return Path(root)
    return None


@pytest.fixture(scope="module")
def root() -> Path:
    found = _data_root()
    if found is None:
        pytest.skip("real MNIST not found: set ROADMAP_DATA_DIR to a folder holding mnist/")
    return found


def test_real_mnist_counts_histograms_and_mean(root):
    data = load_mnist(root)  # verify=True: the decompressed sha256 table must match
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    assert xtr.shape == (60000, 28, 28) and ytr.shape == (60000,)
    assert xte.shape == (10000, 28, 28) and yte.shape == (10000,)
    assert np.bincount(ytr, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(yte, minlength=10).tolist() == TEST_COUNTS
    assert round(float(xtr.mean(dtype=np.float64)), 3) == 33.318
    assert round(float(xte.mean(dtype=np.float64)), 3) == 33.791


def test_real_mnist_as_image_dataset(root):
    ds = load_image_dataset("mnist", root, limit_train=1000)
    assert ds.source == str(root / "mnist")
    assert ds.train["image"].shape == (1000, 28, 28, 1)
    assert ds.test["image"].shape == (10000, 28, 28, 1)
    # The standard MNIST normalisation leaves the full test set near zero mean, unit std.
    assert abs(float(ds.test["image"].mean())) < 0.02
    assert abs(float(ds.test["image"].std()) - 1.0) < 0.03
