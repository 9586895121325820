"""Generated scenes for detection and segmentation: real objects pasted on larger canvases.

Each scene places 1..M objects (MNIST digits, the embedded scikit-learn digits, or CIFAR-10
images) at random positions and scales on a black canvas, and records what a detector and a
segmenter learn from: the tight box and class of every object and per-pixel semantic and
instance masks. Everything is a pure function of the seed, so both frameworks train on the
same scenes, and held-out scenes (`split="test"`) draw their objects from the source's test
split, so evaluation never sees a training digit.

An object is a patch (h, w, C) and an opacity (h, w) in [0, 1]: a digit is white ink whose
opacity is its grey level; a CIFAR-10 image is an opaque square. Later objects are drawn over
earlier ones ("over" compositing), and their mask pixels replace the earlier objects' in the
semantic and instance maps. An object's mask is its pixels with opacity above
`MASK_THRESHOLD`; its box is the tight box of that mask as placed (before occlusion), in
pixels, xyxy with the right/bottom edges exclusive (COCO's convention: width = x1 - x0).
`max_overlap` bounds the IoU of a new box with every box already placed; a placement that
fails `PLACEMENT_TRIES` times is dropped, so an image may hold fewer objects than drawn.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

from .cifar10 import CIFAR10_CLASSES, load_cifar10
from .digits import load_digits_as_mnist
from .errors import DataError
from .images import IMAGES_DIR
from .mnist import load_mnist

SOURCES = ("mnist", "digits", "cifar10")
SPLITS = ("train", "test")
DIGIT_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
MASK_THRESHOLD = 0.5  # opacity above which a pixel belongs to the object (digit strokes)
PLACEMENT_TRIES = 20
_SCENE_STREAM = 11  # seed-key tag: never shares random numbers with batch shuffling


@dataclasses.dataclass(frozen=True)
class Scenes:
    """Scenes with their boxes, labels and masks; boxes and labels padded to M per image."""

    images: np.ndarray  # (N, H, W, C) float32 in [0, 1]
    boxes: np.ndarray  # (N, M, 4) float32 xyxy in pixels, 0 where not valid
    labels: np.ndarray  # (N, M) int32 class ids 0..K-1, -1 where not valid
    valid: np.ndarray  # (N, M) bool, True for real objects
    semantic: np.ndarray  # (N, H, W) int32: 0 background, class + 1 on object pixels
    instance: np.ndarray  # (N, H, W) int32: 0 background, k + 1 on object k's visible pixels
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        """Return K, the number of object classes (background not counted)."""
        return len(self.class_names)

    def subset(self, index) -> Scenes:
        """Return the scenes picked by `index` (a slice, an index array or a boolean mask)."""
        return dataclasses.replace(
            self,
            images=self.images[index],
            boxes=self.boxes[index],
            labels=self.labels[index],
            valid=self.valid[index],
            semantic=self.semantic[index],
            instance=self.instance[index],
        )


def _load_objects(
    source: str, split: str, data_dir
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Return the source split as (float32 [N, h, w, C] in [0, 1], int labels [N], names)."""
    if source == "mnist":
        images, labels = load_mnist(data_dir)[split]
        return images[..., None].astype(np.float32) / 255.0, labels, DIGIT_CLASSES
    if source == "digits":
        images, labels = load_digits_as_mnist()[split]
        return images[..., None].astype(np.float32) / 255.0, labels, DIGIT_CLASSES
    images, labels = load_cifar10(data_dir)[split]
    return images.astype(np.float32) / 255.0, labels, CIFAR10_CLASSES


