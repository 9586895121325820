"""One entry point for image datasets: name in, normalised NHWC float32 arrays out."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .batches import MNIST_MEAN, MNIST_STD, to_float_nhwc
from .cifar10 import _not_found_message as _cifar10_not_found
from .cifar10 import cifar10_path, load_cifar10_with_source
from .digits import DIGITS_SOURCE, load_digits_as_mnist
from .errors import DataError
from .mnist import _not_found_message, load_mnist_with_source, mnist_dir
from .shapes import SHAPES_SOURCE, load_shapes
from .synthetic import SYNTHETIC_SOURCE, synthetic_mnist
from .tabular import SOURCES as TABULAR_SOURCES
from .tfds_source import PREFIX, load_tfds

DATASETS = ("mnist", "digits", "synthetic", "cifar10", "shapes")


@dataclass(frozen=True)
class ImageDataset:
    """A classification dataset: {"image": float32 NHWC normalised, "label": int32} per split."""

    name: str
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    num_classes: int
    source: str

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Return the (H, W, C) shape of one image."""
        return tuple(self.train["image"].shape[1:])


def _check_limit(name: str, value: int | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{name} must be >= 0 or None, got {value}")


def _to_split(
    images: np.ndarray, labels: np.ndarray, limit: int | None, mean, std
) -> dict[str, np.ndarray]:
    # Slice before converting so smoke runs on MNIST don't normalise 60,000 images.
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return {"image": to_float_nhwc(images, mean, std), "label": labels.astype(np.int32)}


def load_image_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = False,
    seed: int = 0,
    limit_train: int | None = None,
    limit_test: int | None = None,
    mean: float | tuple[float, ...] = MNIST_MEAN,
    std: float | tuple[float, ...] = MNIST_STD,
) -> ImageDataset:
    """Load one of DATASETS as an ImageDataset (seed drives digits/synthetic/shapes).

    Images become (x / 255 - mean) / std; mean 0 and std 1 give levels in [0, 1]. mean and std
    may be per-channel tuples for the RGB sets (cifar10.CIFAR10_MEAN / CIFAR10_STD).
    """
    _check_limit("limit_train", limit_train)
    _check_limit("limit_test", limit_test)
    key = name.strip().lower()
    if key == "mnist":
        splits, folder = load_mnist_with_source(data_dir, download=download)
        source = str(folder)
    elif key == "digits":
        splits, source = load_digits_as_mnist(seed=seed), DIGITS_SOURCE
    elif key == "synthetic":
        splits, source = synthetic_mnist(seed=seed), SYNTHETIC_SOURCE
    elif key == "cifar10":
        splits, source = load_cifar10_with_source(data_dir, download=download)
    elif key == "shapes":
        splits, source = load_shapes(seed=seed), SHAPES_SOURCE
    elif key.startswith(PREFIX):
        splits = load_tfds(key[len(PREFIX) :], data_dir, download=download)
        source = f"TensorFlow Datasets {key[len(PREFIX) :]} ({data_dir or '~/tensorflow_datasets'})"
    else:
        raise DataError(
            f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}, "
            f"or {PREFIX}<name> for a dataset prepared by TensorFlow Datasets"
        )
    return ImageDataset(
        name=key,
        train=_to_split(*splits["train"], limit_train, mean, std),
        test=_to_split(*splits["test"], limit_test, mean, std),
        num_classes=10,
        source=source,
    )


def describe_sources(data_dir: str | Path | None = None) -> list[dict]:
    """Return one {name, available, where} row per dataset, for `roadmap list`."""
    try:
        folder = mnist_dir(data_dir)
        mnist_row = (
            {"name": "mnist", "available": True, "where": str(folder)}
            if folder is not None
            else {
                "name": "mnist",
                "available": False,
                "where": _not_found_message(data_dir).splitlines()[0]
                + " Use --data-dir, ROADMAP_DATA_DIR or --download.",
            }
        )
    except DataError as exc:
        mnist_row = {"name": "mnist", "available": False, "where": str(exc)}
    try:
        path = cifar10_path(data_dir)
        cifar10_row = (
            {"name": "cifar10", "available": True, "where": str(path)}
            if path is not None
            else {
                "name": "cifar10",
                "available": False,
                "where": _cifar10_not_found(data_dir).splitlines()[0]
                + " Use --data-dir, ROADMAP_DATA_DIR or --download.",
            }
        )
    except DataError as exc:
        cifar10_row = {"name": "cifar10", "available": False, "where": str(exc)}
    has_sklearn = importlib.util.find_spec("sklearn") is not None
    digits_where = DIGITS_SOURCE if has_sklearn else "needs scikit-learn: pip install scikit-learn"
    return [
        mnist_row,
        {
            "name": "digits",
            "available": has_sklearn,
            "where": digits_where,
        },
        {"name": "synthetic", "available": True, "where": "generated on the fly (no files)"},
        cifar10_row,
        {"name": "shapes", "available": True, "where": SHAPES_SOURCE},
        *(
            {"name": name, "available": has_sklearn, "where": where}
            for name, where in TABULAR_SOURCES.items()
            if name != "digits"  # the digits row above covers both uses
        ),
        {
            "name": f"{PREFIX}<name>",
            "available": importlib.util.find_spec("tensorflow_datasets") is not None,
            "where": "datasets prepared by `tfds build` (optional: pip install -e '.[tfds]')",
        },
    ]


def load_for_config(config, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> ImageDataset:
    """The dataset a project config names (dataset, data_dir, download, seed, limits)."""
    return load_image_dataset(
        config.dataset,
        config.data_dir,
        download=config.download,
        seed=config.seed,
        limit_train=config.limit_train,
        limit_test=config.limit_test,
        mean=mean,
        std=std,
    )
