"""Embedded default dataset: scikit-learn's bundled 8x8 digits, reshaped to MNIST geometry."""

from __future__ import annotations

import numpy as np

from .errors import DataError

DIGITS_SOURCE = "scikit-learn digits (embedded)"
# Stream tag in the seed key, so this split never shares random numbers with batch shuffling.
_SPLIT_STREAM = 3


def _upsample_to_mnist(images: np.ndarray) -> np.ndarray:
    # x3 nearest-neighbour gives 24x24; a 2-pixel border then matches MNIST's 28x28 with a
    # blank margin, as MNIST's own digits sit in a 20x20 box inside the frame.
    big = np.repeat(np.repeat(images, 3, axis=1), 3, axis=2)
    big = np.pad(big, ((0, 0), (2, 2), (2, 2)))
    return np.rint(big * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)


def load_digits_as_mnist(
    seed: int = 0, test_fraction: float = 0.2
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return sklearn digits as MNIST-like {"train"|"test": (uint8 [N,28,28], uint8 [N])}."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DataError(
            "the 'digits' dataset needs scikit-learn (it ships the images): "
            "`pip install scikit-learn`, or use --dataset synthetic"
        ) from exc
    bunch = load_digits()
    images = _upsample_to_mnist(np.asarray(bunch.images, dtype=np.float64))
    labels = np.asarray(bunch.target).astype(np.uint8)

    # Stratified: each class gives the same fraction to test, so both splits stay balanced.
    rng = np.random.default_rng([seed, 0, 0, _SPLIT_STREAM])
    is_test = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        is_test[members[: int(round(len(members) * test_fraction))]] = True
    # Boolean masks keep the original (class-interleaved) order inside each split.
    return {
        "train": (images[~is_test], labels[~is_test]),
        "test": (images[is_test], labels[is_test]),
    }
