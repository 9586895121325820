"""Box geometry of the detector in PyTorch: decoding, GIoU and NMS from torchvision.ops.

Read beside jaxpath/detection/boxes.py, which writes GIoU and a fixed-size NMS out in JAX.
Maps are NHWC here too (the model permutes its outputs once): heatmap logits (N, H, W, K)
and box maps (N, H, W, 4) holding, per cell, the centre's sub-cell offset (x, y) and the log
of the box's width and height in cells.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision import ops

MAX_LOG_SIZE = 6.0  # exp(6) cells: far past any canvas; keeps exp finite early in training


def decode_boxes(box_maps: torch.Tensor, cell: torch.Tensor, stride: int) -> torch.Tensor:
    """xyxy pixel boxes (N, k, 4) the box maps predict at flat cells `cell` (N, k)."""
    n, _, width, _ = box_maps.shape
    cell = cell.long()  # PARITY: gather wants int64 indices; JAX's take_along_axis any int
    raw = torch.gather(box_maps.reshape(n, -1, 4), 1, cell[..., None].expand(-1, -1, 4))
    xy = torch.stack([cell % width, cell // width], -1).to(raw.dtype)
    centre = (xy + raw[..., :2]) * stride
    size = torch.exp(torch.clamp(raw[..., 2:], max=MAX_LOG_SIZE)) * stride
    return torch.cat([centre - size / 2, centre + size / 2], -1)


def target_boxes(batch, width: int, stride: int) -> torch.Tensor:
    """The xyxy pixel boxes (N, M, 4) of the batch's targets (index, offset, size)."""
    cell = batch["index"].long()
    xy = torch.stack([cell % width, cell // width], -1).to(torch.float32)
    centre = (xy + batch["offset"]) * stride
    return torch.cat([centre - batch["size"] / 2, centre + batch["size"] / 2], -1)


def area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of xyxy boxes (..., 4)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def giou_loss(boxes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - GIoU of matching xyxy boxes (...): torchvision.ops.generalized_box_iou_loss."""
    return ops.generalized_box_iou_loss(boxes, targets, reduction="none")


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix (n, m) of xyxy boxes a (n, 4) and b (m, 4): torchvision.ops.box_iou."""
    return ops.box_iou(a, b)


def nms(boxes, scores, iou_threshold: float, max_output: int, classes=None, valid=None):
    """Greedy NMS of (k, 4) boxes: the kept indices, best first, padded to max_output with -1.

    torchvision.ops.batched_nms (class-aware when `classes` is given), cut to max_output
    and padded, so the result has the JAX twin's fixed shape. `valid` (k,) leaves boxes out.
    """
    candidates = torch.arange(len(scores))
    if valid is not None:
        candidates = candidates[valid]
    groups = classes[candidates] if classes is not None else torch.zeros_like(candidates)
    keep = ops.batched_nms(boxes[candidates], scores[candidates], groups, iou_threshold)
    kept = candidates[keep[:max_output]]
    return F.pad(kept, (0, max_output - len(kept)), value=-1)


def fixed_nms(boxes, scores, iou_threshold: float, max_output: int, classes=None, valid=None):
    """`nms` over a batch (n, k, 4) / (n, k) in fixed shapes, for torch.export: (n, max_output).

    batched_nms returns as many indices as survive, a size torch.export cannot trace (it
    guards on it); this is the JAX twin's algorithm, batched: sort once, then one pass over
    the k positions drops the later boxes that overlap a surviving one. Tested equal to
    batched_nms.
    """
    n, k = scores.shape
    order = torch.argsort(-scores, dim=-1, stable=True)
    ranked = torch.gather(boxes, 1, order[..., None].expand(n, k, 4))
    # torchvision's box_iou, batched (a loop over the images would fix the batch size).
    area = (ranked[..., 2] - ranked[..., 0]) * (ranked[..., 3] - ranked[..., 1])
    low = torch.maximum(ranked[:, :, None, :2], ranked[:, None, :, :2])
    high = torch.minimum(ranked[:, :, None, 2:], ranked[:, None, :, 2:])
    size = (high - low).clamp(min=0)
    inter = size[..., 0] * size[..., 1]
    overlap = inter / (area[:, :, None] + area[:, None, :] - inter) > iou_threshold
    if classes is not None:
        ranked_classes = torch.gather(classes, 1, order)
        overlap &= ranked_classes[:, :, None] == ranked_classes[:, None, :]
    overlap &= torch.ones(k, k, dtype=torch.bool).triu(1)  # only later boxes are suppressed
    alive = torch.ones(n, k, dtype=torch.bool) if valid is None else torch.gather(valid, 1, order)
    for i in range(k):  # PARITY: JAX's lax.fori_loop; unrolled in the exported graph
        alive = alive & ~(overlap[:, i] & alive[:, i : i + 1])
    rank = torch.argsort((~alive).to(torch.int32), dim=-1, stable=True)[:, :max_output]
    return torch.where(torch.gather(alive, 1, rank), torch.gather(order, 1, rank), -1)


def detect(
    heatmap_logits: torch.Tensor,
    box_maps: torch.Tensor,
    *,
    stride: int,
    top_k: int,
    max_detections: int,
    iou_threshold: float,
    score_threshold: float,
) -> torch.Tensor:
    """Detections (N, max_detections, 6) `x0, y0, x1, y1, score, class`, padded with 0 / -1.

    CenterNet's decoding: a cell is a peak of its class's heatmap where it equals the 3x3
    maximum around it; the `top_k` best peaks over all classes are decoded into boxes, and
    class-aware NMS keeps at most `max_detections`.
    """
    n, _, _, classes = heatmap_logits.shape
    scores = torch.sigmoid(heatmap_logits)
    # PARITY: max_pool2d wants NCHW; the maps stay NHWC like JAX's for the flat indices.
    pooled = F.max_pool2d(scores.permute(0, 3, 1, 2), 3, 1, 1).permute(0, 2, 3, 1)
    scores = torch.where(scores == pooled, scores, 0.0)
    top, flat = torch.topk(scores.reshape(n, -1), top_k)
    cell, cls = flat // classes, flat % classes
    boxes = decode_boxes(box_maps, cell, stride)
    valid = (top >= score_threshold) & (top > 0)
    rows = torch.cat([boxes, top[..., None], cls[..., None].to(boxes.dtype)], -1)
    if torch.compiler.is_exporting():  # fixed shapes: the batch size is symbolic there
        keep = fixed_nms(boxes, top, iou_threshold, max_detections, cls, valid)
        picked = torch.gather(rows, 1, keep.clamp(min=0)[..., None].expand(-1, -1, 6))
        padding = torch.tensor([0, 0, 0, 0, 0, -1], dtype=boxes.dtype)
        return torch.where((keep >= 0)[..., None], picked, padding)
    out = torch.zeros(n, max_detections, 6, dtype=boxes.dtype)
    out[..., 5] = -1
    for i in range(n):  # PARITY: JAX vmaps its fixed-size NMS over the images
        keep = nms(boxes[i], top[i], iou_threshold, max_detections, cls[i], valid[i])
        keep = keep[keep >= 0]
        out[i, : len(keep)] = rows[i, keep]
    return out
