"""Optional source: image classification datasets prepared by TensorFlow Datasets.

`--dataset tfds:mnist` (or tfds:fashion_mnist, tfds:kmnist: any TFDS dataset with 28x28x1
`image` and integer `label` features) reads a dataset that `tfds build` prepared, through
`tfds.data_source` (ArrayRecord files; TensorFlow itself is not needed). Install with
`pip install -e ".[tfds]"`. The data layer's own IDX reader stays the default for MNIST.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataError

PREFIX = "tfds:"
INSTALL_HINT = 'install the optional source with `pip install -e ".[tfds]"`'


def load_tfds(
    name: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = False,
    splits: tuple[str, ...] = ("train", "test"),
) -> dict[str, tuple[np.ndarray, ...]]:
    """{split: (images uint8 [N, 28, 28], labels uint8 [N])} of TFDS dataset `name`."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise DataError(
            f"dataset {PREFIX}{name} needs tensorflow-datasets: {INSTALL_HINT}"
        ) from err
    out = {}
    for split in splits:
        try:
            source = tfds.data_source(name, split=split, data_dir=data_dir, download=download)
        except Exception as err:  # noqa: BLE001 - TFDS raises many types; name them all
            where = data_dir or "~/tensorflow_datasets"
            raise DataError(
                f"TFDS dataset {name!r} (split {split!r}) is not prepared under "
                f"{where}: {type(err).__name__}: {err}. Prepare it once with "
                f"`tfds build {name}` where a network is available, or add "
                "--download"
            ) from err
        records = [source[i] for i in range(len(source))]
        images = np.stack([np.asarray(r["image"]) for r in records])
        labels = np.asarray([int(r["label"]) for r in records])
        if images.shape[1:] not in ((28, 28, 1), (28, 28)):
            raise DataError(
                f"TFDS dataset {name!r} has images of shape {images.shape[1:]}; "
                "the MNIST models need 28x28x1"
            )
        if labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
            raise DataError(f"TFDS dataset {name!r} has labels outside 0..9")
        out[split] = (images.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.uint8))
    return out
