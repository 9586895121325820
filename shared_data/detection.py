"""Detection data for both frameworks: CenterNet targets, the scenes as batches, COCO mAP.

Framework-neutral (numpy and pycocotools), so the JAX and torch detectors train on the same
dense targets and are scored by the same evaluator.

Targets (`assign_targets`), CenterNet's (Zhou et al. 2019, "Objects as Points") at output
stride `STRIDE`: every object puts a Gaussian peak of height exactly 1 on its class's heatmap
channel at the cell holding its box centre (overlapping peaks of one class keep the maximum);
its box is regressed at that cell only, as the centre's sub-cell offset and the box's width
and height in pixels, gathered by the flat cell index. Per image (H, W the output grid):

| field | shape | dtype | meaning |
| --- | --- | --- | --- |
| heatmap | (H, W, K) | float32 | Gaussian peaks, 1 at the centres |
| index | (M,) | int32 | centre cell `row * W + col` (0 where not valid) |
| offset | (M, 2) | float32 | centre / stride - cell, in [0, 1) (x, y) |
| size | (M, 2) | float32 | box width and height in pixels |
| valid | (M,) | float32 | 1 for real objects, 0 for padding |

Predictions (both frameworks' `predict`): float32 (N, D, 6) rows `x0, y0, x1, y1, score,
class`, best first, padded with score 0 and class -1. `coco_map` scores them with
pycocotools' COCOeval against the split's `boxes` and `labels`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
from pathlib import Path

import numpy as np

STRIDE = 4  # input pixels per output cell
MIN_OVERLAP = 0.7  # CenterNet: a box shifted within the Gaussian's radius keeps this IoU
TARGET_FIELDS = ("heatmap", "index", "offset", "size", "valid")


def gaussian_radius(height: float, width: float, min_overlap: float = MIN_OVERLAP) -> float:
    """CenterNet's radius (in the units of height/width) within which corners keep `min_overlap`.

    The smallest root of the three cases of CornerNet's quadratic (one corner inside, both
    inside, both outside the true box), as CenterNet's reference code computes it.
    """
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def draw_gaussian(heatmap: np.ndarray, col: int, row: int, radius: int) -> None:
    """Max a Gaussian of `radius` cells (sigma (2r+1)/6, peak 1) into (H, W) at (row, col)."""
    sigma = (2 * radius + 1) / 6
    steps = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(steps[:, None] ** 2 + steps[None, :] ** 2) / (2 * sigma**2))
    height, width = heatmap.shape
    top, bottom = min(row, radius), min(height - row, radius + 1)
    left, right = min(col, radius), min(width - col, radius + 1)
    window = heatmap[row - top : row + bottom, col - left : col + right]
    patch = kernel[radius - top : radius + bottom, radius - left : radius + right]
    np.maximum(window, patch.astype(np.float32), out=window)


def assign_targets(
    boxes: np.ndarray,
    labels: np.ndarray,
    valid: np.ndarray,
    *,
    num_classes: int,
    canvas: int,
    stride: int = STRIDE,
) -> dict[str, np.ndarray]:
    """CenterNet's dense targets (the module docstring's table) of (N, M) padded boxes."""
    boxes = np.asarray(boxes, np.float32)
    labels, valid = np.asarray(labels), np.asarray(valid, bool)
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:2]:
        raise ValueError(
            f"boxes must be (N, M, 4) and labels (N, M), got {boxes.shape} and {labels.shape}"
        )
    if canvas % stride:
        raise ValueError(f"canvas {canvas} is not a multiple of the stride {stride}")
    if np.any(labels[valid] < 0) or np.any(labels[valid] >= num_classes):
        raise ValueError(f"valid labels must be in [0, {num_classes}), got {labels[valid]}")
    n, m = labels.shape
    cells = canvas // stride
    heatmap = np.zeros((n, cells, cells, num_classes), np.float32)
    index = np.zeros((n, m), np.int32)
    offset = np.zeros((n, m, 2), np.float32)
    size = np.zeros((n, m, 2), np.float32)
    for i, k in zip(*np.nonzero(valid), strict=True):
        x0, y0, x1, y1 = boxes[i, k]
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2], np.float32) / np.float32(stride)
        col, row = np.clip(np.floor(centre).astype(int), 0, cells - 1)
        width, height = x1 - x0, y1 - y0
        radius = max(0, int(gaussian_radius(height / stride, width / stride)))
        draw_gaussian(heatmap[i, :, :, labels[i, k]], col, row, radius)
        index[i, k] = row * cells + col
        offset[i, k] = centre - np.array([col, row], np.float32)
        size[i, k] = (width, height)
    return {
        "heatmap": heatmap,
        "index": index,
        "offset": offset,
        "size": size,
        "valid": valid.astype(np.float32),
    }


def boxes_from_targets(
    index: np.ndarray, offset: np.ndarray, size: np.ndarray, *, canvas: int, stride: int = STRIDE
) -> np.ndarray:
    """The xyxy pixel boxes (..., 4) that `index`, `offset` and `size` describe (the inverse)."""
    cells = canvas // stride
    cell = np.stack([index % cells, index // cells], -1).astype(np.float32)
    centre = (cell + offset) * np.float32(stride)
    return np.concatenate([centre - size / 2, centre + size / 2], -1)


# ----------------------------------------------------------------------------- the data


@dataclasses.dataclass(frozen=True)
class DetectionDataset:
    """Generated scenes with CenterNet targets: `.train` / `.test` dicts of arrays."""

    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """K, the number of object classes."""
        return len(self.class_names)


def scene_arrays(scenes, stride: int = STRIDE) -> dict[str, np.ndarray]:
    """One split's batch fields: the images, the targets, and the boxes the evaluator reads."""
    canvas = scenes.images.shape[1]
    targets = assign_targets(
        scenes.boxes,
        scenes.labels,
        scenes.valid,
        num_classes=len(scenes.class_names),
        canvas=canvas,
        stride=stride,
    )
    return {
        "image": np.ascontiguousarray(scenes.images, np.float32),
        **targets,
        "boxes": scenes.boxes.astype(np.float32),
        "labels": scenes.labels.astype(np.int32),
    }


