"""A COCO-style dataset (instances JSON + image folder) read into generated scenes' `Scenes`.

So a user's own detection or segmentation data trains the same models as the generated
scenes: every image is scaled to fit a `canvas` x `canvas` square (its longer side) and
padded with black at the bottom and right, boxes are scaled with it, and polygons and RLE
masks are decoded by pycocotools and resized (nearest neighbour) the same way. Category ids
(any integers) map to class ids 0..K-1 in increasing id order. Annotations are pasted in file
order, so a later object's mask covers an earlier one's in the semantic and instance maps;
crowd annotations (`iscrowd: 1`) are skipped, and an annotation without a segmentation gets
its box as its mask. Anything malformed raises a DataError naming the file, the entry and the
field. `save_coco` writes scenes in this format (PNG images and `instances.json`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DataError
from .scenes import Scenes, to_coco

BOX_TOLERANCE = 1.0  # pixels a box may stick out of its image (float rounding in exporters)


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: wants a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: missing the list {key!r} (a COCO instances file has it)")
    return data


def _field(entry: dict, key: str, kind, where: str):
    """entry[key], checked to be of `kind`; a DataError naming `where` and the key otherwise."""
    if not isinstance(entry, dict) or key not in entry:
        raise DataError(f"{where}: missing field {key!r}")
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _box(annotation: dict, height: int, width: int, where: str) -> np.ndarray:
    """The annotation's xywh box as xyxy, checked to lie inside its image."""
    box = _field(annotation, "bbox", list, where)
    if len(box) != 4 or not all(isinstance(v, (int, float)) for v in box):
        raise DataError(f"{where}: field 'bbox' wants [x, y, width, height], got {box!r}")
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise DataError(f"{where}: field 'bbox' has a non-positive width or height: {box!r}")
    tol = BOX_TOLERANCE
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        raise DataError(f"{where}: field 'bbox' {box!r} lies outside its {width}x{height} image")
    return np.array([x, y, x + w, y + h], np.float32)


