"""CIFAR-10 training in JAX: pure functions of (state, batch, rng), compiled by jax.jit.

Read beside torchpath/cifar10/train.py; the loop itself is jaxpath/common/loop.py. What the
step needs from the config (label smoothing, Lookahead, precision, test-time augmentation)
travels in the state as static `options`, so `train_step(state, batch, rng)` keeps the
kit's signature and jit compiles the options in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxpath.cifar10.model import create_model, dummy_input, output_float32
from jaxpath.common.loop import fit, to_device
from jaxpath.common.metrics import classification_sums, cross_entropy
from jaxpath.common.state import TrainState, new_train_state
from shared_data.cifar10 import CIFAR10_MEAN, CIFAR10_STD
from shared_data.configs.cifar10 import (
    StepOptions,
    get_task,
    param_group,
    param_groups,
    step_options,
)
from shared_data.datasets import load_for_config
from shared_data.training import train_steps_per_epoch
from shared_data.whitening import WHITEN_IMAGES, patch_whitening


class CifarState(TrainState):
    """TrainState plus the step's static options (a change recompiles, as it should)."""

    options: StepOptions = struct.field(pytree_node=False, default=StepOptions())


def create_state(config, steps_per_epoch: int, init_weights: Any = None) -> CifarState:
    """Model, parameters (from `config.seed` or `init_weights`), optimizer and Lookahead copy."""
    state = new_train_state(
        create_model(config),
        config,
        steps_per_epoch,
        init_weights,
        (dummy_input(),),
        state_class=CifarState,
        groups=param_groups(config, steps_per_epoch),
        group_of=lambda path: param_group(config, path),
        options=step_options(config, steps_per_epoch),
    )
    return with_lookahead(state)


def with_lookahead(state: CifarState) -> CifarState:
    """Start the Lookahead average at the current weights (when the options ask for one)."""
    if not state.options.lookahead_every:
        return state
    return state.replace(ema={"params": state.params, "batch_stats": state.batch_stats})


def set_whitening(state: CifarState, kernel: np.ndarray, bias: np.ndarray) -> CifarState:
    """The speedrun net's first conv set to the patch-whitening filters (HWIO, as Flax's)."""
    params = {**state.params, "whiten": {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}}
    return with_lookahead(state.replace(params=params))


def loss_fn(params, state: CifarState, batch, rng):
    """Mean (label-smoothed) cross-entropy of the batch, the logits and new BatchNorm stats."""
    del rng  # no dropout in these models; the kit's signature keeps it
    variables = {"params": params}
    if state.batch_stats is not None:
        variables["batch_stats"] = state.batch_stats
        logits, updates = state.apply_fn(
            variables, batch["image"], train=True, mutable=["batch_stats"]
        )
        batch_stats = updates["batch_stats"]
    else:
        logits, batch_stats = state.apply_fn(variables, batch["image"], train=True), None
    logits = output_float32(logits)
    losses = cross_entropy(logits, batch["label"], state.options.label_smoothing)
    return jnp.mean(losses), (logits, batch_stats)


def lookahead(state: CifarState) -> CifarState:
    """airbench's Lookahead: every k steps average the weights into `ema` and jump there.

    After step t (counted from 1) with t % k == 0: ema <- ema + (1 - d_t) (w - ema), w <- ema,
    where d_t = 0.95^5 (t / total)^3, over params and BatchNorm statistics alike; after the
    last step w <- ema. Traced with lax.cond, so the step stays one compiled program.
    """
    every, step = state.options.lookahead_every, state.step
    current = {"params": state.params, "batch_stats": state.batch_stats}
    decay = state.options.lookahead_decay(step.astype(jnp.float32))

    def average(_):
        ema = jax.tree.map(lambda e, w: e + (1.0 - decay) * (w - e), state.ema, current)
        return ema, ema

    ema, current = jax.lax.cond(step % every == 0, average, lambda _: (state.ema, current), None)
    current = jax.lax.cond(
        step == state.options.total_steps, lambda _: ema, lambda _: current, None
    )
    return state.replace(ema=ema, **current)


@jax.jit
def train_step(state: CifarState, batch, rng):
    """One optimizer step on `batch`; returns the new state and the batch's metric sums."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, (logits, batch_stats)), grads = grad_fn(state.params, state, batch, rng)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    if state.options.lookahead_every:
        state = lookahead(state)
    return state, classification_sums(logits, batch["label"], None, state.options.label_smoothing)


def predict(state: CifarState, batch):
    """Logits (float32) of the model in inference mode (running BatchNorm statistics)."""
    variables = {"params": state.params}
    if state.batch_stats is not None:
        variables["batch_stats"] = state.batch_stats
    return output_float32(state.apply_fn(variables, batch["image"], train=False))


def predict_tta(state: CifarState, batch):
    """Logits averaged over test-time augmentations (`options.tta`), as airbench94 does.

    mirror: the image and its mirror image. mirror_translate: half that, half the same for
    the image shifted one pixel up-left and down-right (reflect padding).
    """
    images = batch["image"]

    def mirror(x):
        flipped = predict(state, {"image": x[:, :, ::-1]})
        return 0.5 * predict(state, {"image": x}) + 0.5 * flipped

    if state.options.tta == "none":
        return predict(state, batch)
    logits = mirror(images)
    if state.options.tta == "mirror":
        return logits
    padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    h, w = images.shape[1:3]
    shifted = [padded[:, :h, :w], padded[:, 2 : h + 2, 2 : w + 2]]
    translated = 0.5 * mirror(shifted[0]) + 0.5 * mirror(shifted[1])
    return 0.5 * logits + 0.5 * translated


@jax.jit
def eval_step(state: CifarState, batch):
    """Metric sums of the model in inference mode on `batch`."""
    return classification_sums(predict(state, batch), batch["label"], batch.get("mask"))


@jax.jit
def eval_step_tta(state: CifarState, batch):
    """Metric sums with test-time augmentation: the final evaluation of a run."""
    return classification_sums(predict_tta(state, batch), batch["label"], batch.get("mask"))


def load_dataset(config):
    """The config's dataset, normalised with CIFAR-10's per-channel mean and std."""
    return load_for_config(config, mean=CIFAR10_MEAN, std=CIFAR10_STD)


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
    if config.model == "speedrun" and config.whiten:
        state = set_whitening(state, *patch_whitening(dataset.train["image"][:WHITEN_IMAGES]))
    return fit(
        get_task(config),
        config,
        workdir,
        state,
        train_step,
        eval_step,
        dataset,
        predict=predict,
        final_eval_step=eval_step_tta if config.tta != "none" else None,
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
