"""Classification metrics as sums, so batches (and padded batches) add up exactly."""

from __future__ import annotations

import jax.numpy as jnp
import optax


def cross_entropy(logits, labels):
    """Per-example softmax cross-entropy of integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def classification_sums(logits, labels, mask=None) -> dict:
    """{"loss_sum", "correct", "count"} over the batch; `mask` zeroes padded rows."""
    if mask is None:
        mask = jnp.ones(labels.shape, jnp.float32)
    losses = cross_entropy(logits, labels)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return {
        "loss_sum": jnp.sum(losses * mask),
        "correct": jnp.sum(correct * mask),
        "count": jnp.sum(mask),
    }
