"""Segmentation training in JAX: pure functions of (state, batch, rng), compiled by jax.jit.

Read beside torchpath/segmentation/train.py; the loop itself is jaxpath/common/loop.py. A
batch holds "image" [N, H, W, C] in [0, 1] and "label" [N, H, W], the semantic map
(0 background, class + 1 on object pixels).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxpath.common.loop import fit, to_device
from jaxpath.common.state import TrainState, new_train_state
from jaxpath.segmentation.model import (
    create_model,
    dummy_input,
    segmentation_sums,
    segmentation_terms,
)
from shared_data.configs.segmentation import get_task, load_dataset
from shared_data.scenes import save_mask_pictures
from shared_data.training import train_steps_per_epoch

PICTURE_SCENES = 8  # held-out scenes drawn each epoch


class SegmentationState(TrainState):
    """TrainState plus the loss's Dice and background weights (static: a change recompiles)."""

    dice_weight: float = struct.field(pytree_node=False, default=1.0)
    background_weight: float = struct.field(pytree_node=False, default=1.0)


def create_state(config, steps_per_epoch: int, init_weights: Any = None) -> SegmentationState:
    """Model, parameters (from `config.seed` or `init_weights`) and optimizer in one state."""
    return new_train_state(
        create_model(config),
        config,
        steps_per_epoch,
        init_weights,
        (dummy_input(config),),
        state_class=SegmentationState,
        dice_weight=config.dice_weight,
        background_weight=config.background_weight,
    )


def loss_fn(params, state: SegmentationState, batch, rng):
    """Mean per-image loss (CE + Dice) of the batch, its [3, N] terms and the logits."""
    del rng  # the model draws no random numbers
    logits = state.apply_fn({"params": params}, batch["image"])
    terms = segmentation_terms(logits, batch["label"], state.dice_weight, state.background_weight)
    return jnp.mean(terms[0]), (terms, logits)


@jax.jit
def train_step(state: SegmentationState, batch, rng):
    """One optimizer step on `batch`; returns the new state and the batch's metric sums."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, (terms, logits)), grads = grad_fn(state.params, state, batch, rng)
    state = state.apply_gradients(grads=grads)
    return state, segmentation_sums(terms, logits, batch["label"])


@jax.jit
def eval_step(state: SegmentationState, batch):
    """Metric sums of the model on `batch` (padding rows masked out)."""
    logits = predict(state, batch)
    terms = segmentation_terms(logits, batch["label"], state.dice_weight, state.background_weight)
    return segmentation_sums(terms, logits, batch["label"], batch.get("mask"))


@jax.jit
def predict(state: SegmentationState, batch):
    """Per-pixel logits [N, H, W, classes] (the evaluator takes their argmax)."""
    return state.apply_fn({"params": state.params}, batch["image"])


def write_pictures(state: SegmentationState, workdir: Path, epoch: int, *, scenes) -> None:
    """The on_epoch_end hook: held-out scenes over their predicted and true masks, as a PNG."""
    logits = predict(state, to_device({"image": scenes["image"]}))
    predicted = np.argmax(np.asarray(logits), axis=-1)
    save_mask_pictures(workdir, epoch, scenes["image"], predicted, scenes["label"])


def train_and_evaluate(
    config,
    workdir: str | Path,
    *,
    init_weights: Any = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate per `config`, writing logs, checkpoints and pictures under `workdir`."""
    dataset = load_dataset(config)
    state = create_state(config, train_steps_per_epoch(config, dataset), init_weights)
    shown = {key: value[:PICTURE_SCENES] for key, value in dataset.test.items()}
    return fit(
        get_task(config),
        config,
        workdir,
        state,
        train_step,
        eval_step,
        dataset,
        predict=predict,
        on_epoch_end=functools.partial(write_pictures, scenes=shown),
        resume=resume,
        progress=progress,
    )


__all__ = [
    "create_state",
    "loss_fn",
    "train_step",
    "eval_step",
    "predict",
    "write_pictures",
    "train_and_evaluate",
    "to_device",
]
