"""The COCO reader: a round trip through to_coco, resizing, and a clear error per bad input."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from PIL import Image

from shared_data.coco import read_coco, save_coco
from shared_data.errors import DataError
from shared_data.scenes import make_scenes


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(6, seed=2, source="digits", canvas=64, scale=(0.75, 1.25))


@pytest.fixture
def saved(scenes, tmp_path):
    return save_coco(scenes, tmp_path)


def test_round_trip_reproduces_the_scenes(scenes, saved):
    back = read_coco(saved, canvas=64)
    assert back.class_names == scenes.class_names
    # PNG stores 8-bit grey levels: the images come back to within half a level.
    np.testing.assert_allclose(back.images, scenes.images, atol=0.5 / 255 + 1e-6)
    m = back.boxes.shape[1]  # the most objects any image holds
    assert scenes.valid[:, m:].sum() == 0
    np.testing.assert_array_equal(back.valid, scenes.valid[:, :m])
    np.testing.assert_array_equal(back.labels, scenes.labels[:, :m])
    np.testing.assert_array_equal(back.boxes, scenes.boxes[:, :m])
    np.testing.assert_array_equal(back.semantic, scenes.semantic)
    np.testing.assert_array_equal(back.instance, scenes.instance)


def test_images_are_scaled_and_padded_to_the_canvas(scenes, saved):
    back = read_coco(saved, canvas=32)  # 64x64 images at half size
    assert back.images.shape == (6, 32, 32, 1)
    np.testing.assert_allclose(back.boxes, scenes.boxes[:, : back.boxes.shape[1]] / 2)
    # A wide image: scaled by its width, padded with black below.
    data = json.loads(saved.read_text())
    Image.fromarray(np.full((20, 80), 255, np.uint8)).save(saved.parent / "wide.png")
    data["images"] = [{"id": 1, "file_name": "wide.png", "height": 20, "width": 80}]
    data["annotations"] = [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [40, 0, 40, 20], "iscrowd": 0,
         "segmentation": [[40, 0, 80, 0, 80, 20, 40, 20]]}
    ]  # fmt: skip
    saved.write_text(json.dumps(data))
    wide = read_coco(saved, canvas=40)
    assert wide.images[0, :10].min() == 1.0 and wide.images[0, 10:].max() == 0.0
    np.testing.assert_array_equal(wide.boxes[0, 0], [20, 0, 40, 10])
    assert wide.labels[0, 0] == 2  # category id 3 is the third category
    assert (wide.semantic[0, :10, 20:] == 3).all() and (wide.semantic[0, :, :20] == 0).all()


def _break(saved, change):
    data = json.loads(saved.read_text())
    change(data)
    saved.write_text(json.dumps(data))
    return saved


def _first_annotation(key, value):
    def change(data):
        data["annotations"][0][key] = value

    return change


BAD = {
    "no categories": (lambda d: d.pop("categories"), "missing the list 'categories'"),
    "image without file_name": (
        lambda d: d["images"][0].pop("file_name"),
        r"images\[0\]: missing field 'file_name'",
    ),
    "annotation without bbox": (
        lambda d: d["annotations"][0].pop("bbox"),
        r"annotations of image 1 .*#0: missing field 'bbox'",
    ),
    "unknown category": (
        _first_annotation("category_id", 99),
        r"annotations\[0\]: field 'category_id' 99 is not among",
    ),
    "unknown image": (
        _first_annotation("image_id", 999),
        r"annotations\[0\]: field 'image_id' names image 999",
    ),
    "box outside": (_first_annotation("bbox", [50, 50, 30, 30]), "lies outside its 64x64 image"),
    "box of three numbers": (_first_annotation("bbox", [1, 2, 3]), "wants \\[x, y, width"),
    "short polygon": (_first_annotation("segmentation", [[1, 2, 3, 4]]), "at least three"),
    "RLE of another size": (
        _first_annotation("segmentation", {"size": [10, 10], "counts": "0"}),
        r"wants RLE \{'size': \[64, 64\]",
    ),
    "segmentation of a number": (_first_annotation("segmentation", 7), "polygons or RLE"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_annotations_name_the_file_and_field(saved, case):
    change, message = BAD[case]
    _break(saved, change)
    with pytest.raises(DataError, match=message) as caught:
        read_coco(saved, canvas=64)
    assert str(saved) in str(caught.value)


def test_missing_image_file_and_bad_json(saved):
    (saved.parent / "000000.png").unlink()
    with pytest.raises(DataError, match="000000.png: image file not found"):
        read_coco(saved, canvas=64)
    saved.write_text("{not json")
    with pytest.raises(DataError, match="not a JSON file"):
        read_coco(saved)
    with pytest.raises(DataError, match="annotation file not found"):
        read_coco(saved.parent / "missing.json")


def test_image_size_must_match_the_json(saved):
    data = copy.deepcopy(json.loads(saved.read_text()))
    data["images"][0]["width"] = 65
    saved.write_text(json.dumps(data))
    with pytest.raises(DataError, match="the image is 64x64, but .* say 65x64"):
        read_coco(saved, canvas=64)