def _mask(annotation: dict, box: np.ndarray, height: int, width: int, where: str) -> np.ndarray:
    """The annotation's mask [height, width] bool from its polygons or RLE (else its box)."""
    from pycocotools import mask as mask_utils

    segmentation = annotation.get("segmentation")
    if segmentation is None or segmentation == []:
        mask = np.zeros((height, width), bool)
        x0, y0, x1, y1 = np.rint(box).astype(int)
        mask[max(y0, 0) : y1, max(x0, 0) : x1] = True
        return mask
    if isinstance(segmentation, list):  # polygons [[x0, y0, x1, y1, ...], ...]
        for polygon in segmentation:
            if (
                not isinstance(polygon, list)
                or len(polygon) < 6
                or len(polygon) % 2
                or not all(isinstance(v, (int, float)) for v in polygon)
            ):
                raise DataError(
                    f"{where}: field 'segmentation' wants polygons of at least three (x, y) "
                    f"pairs, got {str(polygon)[:60]}"
                )
        rles = mask_utils.frPyObjects(segmentation, height, width)
        return mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    if isinstance(segmentation, dict):  # RLE {"size": [h, w], "counts": str | [int, ...]}
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if size != [height, width] or not isinstance(counts, (str, list)):
            raise DataError(
                f"{where}: field 'segmentation' wants RLE {{'size': [{height}, {width}], "
                f"'counts': ...}}, got size {size!r} and counts of type {type(counts).__name__}"
            )
        if isinstance(counts, list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = {"size": size, "counts": counts.encode("ascii")}
        try:
            mask = mask_utils.decode(rle)
        except Exception as exc:  # noqa: BLE001 - pycocotools raises bare errors on bad counts
            raise DataError(f"{where}: field 'segmentation' holds unreadable RLE ({exc})") from exc
        return mask.astype(bool)
    raise DataError(
        f"{where}: field 'segmentation' wants polygons or RLE, got {type(segmentation).__name__}"
    )


def _resize(array: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    """Resize an (h, w[, c]) array to size = (w, h) with PIL."""
    return np.asarray(Image.fromarray(array).resize(size, resample))


def read_coco(
    annotation_file: str | Path,
    image_dir: str | Path | None = None,
    *,
    canvas: int = 128,
    channels: int | None = None,
) -> Scenes:
    """Read a COCO instances file and its images (`image_dir`, default: the file's folder)."""
    path = Path(annotation_file)
    folder = Path(image_dir) if image_dir is not None else path.parent
    data = _load_json(path)
    categories = {}
    for index, category in enumerate(data["categories"]):
        where = f"{path}: categories[{index}]"
        categories[_field(category, "id", int, where)] = _field(category, "name", str, where)
    class_of = {cid: k for k, cid in enumerate(sorted(categories))}
    class_names = tuple(categories[cid] for cid in sorted(categories))

    images, by_image = [], {}
    for index, image in enumerate(data["images"]):
        where = f"{path}: images[{index}]"
        image_id = _field(image, "id", int, where)
        if image_id in by_image:
            raise DataError(f"{where}: field 'id' repeats image id {image_id}")
        info = {
            "file": folder / _field(image, "file_name", str, where),
            "height": _field(image, "height", int, where),
            "width": _field(image, "width", int, where),
        }
        images.append(image_id)
        by_image[image_id] = (info, [])
    for index, annotation in enumerate(data["annotations"]):
        where = f"{path}: annotations[{index}]"
        image_id = _field(annotation, "image_id", int, where)
        category_id = _field(annotation, "category_id", int, where)
        if image_id not in by_image:
            raise DataError(f"{where}: field 'image_id' names image {image_id}, not in 'images'")
        if category_id not in class_of:
            raise DataError(
                f"{where}: field 'category_id' {category_id} is not among the categories "
                f"{sorted(class_of)}"
            )
        if not annotation.get("iscrowd", 0):
            by_image[image_id][1].append(annotation)

    n = len(images)
    max_objects = max([len(anns) for _, anns in by_image.values()] + [1])
    first = by_image[images[0]][0]["file"] if n else None
    channels = channels or (_channels_of(first) if first is not None else 3)
    out = Scenes(
        images=np.zeros((n, canvas, canvas, channels), np.float32),
        boxes=np.zeros((n, max_objects, 4), np.float32),
        labels=np.full((n, max_objects), -1, np.int32),
        valid=np.zeros((n, max_objects), bool),
        semantic=np.zeros((n, canvas, canvas), np.int32),
        instance=np.zeros((n, canvas, canvas), np.int32),
        class_names=class_names,
    )
    for i, image_id in enumerate(images):
        info, annotations = by_image[image_id]
        height, width = info["height"], info["width"]
        pixels = _read_image(info["file"], height, width, channels)
        scale = canvas / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))  # PIL's (w, h)
        resized = pixels if size == (width, height) else _resize(pixels, size, Image.BILINEAR)
        out.images[i, : size[1], : size[0]] = resized.reshape(size[1], size[0], channels) / 255.0
        for k, annotation in enumerate(annotations):
            where = f"{path}: annotations of image {image_id} ({info['file'].name}), #{k}"
            box = _box(annotation, height, width, where)
            mask = _mask(annotation, box, height, width, where)
            if size != (width, height):
                mask = _resize(mask.astype(np.uint8), size, Image.NEAREST).astype(bool)
            label = class_of[annotation["category_id"]]
            out.boxes[i, k] = np.clip(box * scale, 0, canvas)
            out.labels[i, k] = label
            out.valid[i, k] = True
            out.semantic[i, : size[1], : size[0]][mask] = label + 1
            out.instance[i, : size[1], : size[0]][mask] = k + 1
    return out


def _channels_of(path: Path) -> int:
    try:
        with Image.open(path) as image:
            return 1 if image.mode in ("1", "L", "I", "I;16", "F") else 3
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from exc


def _read_image(path: Path, height: int, width: int, channels: int) -> np.ndarray:
    """The image as uint8 [height, width(, 3)], checked against the size the JSON gives."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found (named by the annotation file)") from None
    except OSError as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from exc
    if pixels.shape[:2] != (height, width):
        raise DataError(
            f"{path}: the image is {pixels.shape[1]}x{pixels.shape[0]}, but the annotation "
            f"file's 'width' and 'height' say {width}x{height}"
        )
    return pixels


def save_coco(scenes: Scenes, folder: str | Path, name: str = "instances.json") -> Path:
    """Write the scenes as PNG images and a COCO instances file in `folder`; returns its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = to_coco(scenes)
    for image, entry in zip(scenes.images, data["images"], strict=True):
        pixels = np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(
            folder / entry["file_name"]
        )
    path = folder / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path
