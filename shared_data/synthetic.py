"""Generated MNIST-shaped data: class templates plus noise and shifts, learnable in seconds."""

from __future__ import annotations

import numpy as np

SYNTHETIC_SOURCE = "synthetic"
_SIZE = 28
# Stream tags keep templates, train and test draws independent of each other.
_TEMPLATE_STREAM, _TRAIN_STREAM, _TEST_STREAM = 4, 5, 6


def _stroke_templates(num_classes: int, rng: np.random.Generator) -> np.ndarray:
    # Each class is a few thick random strokes inside the central 20x20 box, like a digit.
    templates = np.zeros((num_classes, _SIZE, _SIZE), dtype=np.float32)
    yy, xx = np.mgrid[0:_SIZE, 0:_SIZE]
    t = np.linspace(0.0, 1.0, 48)[:, None]
    for cls in range(num_classes):
        for _ in range(3):
            a, b = rng.uniform(6, 22, size=2), rng.uniform(6, 22, size=2)
            points = a + t * (b - a)  # [48, 2] samples along the segment
            dist2 = (yy[None] - points[:, 0, None, None]) ** 2 + (
                xx[None] - points[:, 1, None, None]
            ) ** 2
            templates[cls] = np.maximum(templates[cls], np.exp(-dist2 / 2.0).max(axis=0))
    return templates


def _shift_images(images: np.ndarray, dy: np.ndarray, dx: np.ndarray, pad: int) -> np.ndarray:
    n, h, w = images.shape
    canvas = np.zeros((n, h + 2 * pad, w + 2 * pad), dtype=images.dtype)
    canvas[:, pad : pad + h, pad : pad + w] = images
    rows = (pad - dy)[:, None] + np.arange(h)
    cols = (pad - dx)[:, None] + np.arange(w)
    return canvas[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def _sample(
    templates: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    num_classes = len(templates)
    # Balanced labels in random order, so small splits still cover every class.
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.uint8)
    intensity = rng.uniform(0.7, 1.0, size=(n, 1, 1)).astype(np.float32)
    images = templates[labels] * intensity
    shift = rng.integers(-2, 3, size=(2, n))
    images = _shift_images(images, shift[0], shift[1], pad=2)
    images = images * 255.0 + rng.normal(0.0, 20.0, size=images.shape)
    return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels


def synthetic_mnist(
    n_train: int = 512, n_test: int = 256, seed: int = 0, num_classes: int = 10
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return learnable MNIST-shaped {"train"|"test": (uint8 [N,28,28], uint8 [N])} data."""
    if n_train < 0 or n_test < 0:
        raise ValueError(f"n_train and n_test must be >= 0, got {n_train} and {n_test}")
    if not 2 <= num_classes <= 256:
        raise ValueError(f"num_classes must be in 2..256 (labels are uint8), got {num_classes}")
    template_rng = np.random.default_rng([seed, 0, 0, _TEMPLATE_STREAM])
    templates = _stroke_templates(num_classes, template_rng)
    return {
        "train": _sample(templates, n_train, np.random.default_rng([seed, 0, 0, _TRAIN_STREAM])),
        "test": _sample(templates, n_test, np.random.default_rng([seed, 0, 0, _TEST_STREAM])),
    }
