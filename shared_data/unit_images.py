"""Image datasets as pixel intensities in [0, 1], for generative models (the VAE).

shared_data/datasets.py normalises with MNIST's mean and std for classifiers; a Bernoulli
decoder instead wants each pixel as the probability of being on. Same sources (MNIST IDX
files, the embedded scikit-learn digits, synthetic data), same splits, same ImageDataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .batches import to_float_nhwc
from .datasets import ImageDataset
from .digits import DIGITS_SOURCE, load_digits_as_mnist
from .errors import DataError
from .mnist import load_mnist_with_source
from .synthetic import SYNTHETIC_SOURCE, synthetic_mnist

UNIT_DATASETS = ("mnist", "digits", "synthetic")


def _split(images: np.ndarray, labels: np.ndarray, limit: int | None) -> dict[str, np.ndarray]:
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    # mean 0, std 1: x / 255, the grey level as a probability.
    return {"image": to_float_nhwc(images, 0.0, 1.0), "label": labels.astype(np.int32)}


def load_unit_images(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = False,
    seed: int = 0,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> ImageDataset:
    """Load "mnist", "digits" or "synthetic" with float32 NHWC images in [0, 1]."""
    for label, limit in (("limit_train", limit_train), ("limit_test", limit_test)):
        if limit is not None and limit < 0:
            raise ValueError(f"{label} must be >= 0 or None, got {limit}")
    key = name.strip().lower()
    if key == "mnist":
        splits, folder = load_mnist_with_source(data_dir, download=download)
        source = str(folder)
    elif key == "digits":
        splits, source = load_digits_as_mnist(seed=seed), DIGITS_SOURCE
    elif key == "synthetic":
        splits, source = synthetic_mnist(seed=seed), SYNTHETIC_SOURCE
    else:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(UNIT_DATASETS)}")
    return ImageDataset(
        name=key,
        train=_split(*splits["train"], limit_train),
        test=_split(*splits["test"], limit_test),
        num_classes=10,
        source=source,
    )


def load_for_config(config) -> ImageDataset:
    """The [0, 1] dataset a project config names (dataset, data_dir, download, seed, limits)."""
    return load_unit_images(
        config.dataset,
        config.data_dir,
        download=config.download,
        seed=config.seed,
        limit_train=config.limit_train,
        limit_test=config.limit_test,
    )