SCENES_PER_CHUNK = 500  # scenes generated at once: their masks (unused here) stay small


def generate_split(config, split: str, n: int) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """`n` scenes of `split` as batch fields, generated in chunks (chunk c from seed + c).

    The scene generator also draws semantic and instance masks, 64 KiB a scene at 128x128,
    that detection never reads: in chunks, only the chunk's masks are alive at once.
    """
    from shared_data.scenes import make_scenes

    options = {
        "split": split,
        "source": config.source,
        "canvas": config.canvas,
        "objects": (config.min_objects, config.max_objects),
        "scale": (config.min_scale, config.max_scale),
        "max_overlap": config.max_overlap,
        "data_dir": config.data_dir,
    }
    chunks, names = [], ()
    for c, start in enumerate(range(0, n, SCENES_PER_CHUNK)):
        size = min(SCENES_PER_CHUNK, n - start)
        scenes = make_scenes(size, seed=config.seed * 100_003 + c, **options)
        chunks.append(scene_arrays(scenes))
        names = scenes.class_names
    return {k: np.concatenate([chunk[k] for chunk in chunks]) for k in chunks[0]}, names


def load_detection(config) -> DetectionDataset:
    """The config's generated train and held-out test scenes, with their targets."""
    n_train = min(config.train_scenes, config.limit_train or config.train_scenes)
    n_test = min(config.test_scenes, config.limit_test or config.test_scenes)
    train, names = generate_split(config, "train", n_train)
    test, _ = generate_split(config, "test", n_test)
    return DetectionDataset(train, test, names)


# ----------------------------------------------------------------------------- evaluation


