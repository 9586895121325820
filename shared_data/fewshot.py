"""The transfer project's data: some classes of a dataset, a few labelled examples of each.

`load_transfer_dataset(config)` returns the kit's ImageDataset for a TransferConfig:

- cifar10 / shapes: the classes `config.classes` (relabelled 0..k-1 in that order); the
  training split keeps `config.per_class` examples of each, drawn by `config.subset_seed`
  (fixed across runs, so the seeds of a noise study vary the training, not the examples);
  the test split keeps every example of those classes;
- folder: `config.image_folder`'s train/ and val/ (or test/) splits, read like torchvision's
  ImageFolder (shared_data/imagefolder.py), optionally with the same class and per-class
  selection.

Images are resized to `config.image_size` (Resize + CenterCrop, as torchvision's presets)
and normalised with ImageNet's mean and std, the statistics of torchvision's pretrained
weights (and of the demo's own pretraining).

`python -m shared_data.fewshot export-cifar10 OUT --classes 5,6,7,8,9 --per-class 100` writes
the demo's few-shot set as such an image folder (PNG, lossless): a dataset of your own.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .batches import to_float_nhwc
from .cifar10 import CIFAR10_CLASSES, load_cifar10_with_source
from .datasets import ImageDataset
from .errors import DataError
from .shapes import SHAPES_CLASSES, SHAPES_SOURCE, load_shapes

__all__ = ["CIFAR10_CLASSES", "export_cifar10", "load_transfer_dataset", "select_classes"]


def select_classes(
    images: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[int],
    per_class: int | None,
    seed: int = 0,
    names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The examples of `classes`, relabelled 0..k-1; `per_class` of each drawn by `seed`.

    The kept examples stay in their original order (classes interleaved), whatever the draw.
    """
    labels = np.asarray(labels)
    keep = []
    rng = np.random.default_rng([seed, 0x7EA])
    for c in classes:
        where = np.flatnonzero(labels == c)
        if per_class is not None:
            if len(where) < per_class:
                name = names[c] if names else c
                raise DataError(
                    f"class {name} has {len(where)} training examples, fewer than "
                    f"per_class={per_class}; lower per_class"
                )
            where = np.sort(rng.choice(where, per_class, replace=False))
        keep.append(where)
    index = np.sort(np.concatenate(keep))
    relabel = np.full(int(labels.max(initial=0)) + 1, -1, np.int64)
    relabel[list(classes)] = np.arange(len(classes))
    return images[index], relabel[labels[index]]


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1:3] == (size, size):
        return images
    from PIL import Image

    from .imagefolder import resize_center_crop

    return np.stack([resize_center_crop(Image.fromarray(x), size) for x in images])


def load_transfer_dataset(config, mean, std) -> ImageDataset:
    """The ImageDataset of a TransferConfig (see the module docstring)."""
    classes = list(config.classes)
    if config.dataset == "folder":
        from .imagefolder import read_split, split_dir

        if config.image_folder is None:
            raise DataError(
                "dataset=folder needs --set image_folder=DIR, a folder holding "
                "train/<class>/*.png and val/<class>/*.png"
            )
        train_images, train_labels, names = read_split(
            split_dir(config.image_folder, "train"), config.image_size
        )
        test_images, test_labels, _ = read_split(
            split_dir(config.image_folder, "eval"), config.image_size, names
        )
        splits = {"train": (train_images, train_labels), "test": (test_images, test_labels)}
        source = f"image folder {config.image_folder} ({len(names)} classes: {', '.join(names)})"
        if any(c >= len(names) for c in classes):
            raise DataError(
                f"field 'classes' {tuple(classes)} names classes beyond the {len(names)} "
                f"class folders of {config.image_folder}"
            )
    elif config.dataset == "cifar10":
        splits, source = load_cifar10_with_source(config.data_dir, download=config.download)
        names = list(CIFAR10_CLASSES)
    elif config.dataset == "shapes":
        splits, source, names = load_shapes(seed=config.seed), SHAPES_SOURCE, list(SHAPES_CLASSES)
    else:
        raise DataError(f"unknown dataset {config.dataset!r}; known: cifar10, folder, shapes")
    classes = classes or list(range(len(names)))
    train = select_classes(*splits["train"], classes, config.per_class, config.subset_seed, names)
    test = select_classes(*splits["test"], classes, None, 0, names)
    arrays = {}
    for split, (images, labels), limit in (
        ("train", train, config.limit_train),
        ("test", test, config.limit_test),
    ):
        images, labels = images[:limit], labels[:limit]
        arrays[split] = {
            "image": to_float_nhwc(_resize(images, config.image_size), mean, std),
            "label": labels.astype(np.int32),
        }
    kept = ", ".join(names[c] for c in classes)
    return ImageDataset(
        name=config.dataset,
        train=arrays["train"],
        test=arrays["test"],
        num_classes=len(classes),
        source=f"{source}; classes {kept}; {len(train[1])} training examples",
    )


def export_cifar10(
    out: str | os.PathLike,
    classes: Sequence[int],
    per_class: int | None,
    data_dir: str | None = None,
    seed: int = 0,
) -> dict[str, int]:
    """CIFAR-10's `classes` as out/train (per_class images a class) and out/val (all test)."""
    from .imagefolder import write_split

    splits, _ = load_cifar10_with_source(data_dir)
    names = [CIFAR10_CLASSES[c] for c in classes]
    counts = {}
    for split, folder, limit in (("train", "train", per_class), ("test", "val", None)):
        images, labels = select_classes(*splits[split], classes, limit, seed)
        counts[folder] = write_split(Path(out) / folder, images, labels, names)
    return counts


def main(argv: list[str] | None = None) -> int:
    """`python -m shared_data.fewshot export-cifar10 OUT ...`."""
    parser = argparse.ArgumentParser(
        prog="python -m shared_data.fewshot", description="Write CIFAR-10 classes as image folders."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export-cifar10", help="write CIFAR-10 classes as an image folder")
    p.add_argument("out", help="the folder to write (train/ and val/ inside)")
    p.add_argument("--classes", default="5,6,7,8,9", help="CIFAR-10 class indices")
    p.add_argument("--per-class", dest="per_class", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="which per-class examples are taken")
    p.add_argument("--data-dir", dest="data_dir", help="default: $ROADMAP_DATA_DIR")
    args = parser.parse_args(argv)
    classes = [int(c) for c in args.classes.split(",") if c.strip()]
    counts = export_cifar10(args.out, classes, args.per_class, args.data_dir, args.seed)
    print(f"wrote {counts['train']} training and {counts['val']} validation images to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
