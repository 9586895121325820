"""The scene generator: determinism, boxes and masks that agree, bounded overlap, COCO export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from shared_data.scenes import MASK_THRESHOLD, _iou, make_scenes, to_coco


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(24, seed=3, source="digits", canvas=96, objects=(1, 4), scale=(0.75, 1.5))


def test_shapes_and_dtypes(scenes):
    assert scenes.images.shape == (24, 96, 96, 1) and scenes.images.dtype == np.float32
    assert scenes.boxes.shape == (24, 4, 4) and scenes.boxes.dtype == np.float32
    assert scenes.labels.shape == (24, 4) and scenes.labels.dtype == np.int32
    assert scenes.semantic.shape == scenes.instance.shape == (24, 96, 96)
    assert scenes.semantic.dtype == scenes.instance.dtype == np.int32
    assert 0.0 <= scenes.images.min() and scenes.images.max() <= 1.0
    assert scenes.class_names == tuple("0123456789")
    # Padding: valid objects first, then zero boxes and label -1.
    np.testing.assert_array_equal(scenes.valid, scenes.labels >= 0)
    assert (np.diff(scenes.valid.astype(int), axis=1) <= 0).all()
    assert (scenes.boxes[~scenes.valid] == 0).all()
    assert scenes.valid[:, 0].all() and scenes.valid.sum() > 24


def test_deterministic_from_the_seed():
    kwargs = dict(source="digits", canvas=64, scale=(0.75, 1.25))
    a, b = make_scenes(6, seed=7, **kwargs), make_scenes(6, seed=7, **kwargs)
    for field in ("images", "boxes", "labels", "semantic", "instance"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = make_scenes(6, seed=8, **kwargs)
    assert not np.array_equal(a.images, c.images)
    held_out = make_scenes(6, seed=7, split="test", **kwargs)
    assert not np.array_equal(a.images, held_out.images)


def test_masks_agree_with_boxes_labels_and_pixels(scenes):
    for i in range(len(scenes)):
        for k in np.flatnonzero(scenes.valid[i]):
            visible = scenes.instance[i] == k + 1
            assert visible.any()
            # Every visible pixel carries the object's class and lies inside its box.
            assert (scenes.semantic[i][visible] == scenes.labels[i, k] + 1).all()
            ys, xs = np.nonzero(visible)
            x0, y0, x1, y1 = scenes.boxes[i, k]
            assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
            # Unoccluded objects: the box is exactly the tight box of the mask.
            if not (scenes.instance[i][int(y0) : int(y1), int(x0) : int(x1)] > k + 1).any():
                assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
        # Object pixels are ink above the threshold (ink drawn over ink only adds to it).
        assert (scenes.images[i, ..., 0][scenes.instance[i] > 0] > MASK_THRESHOLD).all()
        np.testing.assert_array_equal(scenes.semantic[i] > 0, scenes.instance[i] > 0)


def test_a_lone_object_is_its_pixels_above_the_threshold():
    # With overlaps, two faint edges can add up above the threshold outside every mask.
    scenes = make_scenes(8, seed=1, source="digits", canvas=64, objects=(1, 1))
    np.testing.assert_array_equal(scenes.instance > 0, scenes.images[..., 0] > MASK_THRESHOLD)


def test_overlap_is_bounded():
    scenes = make_scenes(30, seed=0, source="digits", canvas=64, objects=(4, 4), max_overlap=0.1)
    for boxes in (scenes.boxes[i][scenes.valid[i]] for i in range(len(scenes))):
        for k in range(1, len(boxes)):
            assert _iou(boxes[k], boxes[:k]).max() <= 0.1


def test_to_coco_is_a_valid_coco_dataset(scenes):
    coco = COCO()
    coco.dataset = to_coco(scenes)
    coco.createIndex()
    assert len(coco.getImgIds()) == 24
    assert len(coco.getAnnIds()) == int(scenes.valid.sum())
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list("0123456789")
    annotation = coco.loadAnns(coco.getAnnIds(imgIds=[1]))[0]
    np.testing.assert_array_equal(coco.annToMask(annotation), scenes.instance[0] == 1)
    assert annotation["category_id"] == scenes.labels[0, 0] + 1
    x, y, w, h = annotation["bbox"]
    np.testing.assert_allclose([x, y, x + w, y + h], scenes.boxes[0, 0])
    assert annotation["area"] == mask_utils.area(annotation["segmentation"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(split="val"), "split"),
        (dict(source="svhn"), "source"),
        (dict(objects=(0, 2)), "objects"),
        (dict(scale=(2.0, 1.0)), "scale"),
        (dict(max_overlap=1.5), "max_overlap"),
        (dict(canvas=40, scale=(1.0, 2.0)), "canvas 40"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_scenes(2, seed=0, **{"source": "digits", **kwargs})


# DESIGN.md: the project's real datasets sit at ../shared/data beside the checkout.
_BESIDE_CHECKOUT = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.slow
@pytest.mark.parametrize("source, channels", [("mnist", 1), ("cifar10", 3)])
def test_real_sources(source, channels):
    if not (_BESIDE_CHECKOUT / source).is_dir():
        pytest.skip(f"real {source} not found beside the checkout")
    scenes = make_scenes(8, seed=0, source=source, split="test", data_dir=_BESIDE_CHECKOUT)
    assert scenes.images.shape == (8, 128, 128, channels)
    assert scenes.valid[:, 0].all()
