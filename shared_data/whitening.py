"""Patch whitening: the frozen first convolution of airbench's CIFAR-10 speedrun net.

The layer's 2x2x3 filters are the eigenvectors of the (uncentred) covariance of all 2x2
patches of the first training images, each scaled by 1/sqrt(eigenvalue + eps), together
with their negatives (so a GELU after it keeps both signs): 12 eigenvectors, 24 filters.
Computed once here, in numpy, and copied into both frameworks (HWIO for Flax, OIHW for
torch), so both start from the very same layer.
"""

from __future__ import annotations

import numpy as np

WHITEN_IMAGES = 5000  # airbench: the first 5,000 training images
WHITEN_EPS = 5e-4


def patch_whitening(
    images: np.ndarray, patch: int = 2, eps: float = WHITEN_EPS
) -> tuple[np.ndarray, np.ndarray]:
    """(kernel HWIO [patch, patch, C, 2*patch*patch*C], zero bias) whitening `images` NHWC."""
    x = np.asarray(images, np.float64)
    if x.ndim != 4:
        raise ValueError(f"patch_whitening wants NHWC images, got shape {list(x.shape)}")
    n, h, w, c = x.shape
    # Every patch x patch window, flattened in (kh, kw, c) order: [n * windows, patch*patch*c].
    windows = np.lib.stride_tricks.sliding_window_view(x, (patch, patch), axis=(1, 2))
    # windows: [n, h-p+1, w-p+1, c, kh, kw] -> (kh, kw, c) order
    flat = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, patch * patch * c)
    covariance = flat.T @ flat / len(flat)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    order = np.argsort(eigenvalues)[::-1]  # largest first, as airbench flips torch's eigh
    scaled = eigenvectors[:, order] / np.sqrt(eigenvalues[order] + eps)  # columns: filters
    filters = np.concatenate([scaled, -scaled], axis=1)  # [p*p*c, 2*p*p*c]
    kernel = filters.reshape(patch, patch, c, -1).astype(np.float32)
    return kernel, np.zeros(kernel.shape[-1], np.float32)
