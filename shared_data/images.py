"""Image grids as PNG files, from numpy arrays: the VAE's samples and reconstructions per epoch.

Framework-neutral: each framework hands over numpy arrays of grey levels in [0, 1] and both
write the same file names, so a report can set the two runs' pictures side by side. The
layout follows torchvision's `save_image` (2-pixel black padding, `nrow` tiles a row), which
pytorch/examples' VAE uses for its `results/sample_*.png` and `reconstruction_*.png`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGES_DIR = "images"
SAMPLES_FILE = "samples_epoch{epoch}.png"
RECONSTRUCTIONS_FILE = "reconstructions_epoch{epoch}.png"
PICTURE_SEED = 0  # the prior samples' latents: the same every epoch, run and framework
_LATENT_STREAM = 9


def prior_latents(latents: int, n: int = 64, seed: int = PICTURE_SEED) -> np.ndarray:
    """Fixed standard-normal latent codes [n, latents] to decode into the sample grid."""
    rng = np.random.default_rng([seed, 0, 0, _LATENT_STREAM])
    return rng.standard_normal((n, latents)).astype(np.float32)


def grid(
    images: np.ndarray, nrow: int = 8, size: tuple[int, int] = (28, 28), padding: int = 2
) -> np.ndarray:
    """Tile images [N, ...] of `size` pixels (any layout of one channel) into a uint8 grid."""
    tiles = np.clip(np.asarray(images, dtype=np.float32).reshape(-1, *size), 0.0, 1.0)
    h, w = size
    rows = -(-len(tiles) // nrow)
    cols = min(nrow, len(tiles))
    out = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding), np.uint8)
    for i, tile in enumerate(tiles):
        y = padding + (i // nrow) * (h + padding)
        x = padding + (i % nrow) * (w + padding)
        out[y : y + h, x : x + w] = np.rint(tile * 255.0).astype(np.uint8)
    return out


def save_grid(path: str | Path, images: np.ndarray, nrow: int = 8) -> Path:
    """Write `images` (grey levels in [0, 1]) as one greyscale PNG grid; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(grid(images, nrow)).save(tmp, format="PNG")  # uint8 2-D: greyscale
    tmp.replace(path)  # a reader never sees half a file
    return path


def save_epoch_pictures(
    workdir: str | Path,
    epoch: int,
    samples: np.ndarray,
    originals: np.ndarray,
    reconstructions: np.ndarray,
) -> tuple[Path, Path]:
    """Write the epoch's 8x8 sample grid and its grid of originals above reconstructions."""
    folder = Path(workdir) / IMAGES_DIR
    n = len(originals)
    pairs = np.concatenate([np.reshape(originals, (n, -1)), np.reshape(reconstructions, (n, -1))])
    return (
        save_grid(folder / SAMPLES_FILE.format(epoch=epoch), samples, nrow=8),
        save_grid(folder / RECONSTRUCTIONS_FILE.format(epoch=epoch), pairs, nrow=n),
    )