def _resize(array: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a float (h, w) array to (size, size) with PIL (deterministic)."""
    image = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32), mode="F")
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


def _object(patch: np.ndarray, source: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Return one object resized to size x size as (colour (s, s, C), opacity (s, s))."""
    colour = np.stack([_resize(patch[..., c], size) for c in range(patch.shape[-1])], -1)
    colour = np.clip(colour, 0.0, 1.0)
    if source == "cifar10":
        return colour, np.ones((size, size), np.float32)
    # A digit is white ink: its grey level is how much of the pixel the ink covers.
    return np.ones_like(colour), colour[..., 0]


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each row of `others` (k, 4)."""
    x0 = np.maximum(box[0], others[:, 0])
    y0 = np.maximum(box[1], others[:, 1])
    x1 = np.minimum(box[2], others[:, 2])
    y1 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / (area + areas - inter)


def _check_args(n, split, source, canvas, objects, scale, max_overlap) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    low, high = objects
    if not 1 <= low <= high:
        raise ValueError(f"objects must be (low, high) with 1 <= low <= high, got {objects}")
    if not 0 < scale[0] <= scale[1]:
        raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
    if not 0.0 <= max_overlap <= 1.0:
        raise ValueError(f"max_overlap must be in [0, 1], got {max_overlap}")


def make_scenes(
    n: int,
    *,
    seed: int,
    split: str = "train",
    source: str = "mnist",
    canvas: int = 128,
    objects: tuple[int, int] = (1, 4),
    scale: tuple[float, float] = (0.75, 2.0),
    max_overlap: float = 0.3,
    data_dir: str | Path | None = None,
) -> Scenes:
    """Generate `n` scenes of `canvas` x `canvas` pixels from the source's `split`, from `seed`."""
    _check_args(n, split, source, canvas, objects, scale, max_overlap)
    pool, pool_labels, class_names = _load_objects(source, split, data_dir)
    if len(pool) == 0:
        raise DataError(f"the {source} {split} split holds no images to place")
    side, channels = pool.shape[1], pool.shape[-1]
    largest = int(round(side * scale[1]))
    if canvas < largest:
        raise ValueError(
            f"canvas {canvas} is smaller than the largest {source} object ({largest} pixels "
            f"at scale {scale[1]}); use a larger canvas or a smaller scale"
        )
    max_objects = objects[1]
    images = np.zeros((n, canvas, canvas, channels), np.float32)
    boxes = np.zeros((n, max_objects, 4), np.float32)
    labels = np.full((n, max_objects), -1, np.int32)
    semantic = np.zeros((n, canvas, canvas), np.int32)
    instance = np.zeros((n, canvas, canvas), np.int32)

    split_tag = SPLITS.index(split)
    rng = np.random.default_rng([seed, split_tag, SOURCES.index(source), _SCENE_STREAM])
    for i in range(n):
        placed = 0
        for _ in range(rng.integers(objects[0], objects[1] + 1)):
            index = int(rng.integers(len(pool)))
            size = int(round(side * rng.uniform(*scale)))
            colour, opacity = _object(pool[index], source, size)
            mask = opacity > MASK_THRESHOLD
            if not mask.any():
                continue  # a blank source image: nothing to detect
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            # The tight box inside the patch, then where the patch lands on the canvas.
            tight = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)
            for _ in range(PLACEMENT_TRIES):
                y, x = rng.integers(0, canvas - size + 1, size=2)
                box = tight + np.array([x, y, x, y], np.float32)
                if placed == 0 or _iou(box, boxes[i, :placed]).max() <= max_overlap:
                    break
            else:
                continue
            region = (slice(y, y + size), slice(x, x + size))
            alpha = opacity[..., None]
            images[i][region] = images[i][region] * (1.0 - alpha) + colour * alpha
            semantic[i][region][mask] = int(pool_labels[index]) + 1
            instance[i][region][mask] = placed + 1
            boxes[i, placed] = box
            labels[i, placed] = int(pool_labels[index])
            placed += 1
    return Scenes(
        images=images,
        boxes=boxes,
        labels=labels,
        valid=labels >= 0,
        semantic=semantic,
        instance=instance,
        class_names=class_names,
    )


def to_coco(scenes: Scenes) -> dict:
    """Return the scenes' annotations as a COCO instances dict (RLE masks of visible pixels)."""
    from pycocotools import mask as mask_utils

    n, height, width = scenes.semantic.shape
    images, annotations = [], []
    for i in range(n):
        images.append({"id": i + 1, "file_name": f"{i:06d}.png", "height": height, "width": width})
        for k in np.flatnonzero(scenes.valid[i]):
            x0, y0, x1, y1 = (float(v) for v in scenes.boxes[i, k])
            visible = np.asfortranarray((scenes.instance[i] == k + 1).astype(np.uint8))
            rle = mask_utils.encode(visible)
            rle["counts"] = rle["counts"].decode("ascii")  # bytes are not JSON
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": int(scenes.labels[i, k]) + 1,  # COCO ids start at 1
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "segmentation": rle,
                    "area": float(mask_utils.area(rle)),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(scenes.class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


# A colour per class id of a semantic map: black background, then ten distinct hues.
PALETTE = (
    np.array(
        [
            (0, 0, 0),
            (230, 25, 75),
            (60, 180, 75),
            (255, 225, 25),
            (0, 130, 200),
            (245, 130, 48),
            (145, 30, 180),
            (70, 240, 240),
            (240, 50, 230),
            (210, 245, 60),
            (250, 190, 212),
        ],
        np.float32,
    )
    / 255.0
)
MASKS_FILE = "masks_epoch{epoch}.png"


def overlay(images: np.ndarray, semantic: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """RGB [N, H, W, 3] in [0, 1]: the images with each class's pixels tinted its colour."""
    rgb = np.broadcast_to(images, (*images.shape[:3], 3)) if images.shape[-1] == 1 else images
    colours = PALETTE[np.clip(semantic, 0, len(PALETTE) - 1)]
    tint = (semantic > 0)[..., None] * alpha
    return rgb * (1.0 - tint) + colours * tint


def save_mask_pictures(
    workdir: str | Path, epoch: int, images: np.ndarray, predicted: np.ndarray, truth: np.ndarray
) -> Path:
    """Write `images/masks_epoch<N>.png`: a column per scene, image over predicted over true."""
    rows = [
        overlay(images, np.zeros_like(truth)),
        overlay(images, predicted),
        overlay(images, truth),
    ]
    n, height, width = truth.shape
    pad = 2
    out = np.ones((3 * (height + pad) + pad, n * (width + pad) + pad, 3), np.float32)
    for r, row in enumerate(rows):
        for i in range(n):
            y, x = pad + r * (height + pad), pad + i * (width + pad)
            out[y : y + height, x : x + width] = row[i]
    path = Path(workdir) / IMAGES_DIR / MASKS_FILE.format(epoch=epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)).save(tmp, format="PNG")
    tmp.replace(path)  # a reader never sees half a file
    return path
