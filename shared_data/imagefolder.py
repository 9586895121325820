"""Image folders (`root/<class>/*.png|jpg`), read as torchvision.datasets.ImageFolder reads them.

A dataset of your own is a folder per split, one subfolder per class:

    DIR/train/dog/0001.png   DIR/train/frog/...   DIR/val/dog/...   DIR/val/frog/...

Classes are the subfolder names in sorted order (label 0 is the first), files are taken in
sorted order within a class, and files without an image extension are skipped: all as
`torchvision.datasets.ImageFolder` does. Each image is converted to RGB and resized the way
torchvision's evaluation presets do on PIL images, `Resize(size)` then `CenterCrop(size)`:
the shorter side becomes `size` (bilinear, antialiased by PIL), then the centre square is
kept. tests/test_transfer.py checks the pixels against torchvision's transforms.

`python -m shared_data.fewshot export-cifar10 OUT --classes 5,6,7,8,9 --per-class 100`
writes such a folder from CIFAR-10 (PNG, lossless), the few-shot set of the transfer demo.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import DataError

# torchvision.datasets.folder.IMG_EXTENSIONS, less the formats PIL may lack plugins for
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
EVAL_SPLITS = ("val", "test")  # the held-out split's folder name, in this order of preference


def split_dir(root: str | os.PathLike, split: str) -> Path:
    """The folder of `split` ("train", or "eval": val/ or else test/) under `root`."""
    if root is None:
        raise DataError("dataset=folder needs --set image_folder=DIR (DIR/train/<class>/*.png)")
    root = Path(os.path.expanduser(root))
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; pass --set image_folder=DIR")
    names = ("train",) if split == "train" else EVAL_SPLITS
    for name in names:
        if (root / name).is_dir():
            return root / name
    wanted = " or ".join(f"{root / n}/" for n in names)
    raise DataError(
        f"image folder {root} has no {wanted}; lay it out as {root}/train/<class>/*.png and "
        f"{root}/val/<class>/*.png (torchvision's ImageFolder layout, one folder per split)"
    )


def class_names(folder: str | os.PathLike) -> list[str]:
    """The class subfolders of one split, sorted (ImageFolder's find_classes)."""
    folder = Path(folder)
    names = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not names:
        raise DataError(
            f"{folder} holds no class folders; put each class's images in {folder}/<class>/"
        )
    return names


def image_files(folder: Path) -> list[Path]:
    """The image files of one class folder, sorted; the others are skipped, as ImageFolder does."""
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise DataError(
            f"class folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
            "remove it or add its images"
        )
    return files


def resize_center_crop(image, size: int) -> np.ndarray:
    """A PIL image as uint8 HWC RGB, resized like torchvision's Resize(size) + CenterCrop(size)."""
    from PIL import Image

    image = image.convert("RGB")
    w, h = image.size
    if (w, h) != (size, size):
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = size, int(size * long / short)  # torchvision's rounding
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        if (new_w, new_h) != (w, h):
            image = image.resize((new_w, new_h), Image.BILINEAR)
        w, h = image.size
        top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
        image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.uint8)


def read_split(
    folder: str | os.PathLike, size: int, classes: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 [N, size, size, 3] images, int64 labels, class names) of one split folder.

    `classes` fixes the class list (the training split's, so that labels agree); a class
    folder the split lacks, or one it has in addition, is an error naming both.
    """
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    found = class_names(folder)
    if classes is not None and list(classes) != found:
        missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        raise DataError(
            f"{folder} has different class folders from the training split: "
            f"missing {missing}, not in train {extra}; every split needs the same classes"
        )
    images, labels = [], []
    for label, name in enumerate(found):
        for path in image_files(folder / name):
            try:
                with Image.open(path) as image:
                    images.append(resize_center_crop(image, size))
            except (UnidentifiedImageError, OSError) as err:
                raise DataError(
                    f"{path} is not a readable image ({err}); replace or remove the file"
                ) from err
            labels.append(label)
    return np.stack(images), np.asarray(labels, np.int64), found


def write_split(
    folder: str | os.PathLike,
    images: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
) -> int:
    """Write uint8 NHWC `images` as folder/<names[label]>/<index>.png; returns the count."""
    from PIL import Image

    folder = Path(folder)
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = folder / names[int(label)] / f"{index:05d}.png"
        tmp = path.with_suffix(".png.tmp")
        Image.fromarray(np.asarray(image, np.uint8), "RGB").save(tmp, format="PNG")
        os.replace(tmp, path)  # a crash never leaves a truncated image behind
    return len(images)