def coco_ground_truth(
    boxes: np.ndarray, labels: np.ndarray, num_classes: int, canvas: int = 0
) -> dict:
    """A COCO instances dict of (N, M, 4) xyxy boxes and (N, M) labels (-1: padding)."""
    labels = np.asarray(labels)
    images = [
        {"id": i + 1, "height": canvas, "width": canvas, "file_name": f"{i:06d}.png"}
        for i in range(len(labels))
    ]
    annotations = []
    for i, k in zip(*np.nonzero(labels >= 0), strict=True):
        x0, y0, x1, y1 = (float(v) for v in boxes[i, k])
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": int(i) + 1,
                "category_id": int(labels[i, k]) + 1,  # COCO ids start at 1
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "iscrowd": 0,
            }
        )
    categories = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_detections(predictions: np.ndarray) -> np.ndarray:
    """pycocotools' (K, 7) result rows `image_id, x, y, w, h, score, category` of (N, D, 6)."""
    predictions = np.asarray(predictions, np.float64)
    if predictions.ndim != 3 or predictions.shape[-1] != 6:
        raise ValueError(f"predictions must be (N, D, 6), got shape {predictions.shape}")
    image, slot = np.nonzero((predictions[..., 4] > 0) & (predictions[..., 5] >= 0))
    rows = predictions[image, slot]
    xywh = np.concatenate([rows[:, :2], rows[:, 2:4] - rows[:, :2]], 1)
    return np.column_stack([image + 1, xywh, rows[:, 4], rows[:, 5] + 1])


def coco_map(predictions: np.ndarray, arrays) -> dict[str, float]:
    """COCO box mAP@[.5:.95] ("map") and mAP@0.5 ("map50") of (N, D, 6) predictions."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    boxes, labels = np.asarray(arrays["boxes"]), np.asarray(arrays["labels"])
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} images")
    detections = coco_detections(predictions)
    if not len(detections) or not np.any(labels >= 0):
        return {"map50": 0.0, "map": 0.0}
    num_classes = int(np.asarray(arrays["heatmap"]).shape[-1])
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO()
        truth.dataset = coco_ground_truth(boxes, labels, num_classes)
        truth.createIndex()
        scores = COCOeval(truth, truth.loadRes(detections), "bbox")
        scores.evaluate()
        scores.accumulate()
        scores.summarize()
    # stats[0] averages IoU 0.5:0.95 (-1 where no class has a box); stats[1] is IoU 0.5.
    return {"map50": max(float(scores.stats[1]), 0.0), "map": max(float(scores.stats[0]), 0.0)}


# ----------------------------------------------------------------------------- pictures

PICTURE_FILE = "detections_epoch{epoch}.png"
_COLOURS = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
)  # fmt: skip


def draw_detections(
    image: np.ndarray,
    detections: np.ndarray,
    class_names: tuple[str, ...],
    min_score: float = 0.3,
    scale: int = 2,
):
    """A PIL picture of one (H, W, C) image in [0, 1] with its boxes, classes and scores."""
    from PIL import Image, ImageDraw

    pixels = np.clip(np.asarray(image, np.float32), 0, 1)
    pixels = np.repeat(pixels, 3, -1) if pixels.shape[-1] == 1 else pixels
    picture = Image.fromarray(np.rint(pixels * 255).astype(np.uint8), "RGB")
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    for x0, y0, x1, y1, score, cls in np.asarray(detections, np.float64):
        if score < min_score or cls < 0:
            continue
        colour = _COLOURS[int(cls) % len(_COLOURS)]
        draw.rectangle([x0 * scale, y0 * scale, x1 * scale, y1 * scale], outline=colour, width=2)
        draw.text((x0 * scale + 2, y0 * scale + 1), f"{class_names[int(cls)]} {score:.2f}", colour)
    return picture


def save_detection_pictures(
    workdir: str | Path,
    epoch: int,
    images: np.ndarray,
    detections: np.ndarray,
    class_names: tuple[str, ...],
) -> Path:
    """Write the epoch's images with their detections, side by side, into the run's images/."""
    from PIL import Image

    from shared_data.images import IMAGES_DIR

    pairs = zip(images, detections, strict=True)
    tiles = [draw_detections(image, found, class_names) for image, found in pairs]
    sheet = Image.new("RGB", (sum(t.width + 4 for t in tiles) + 4, tiles[0].height + 8))
    x = 4
    for tile in tiles:
        sheet.paste(tile, (x, 4))
        x += tile.width + 4
    path = Path(workdir) / IMAGES_DIR / PICTURE_FILE.format(epoch=epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    sheet.save(tmp, format="PNG")
    tmp.replace(path)  # a reader never sees half a file
    return path
