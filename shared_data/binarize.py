"""Bernoulli binarisation of [0, 1] grey levels: dynamic for training, fixed for the test split.

A Bernoulli decoder models binary pixels. Training draws a fresh binary image from every grey
image each time it is seen (dynamic binarisation, from the numpy generator the driver hands
the augment hook, so both frameworks see identical batches and a resumed run the same ones);
the test split is binarised once, from a fixed seed that no config changes, and carries a
fixed "noise" array for the reparameterisation, so its negative ELBO is deterministic and the
same in both frameworks and across runs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .datasets import ImageDataset
from .unit_images import load_for_config

TEST_SEED = 0  # the test split's binarisation and noise: fixed, independent of config.seed
# Stream tags in the seed key (1-6 are taken by batches, digits and synthetic data).
_TEST_IMAGE_STREAM, _TEST_NOISE_STREAM = 7, 8

Batch = dict[str, np.ndarray]


def binarize(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Binary float32 images, each pixel 1 with probability its grey level in [0, 1]."""
    return (rng.random(images.shape) < images).astype(np.float32)


def binarize_batch(batch: Batch, rng: np.random.Generator, **_) -> Batch:
    """The training augment hook: the batch with its "image" dynamically binarised."""
    return {**batch, "image": binarize(batch["image"], rng)}


def fixed_test_split(split: Batch, latents: int, seed: int = TEST_SEED) -> Batch:
    """`split` binarised once from `seed`, with a standard-normal "noise" [N, latents] field."""
    n = len(split["image"])
    image_rng = np.random.default_rng([seed, 0, 0, _TEST_IMAGE_STREAM])
    noise_rng = np.random.default_rng([seed, 0, 0, _TEST_NOISE_STREAM])
    noise = noise_rng.standard_normal((n, latents)).astype(np.float32)
    return {**split, "image": binarize(split["image"], image_rng), "noise": noise}


def load_binarized(config) -> ImageDataset:
    """The config's [0, 1] dataset with a fixed binarised, noise-carrying test split."""
    dataset = load_for_config(config)
    return dataclasses.replace(dataset, test=fixed_test_split(dataset.test, config.latents))
