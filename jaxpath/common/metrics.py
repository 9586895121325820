"""Classification metrics as sums, so batches (and padded batches) add up exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
    """Per-example softmax cross-entropy of integer labels (optionally smoothed)."""
    if not label_smoothing:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    # PARITY: torch's label_smoothing: target (1 - s) * one_hot + s / num_classes.
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def classification_sums(logits, labels, mask=None, label_smoothing: float = 0.0) -> dict:
    """{"loss_sum", "correct", "count"} over the batch; `mask` zeroes padded rows."""
    if mask is None:
        mask = jnp.ones(labels.shape, jnp.float32)
    losses = cross_entropy(logits, labels, label_smoothing)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return {
        "loss_sum": jnp.sum(losses * mask),
        "correct": jnp.sum(correct * mask),
        "count": jnp.sum(mask),
    }
