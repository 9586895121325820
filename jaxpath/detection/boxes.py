"""Box geometry of the detector in JAX: decoding, GIoU and a jit-compatible NMS.

Read beside torchpath/detection/boxes.py, where torchvision.ops supplies GIoU and NMS; here
they are written out, and tests/test_detection.py checks them against torchvision. Maps are
NHWC: heatmap logits (N, H, W, K) and box maps (N, H, W, 4) holding, per cell, the centre's
sub-cell offset (x, y) and the log of the box's width and height in cells.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

EPS = 1e-7  # torchvision.ops' epsilon in IoU and GIoU denominators
MAX_LOG_SIZE = 6.0  # exp(6) cells: far past any canvas; keeps exp finite early in training


def decode_boxes(box_maps: jax.Array, cell: jax.Array, stride: int) -> jax.Array:
    """xyxy pixel boxes (N, k, 4) the box maps predict at flat cells `cell` (N, k)."""
    n, _, width, _ = box_maps.shape
    raw = jnp.take_along_axis(box_maps.reshape(n, -1, 4), cell[..., None], axis=1)
    xy = jnp.stack([cell % width, cell // width], -1).astype(raw.dtype)
    centre = (xy + raw[..., :2]) * stride
    size = jnp.exp(jnp.minimum(raw[..., 2:], MAX_LOG_SIZE)) * stride
    return jnp.concatenate([centre - size / 2, centre + size / 2], -1)


def target_boxes(batch, width: int, stride: int) -> jax.Array:
    """The xyxy pixel boxes (N, M, 4) of the batch's targets (index, offset, size)."""
    cell = batch["index"]
    xy = jnp.stack([cell % width, cell // width], -1).astype(jnp.float32)
    centre = (xy + batch["offset"]) * stride
    return jnp.concatenate([centre - batch["size"] / 2, centre + batch["size"] / 2], -1)


def area(boxes: jax.Array) -> jax.Array:
    """Areas of xyxy boxes (..., 4)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def giou_loss(boxes: jax.Array, targets: jax.Array) -> jax.Array:
    """1 - GIoU of matching xyxy boxes (...), as torchvision.ops.generalized_box_iou_loss."""
    low = jnp.maximum(boxes[..., :2], targets[..., :2])
    high = jnp.minimum(boxes[..., 2:], targets[..., 2:])
    inter = jnp.prod(jnp.clip(high - low, 0.0), -1)
    union = area(boxes) + area(targets) - inter
    iou = inter / (union + EPS)
    hull = jnp.maximum(boxes[..., 2:], targets[..., 2:]) - jnp.minimum(
        boxes[..., :2], targets[..., :2]
    )
    hull_area = hull[..., 0] * hull[..., 1]
    return 1 - (iou - (hull_area - union) / (hull_area + EPS))


def box_iou(a: jax.Array, b: jax.Array) -> jax.Array:
    """IoU matrix (n, m) of xyxy boxes a (n, 4) and b (m, 4), as torchvision's NMS computes it."""
    low = jnp.maximum(a[:, None, :2], b[None, :, :2])
    high = jnp.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = jnp.prod(jnp.clip(high - low, 0.0), -1)
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def nms(boxes, scores, iou_threshold: float, max_output: int, classes=None, valid=None):
    """Greedy NMS of (k, 4) boxes: the kept indices, best first, padded to max_output with -1.

    The same boxes as torchvision.ops.nms(boxes, scores, iou_threshold)[:max_output] (with
    `classes`: batched_nms, boxes of different classes never suppress each other), in a
    fixed shape under jit: every box is sorted once, and a fori_loop over the k positions
    drops the later boxes that overlap a surviving one by more than `iou_threshold`.
    `valid` (k,) leaves boxes out (padding, low scores).
    """
    k = scores.shape[0]
    order = jnp.argsort(-scores, stable=True)
    overlap = box_iou(boxes[order], boxes[order]) > iou_threshold
    if classes is not None:
        overlap &= classes[order][:, None] == classes[order][None, :]
    later = jnp.arange(k)[None, :] > jnp.arange(k)[:, None]
    overlap &= later
    alive = jnp.ones(k, bool) if valid is None else valid[order]

    def suppress(i, alive):
        return alive & ~(overlap[i] & alive[i])

    alive = jax.lax.fori_loop(0, k, suppress, alive)
    rank = jnp.argsort(jnp.logical_not(alive).astype(jnp.int32), stable=True)[:max_output]
    return jnp.where(alive[rank], order[rank], -1)


def detect(
    heatmap_logits: jax.Array,
    box_maps: jax.Array,
    *,
    stride: int,
    top_k: int,
    max_detections: int,
    iou_threshold: float,
    score_threshold: float,
) -> jax.Array:
    """Detections (N, max_detections, 6) `x0, y0, x1, y1, score, class`, padded with 0 / -1.

    CenterNet's decoding: a cell is a peak of its class's heatmap where it equals the 3x3
    maximum around it; the `top_k` best peaks over all classes are decoded into boxes, and
    class-aware NMS keeps at most `max_detections`.
    """
    n, _, _, classes = heatmap_logits.shape
    scores = jax.nn.sigmoid(heatmap_logits)
    pooled = nn.max_pool(scores, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    scores = jnp.where(scores == pooled, scores, 0.0)
    top, flat = jax.lax.top_k(scores.reshape(n, -1), top_k)
    cell, cls = flat // classes, flat % classes
    boxes = decode_boxes(box_maps, cell, stride)

    def one_image(boxes, top, cls):
        keep = nms(
            boxes, top, iou_threshold, max_detections, cls, (top >= score_threshold) & (top > 0)
        )
        rows = jnp.concatenate([boxes, top[:, None], cls[:, None].astype(boxes.dtype)], -1)
        padding = jnp.array([0, 0, 0, 0, 0, -1], boxes.dtype)
        return jnp.where((keep >= 0)[:, None], rows[jnp.maximum(keep, 0)], padding)

    return jax.vmap(one_image)(boxes, top, cls)
