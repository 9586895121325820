"""Classification metrics as sums, so batches (and padded batches) add up exactly."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Per-example softmax cross-entropy of integer labels (optionally smoothed)."""
    return F.cross_entropy(logits, labels, reduction="none", label_smoothing=label_smoothing)


def classification_sums(logits, labels, mask=None, label_smoothing: float = 0.0) -> dict:
    """{"loss_sum", "correct", "count"} over the batch; `mask` zeroes padded rows."""
    if mask is None:
        mask = torch.ones(labels.shape, dtype=torch.float32, device=labels.device)
    losses = cross_entropy(logits, labels, label_smoothing)
    correct = (torch.argmax(logits, -1) == labels).to(torch.float32)
    return {
        "loss_sum": torch.sum(losses * mask),
        "correct": torch.sum(correct * mask),
        "count": torch.sum(mask),
    }
