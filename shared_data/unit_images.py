"""Image datasets as pixel intensities in [0, 1], for generative models (the VAE).

shared_data/datasets.py normalises with MNIST's mean and std for classifiers; a Bernoulli
decoder instead wants each pixel as the probability of being on. Same sources (MNIST IDX
files, the embedded scikit-learn digits, synthetic data), same splits, same ImageDataset.
"""

from __future__ import annotations

from . import datasets
from .datasets import ImageDataset


def load_for_config(config) -> ImageDataset:
    """The [0, 1] dataset a project config names (dataset, data_dir, download, seed, limits)."""
    # mean 0, std 1: x / 255, the grey level as a probability.
    return datasets.load_for_config(config, mean=0.0, std=1.0)
