"""Shared numpy data layer: readers, sources and deterministic batching for both frameworks."""

from .batches import (
    MNIST_MEAN,
    MNIST_STD,
    epoch_permutation,
    iterate_batches,
    num_batches,
    random_shift,
    to_float_nhwc,
    train_val_split,
)
from .datasets import DATASETS, ImageDataset, describe_sources, load_image_dataset
from .errors import DataError
from .mnist import load_mnist

__all__ = [
    "DATASETS",
    "MNIST_MEAN",
    "MNIST_STD",
    "DataError",
    "ImageDataset",
    "describe_sources",
    "epoch_permutation",
    "iterate_batches",
    "load_image_dataset",
    "load_mnist",
    "num_batches",
    "random_shift",
    "to_float_nhwc",
    "train_val_split",
]
