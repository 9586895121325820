"""Regression training in JAX: pure functions of (state, batch, rng), compiled by jax.jit.

Read beside torchpath/regression/train.py; the loop itself is jaxpath/common/loop.py. The
gradients come from jax.grad; tests/test_regression.py checks them against the hand-derived
ones of shared_data/byhand/regression.py.
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
from jaxpath.regression.model import create_model, dummy_input
from shared_data.configs.regression import get_task
from shared_data.tabular import load_for_config
from shared_data.training import train_steps_per_epoch


class RegressionState(TrainState):
    """TrainState plus the loss it trains: the model kind and the L2 strength."""

    # Static (not traced): jit specialises train_step on them, as on a Python constant.
    kind: str = struct.field(pytree_node=False, default="linear")
    l2: float = struct.field(pytree_node=False, default=0.0)


def create_state(config, steps_per_epoch: int, init_weights: Any = None) -> RegressionState:
    """Model, parameters (from `config.seed` or `init_weights`) and optimizer in one state."""
    return new_train_state(
        create_model(config),
        config,
        steps_per_epoch,
        init_weights,
        (dummy_input(config),),
        state_class=RegressionState,
        kind=config.model,
        l2=config.l2,
    )


def losses(kind: str, outputs, batch):
    """Per-example loss: squared error, sigmoid or softmax cross-entropy."""
    if kind == "linear":
        return (outputs - batch["target"]) ** 2
    if kind == "logistic":
        # log(1 + e^s) - y s == optax.sigmoid_binary_cross_entropy, written out like torch's.
        labels = batch["label"].astype(outputs.dtype)
        return jax.nn.softplus(outputs) - labels * outputs
    return cross_entropy(outputs, batch["label"])


def metric_sums(kind: str, outputs, batch, mask=None) -> dict:
    """The task's sums over the batch; `mask` zeroes padded rows."""
    if kind == "softmax":
        return classification_sums(outputs, batch["label"], mask)
    per_example = losses(kind, outputs, batch)
    if mask is None:
        mask = jnp.ones(per_example.shape, jnp.float32)
    sums = {"loss_sum": jnp.sum(per_example * mask), "count": jnp.sum(mask)}
    if kind == "linear":
        return {**sums, "sq_err_sum": sums["loss_sum"]}
    correct = ((outputs > 0) == (batch["label"] == 1)).astype(jnp.float32)
    return {**sums, "correct": jnp.sum(correct * mask)}


def loss_fn(params, state: RegressionState, batch, rng):
    """Mean loss plus (l2 / 2) ||W||^2 (bias unpenalised), and the outputs it came from."""
    del rng  # no dropout or sampling: a step is deterministic
    outputs = state.apply_fn({"params": params}, batch["x"], train=True)
    # PARITY: the penalty is part of the loss, on the kernel only; the optimizer's
    # weight_decay (0 here) would decay the bias too, unlike the oracle and scikit-learn.
    penalty = 0.5 * state.l2 * jnp.sum(params["fc"]["kernel"] ** 2)
    return jnp.mean(losses(state.kind, outputs, batch)) + penalty, outputs


@jax.jit
def train_step(state: RegressionState, batch, rng):
    """One optimizer step on `batch`; returns the new state and the batch's metric sums."""
    (_, outputs), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state, batch, rng)
    state = state.apply_gradients(grads=grads)
    return state, metric_sums(state.kind, outputs, batch)


@jax.jit
def eval_step(state: RegressionState, batch):
    """Metric sums of the model on `batch` (padded rows masked out)."""
    outputs = predict(state, batch)
    return metric_sums(state.kind, outputs, batch, batch.get("mask"))


def predict(state: RegressionState, batch):
    """Model outputs: predictions (linear) or logits (logistic, softmax)."""
    return state.apply_fn({"params": state.params}, batch["x"], train=False)


def train_and_evaluate(
    config,
    workdir: str | Path,
    *,
    init_weights: Any = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate per `config`, writing logs and checkpoints under `workdir`."""
    dataset = load_for_config(config)
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
