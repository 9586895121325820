"""Transfer learning in JAX: pure functions of (state, batch, rng), compiled by jax.jit.

Read beside torchpath/transfer/train.py; the loop is jaxpath/common/loop.py. Freezing is
two things on this side too, both functional: the body's parameters sit in an
`optax.multi_transform` branch that is `optax.set_to_zero()`, and the model is built with
`frozen_bn=True`, so its BatchNorms read the running statistics and hand them back
unchanged. `jax.grad` still differentiates with respect to every parameter, but the body's
gradients are never used, and dead-code elimination drops their computation when the step
is lowered: the compiled linear-probe step holds the 20 forward convolutions of ResNet-18
and none of the backward ones (59 when everything trains; docs/TRANSFER.md). Unfrozen,
the body's branch runs the same optimizer at a scaled learning rate
(shared_data/configs/transfer.py: param_groups).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxpath.common.loop import fit, to_device
from jaxpath.common.metrics import classification_sums, cross_entropy
from jaxpath.common.state import TrainState, new_train_state
from jaxpath.transfer.model import create_model, dummy_input
from shared_data.configs.transfer import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    get_task,
    param_group,
    param_groups,
)
from shared_data.fewshot import load_transfer_dataset
from shared_data.training import train_steps_per_epoch


class TransferState(TrainState):
    """TrainState plus the loss's label smoothing (static: a change recompiles)."""

    label_smoothing: float = struct.field(pytree_node=False, default=0.0)


def create_state(config, steps_per_epoch: int, init_weights: Any = None) -> TransferState:
    """Model, parameters (from `config.seed` or `init_weights`) and per-group optimizer."""
    return new_train_state(
        create_model(config),
        config,
        steps_per_epoch,
        init_weights,
        (dummy_input(config),),
        state_class=TransferState,
        groups=param_groups(config, steps_per_epoch),
        group_of=lambda path: param_group(config, path),
        label_smoothing=config.label_smoothing,
    )


def loss_fn(params, state: TransferState, batch, rng):
    """Mean (label-smoothed) cross-entropy of the batch, the logits and new BatchNorm stats."""
    del rng  # no dropout in these models; the kit's signature keeps it
    variables = {"params": params, "batch_stats": state.batch_stats}
    logits, updates = state.apply_fn(
        variables, batch["image"], train=True, mutable=["batch_stats"]
    )  # frozen BatchNorms hand their statistics back unchanged (model.py)
    losses = cross_entropy(logits, batch["label"], state.label_smoothing)
    return jnp.mean(losses), (logits, updates["batch_stats"])


@jax.jit
def train_step(state: TransferState, batch, rng):
    """One optimizer step on `batch`; returns the new state and the batch's metric sums."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, (logits, batch_stats)), grads = grad_fn(state.params, state, batch, rng)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    return state, classification_sums(logits, batch["label"], None, state.label_smoothing)


def predict(state: TransferState, batch):
    """Logits of the model in inference mode (running BatchNorm statistics)."""
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    return state.apply_fn(variables, batch["image"], train=False)


@jax.jit
def eval_step(state: TransferState, batch):
    """Metric sums of the model in inference mode on `batch`."""
    return classification_sums(predict(state, batch), batch["label"], batch.get("mask"))


def load_dataset(config):
    """The config's classes and examples, normalised as torchvision's ImageNet presets do."""
    return load_transfer_dataset(config, IMAGENET_MEAN, IMAGENET_STD)


def train_and_evaluate(
    config,
    workdir: str | Path,
    *,
    init_weights: Any = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate per `config`, writing logs and checkpoints under `workdir`."""
    dataset = load_dataset(config)
    state = create_state(config, train_steps_per_epoch(config, dataset), init_weights)
    return fit(
        get_task(config),
        config,
        workdir,
        state,
        train_step,
        eval_step,
        dataset,
        predict=predict,
        resume=resume,
        progress=progress,
    )


__all__ = [
    "create_state",
    "loss_fn",
    "train_step",
    "eval_step",
    "predict",
    "train_and_evaluate",
    "to_device",
]
