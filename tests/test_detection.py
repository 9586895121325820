"""The detection project: target assignment, box ops against torchvision, decoding, COCO mAP.

The registry-wide tests (parity, every tool) cover the rest; here are the pieces special to
detection, each against hand values or torchvision.ops.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torchvision import ops

from comparisons.registry import get_project
from jaxpath.detection import boxes as jax_boxes
from jaxpath.detection import model as jax_model
from shared_data.detection import (
    STRIDE,
    assign_targets,
    boxes_from_targets,
    coco_map,
    load_detection,
)
from torchpath.detection import boxes as torch_boxes
from torchpath.detection import model as torch_model

CANVAS = 64  # a 16 x 16 output grid
# Two images: two boxes of classes 3 and 7, then one box of class 0 at the corner.
BOXES = np.array([[[10, 12, 30, 40], [40, 0, 64, 20]], [[0, 0, 6, 6], [0, 0, 0, 0]]], np.float32)
LABELS = np.array([[3, 7], [0, -1]], np.int32)


def _targets():
    return assign_targets(BOXES, LABELS, LABELS >= 0, num_classes=10, canvas=CANVAS)


def test_assignment_of_hand_made_boxes():
    t = _targets()
    assert t["heatmap"].shape == (2, 16, 16, 10)
    # Box (10, 12, 30, 40): centre (20, 26) px = (5, 6.5) cells -> cell row 6, col 5.
    assert t["index"][0, 0] == 6 * 16 + 5
    np.testing.assert_allclose(t["offset"][0, 0], [0.0, 0.5])
    np.testing.assert_allclose(t["size"][0, 0], [20, 28])
    assert t["heatmap"][0, 6, 5, 3] == 1.0 and t["heatmap"][0, 6, 5].sum() == 1.0
    # Each object has exactly one peak of 1, on its own class's channel.
    assert np.sum(t["heatmap"] == 1.0) == 3
    assert t["heatmap"][1, 0, 0, 0] == 1.0  # centre (3, 3) px -> cell (0, 0), at the border
    assert 0 < t["heatmap"][0, 6, 6, 3] < 1 and t["heatmap"][0, 6, 5, 7] < 1
    np.testing.assert_array_equal(t["valid"], [[1, 1], [1, 0]])
    assert t["index"][1, 1] == 0 and not t["size"][1, 1].any()  # padding stays zero
    decoded = boxes_from_targets(t["index"], t["offset"], t["size"], canvas=CANVAS)
    np.testing.assert_allclose(decoded[LABELS >= 0], BOXES[LABELS >= 0], atol=1e-5)


def test_assignment_refuses_bad_labels_and_shapes():
    with pytest.raises(ValueError, match=r"valid labels must be in \[0, 5\)"):
        assign_targets(BOXES, LABELS + 5, LABELS >= 0, num_classes=5, canvas=CANVAS)
    with pytest.raises(ValueError, match="boxes must be"):
        assign_targets(BOXES[0], LABELS, LABELS >= 0, num_classes=10, canvas=CANVAS)


def _random_boxes(rng, n, size=100.0):
    corner = rng.uniform(0, size, (n, 2))
    extent = rng.uniform(2, size / 3, (n, 2))
    return np.concatenate([corner, corner + extent], 1).astype(np.float32)


def test_torch_fixed_nms_for_export_keeps_what_batched_nms_keeps():
    rng = np.random.default_rng(7)
    n, k = 3, 60
    boxes = np.stack([_random_boxes(rng, k) for _ in range(n)])
    scores = rng.random((n, k)).astype(np.float32)
    classes = rng.integers(0, 3, (n, k))
    valid = rng.random((n, k)) < 0.8
    tensors = [torch.from_numpy(a) for a in (boxes, scores, classes, valid)]
    ours = torch_boxes.fixed_nms(tensors[0], tensors[1], 0.5, 10, tensors[2], tensors[3])
    assert ours.shape == (n, 10)
    for i in range(n):
        expected = torch_boxes.nms(
            tensors[0][i], tensors[1][i], 0.5, 10, tensors[2][i], tensors[3][i]
        )
        np.testing.assert_array_equal(ours[i].numpy(), expected.numpy())


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.7])
def test_jax_nms_keeps_what_torchvision_keeps(threshold):
    rng = np.random.default_rng(int(threshold * 10))
    for _ in range(5):
        boxes, scores = _random_boxes(rng, 120), rng.random(120).astype(np.float32)
        classes = rng.integers(0, 3, 120).astype(np.int32)
        valid = rng.random(120) < 0.8
        expected = ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold)
        ours = np.asarray(jax_boxes.nms(jnp.asarray(boxes), jnp.asarray(scores), threshold, 120))
        np.testing.assert_array_equal(ours[ours >= 0], expected.numpy())
        assert np.all(ours[len(expected) :] == -1)
        # Class-aware, with boxes left out, cut to 10: batched_nms, and torch's twin.
        idx = np.flatnonzero(valid)
        batched = ops.batched_nms(
            torch.from_numpy(boxes[idx]),
            torch.from_numpy(scores[idx]),
            torch.from_numpy(classes[idx]),
            threshold,
        )
        expected = idx[batched.numpy()][:10]
        args = (threshold, 10, jnp.asarray(classes), jnp.asarray(valid))
        ours = np.asarray(jax_boxes.nms(jnp.asarray(boxes), jnp.asarray(scores), *args))
        np.testing.assert_array_equal(ours[: len(expected)], expected)
        theirs = torch_boxes.nms(
            torch.from_numpy(boxes),
            torch.from_numpy(scores),
            threshold,
            10,
            torch.from_numpy(classes),
            torch.from_numpy(valid),
        )
        np.testing.assert_array_equal(theirs.numpy(), ours)


def test_giou_matches_torchvision_and_hand_values():
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 200), _random_boxes(rng, 200)
    expected = ops.generalized_box_iou_loss(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(jax_boxes.giou_loss(a, b), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(torch_boxes.giou_loss(torch.tensor(a), torch.tensor(b)), expected)
    # Equal boxes: loss 0. Unit squares 1 apart: IoU 0, hull 3 x 1 with 1 empty: loss 1 + 1/3.
    hand = jax_boxes.giou_loss(
        jnp.array([[0.0, 0, 2, 2], [0, 0, 1, 1]]), jnp.array([[0.0, 0, 2, 2], [2, 0, 3, 1]])
    )
    np.testing.assert_allclose(hand, [0.0, 4 / 3], atol=1e-6)


def test_focal_loss_matches_torchvision_on_binary_targets_and_a_hand_value():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (2, 4, 4, 3)).astype(np.float32)
    targets = (rng.random((2, 4, 4, 3)) < 0.1).astype(np.float32)
    expected = ops.sigmoid_focal_loss(
        torch.from_numpy(logits), torch.from_numpy(targets), alpha=-1, gamma=2
    ).sum(dim=(1, 2, 3))
    np.testing.assert_allclose(jax_model.focal_loss(logits, targets), expected, rtol=1e-5)
    ours = torch_model.focal_loss(torch.from_numpy(logits), torch.from_numpy(targets))
    np.testing.assert_allclose(ours, expected, rtol=1e-5)
    # A negative near a centre (target 0.5, p = 0.5): (1 - 0.5)^4 * 0.5^2 * log 2.
    hand = jax_model.focal_loss(jnp.zeros((1, 1, 1, 1)), jnp.full((1, 1, 1, 1), 0.5))
    np.testing.assert_allclose(hand, [0.5**4 * 0.25 * np.log(2)], rtol=1e-6)


def _perfect_maps(t):
    """Head outputs that predict the targets exactly: logits of the heatmap, boxes at centres."""
    heat = np.clip(t["heatmap"], 1e-6, 1 - 1e-6)
    logits = np.log(heat / (1 - heat)).astype(np.float32)
    n, cells = len(heat), heat.shape[1]
    box_maps = np.zeros((n, cells * cells, 4), np.float32)
    for i, k in zip(*np.nonzero(t["valid"]), strict=True):
        row, col = divmod(int(t["index"][i, k]), cells)
        logits[i, row, col, LABELS[i, k]] = 8.0 - k  # distinct peaks: no ties in the order
        box_maps[i, t["index"][i, k], :2] = t["offset"][i, k]
        box_maps[i, t["index"][i, k], 2:] = np.log(t["size"][i, k] / STRIDE)
    return logits, box_maps.reshape(n, cells, cells, 4)


def test_decoding_the_targets_gives_back_the_boxes():
    t = _targets()
    logits, box_maps = _perfect_maps(t)
    options = {"stride": STRIDE, "top_k": 8, "max_detections": 4, "iou_threshold": 0.5}
    ours = np.asarray(jax_boxes.detect(logits, box_maps, **options, score_threshold=0.5))
    theirs = torch_boxes.detect(
        torch.from_numpy(logits), torch.from_numpy(box_maps), **options, score_threshold=0.5
    ).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    for i in range(2):
        found = ours[i][ours[i, :, 4] > 0]
        expected = LABELS[i] >= 0
        assert len(found) == expected.sum()
        order = np.argsort(found[:, 5])
        np.testing.assert_allclose(
            found[order, :4], BOXES[i][expected][np.argsort(LABELS[i][expected])], atol=1e-4
        )
        np.testing.assert_array_equal(found[order, 5], np.sort(LABELS[i][expected]))


def _as_predictions(boxes, labels, shift=0.0, score=0.9):
    out = np.zeros((*labels.shape, 6), np.float32)
    out[..., :4] = boxes + shift
    out[..., 4] = np.where(labels >= 0, score, 0)
    out[..., 5] = labels
    return out


def test_coco_map_of_perfect_shifted_and_wrong_predictions():
    arrays = {"boxes": BOXES, "labels": LABELS, **_targets()}
    perfect = coco_map(_as_predictions(BOXES, LABELS), arrays)
    assert perfect == {"map50": pytest.approx(1.0), "map": pytest.approx(1.0)}
    # Shifted 2 px: box 0's IoU is 18*26 / (2*560 - 468) = 0.72, box 1's 0.70; the 6 px box's
    # 4x4 overlap gives 16/56 < 0.5, so one class of three is lost at IoU 0.5.
    shifted = coco_map(_as_predictions(BOXES, LABELS, shift=2.0), arrays)
    assert shifted["map50"] == pytest.approx(2 / 3, abs=1e-3)
    assert shifted["map"] < shifted["map50"]
    wrong = _as_predictions(BOXES, np.where(LABELS >= 0, (LABELS + 1) % 10, -1))
    assert coco_map(wrong, arrays) == {"map50": 0.0, "map": 0.0}
    assert coco_map(np.zeros((2, 3, 6), np.float32), arrays) == {"map50": 0.0, "map": 0.0}


def test_both_frameworks_compute_the_same_loss_terms_on_real_targets():
    # The registry's parity tests use random targets, where no heatmap cell is exactly 1.
    config = get_project("detection").config("smoke")
    batch = load_detection(dataclasses.replace(config, train_scenes=8)).train
    assert np.sum(batch["heatmap"] == 1.0) == batch["valid"].sum() > 0  # real positives
    rng = np.random.default_rng(2)
    heatmap = rng.normal(-2, 1, batch["heatmap"].shape).astype(np.float32)
    box_maps = rng.normal(0, 1, (*batch["heatmap"].shape[:3], 4)).astype(np.float32)
    ours = jax_model.detection_terms(heatmap, box_maps, batch)
    tensors = {k: torch.from_numpy(v) for k, v in batch.items()}
    theirs = torch_model.detection_terms(
        torch.from_numpy(heatmap), torch.from_numpy(box_maps), tensors
    )
    for key in ours:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(ours["giou"]) > 0) and np.all(np.asarray(ours["focal"]) > 0)


def test_torchvision_reference_trains_and_scores_a_smoke_run(tmp_path):
    """The Faster R-CNN reference end to end: train steps, evaluator, run folder."""
    import json

    from torchpath.detection import reference

    args = ["--variant", "smoke", "--image-size", "64", "--minutes", "1", "--run-id", "t"]
    assert reference.main([*args, "--workdir", str(tmp_path)]) == 0
    run = tmp_path / "detection" / "torchvision" / "t"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2  # 16 smoke scenes in batches of 8, one epoch
    assert 0.0 <= summary["history"][-1]["test_map50"] <= 1.0
    assert (run / "images" / "detections_epoch1.png").is_file()
