"""CIFAR-10 training in PyTorch: the same functions as jaxpath/cifar10/train.py, imperative style.

Read beside jaxpath/cifar10/train.py; the loop itself is torchpath/common/loop.py. What the
step needs from the config (label smoothing, Lookahead, precision, test-time augmentation)
travels in the state as `options`, so `train_step(state, batch, rng)` keeps the kit's
signature.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

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
from torchpath.cifar10.model import create_model, output_float32
from torchpath.common.loop import fit, to_device
from torchpath.common.metrics import classification_sums, cross_entropy
from torchpath.common.state import TorchState, new_torch_state


@dataclasses.dataclass
class CifarState(TorchState):
    """TorchState plus the step's options."""

    options: StepOptions = dataclasses.field(default_factory=StepOptions)


def create_state(config, steps_per_epoch: int, init_weights: Any = None) -> CifarState:
    """Model, parameters (from `config.seed` or `init_weights`), optimizer and Lookahead copy."""
    state = new_torch_state(
        lambda: create_model(config),
        config,
        steps_per_epoch,
        init_weights,
        state_class=CifarState,
        groups=param_groups(config, steps_per_epoch),
        group_of=lambda path: param_group(config, path),
        options=step_options(config, steps_per_epoch),
    )
    return with_lookahead(state)


def with_lookahead(state: CifarState) -> CifarState:
    """Start the Lookahead average at the current weights (when the options ask for one)."""
    if state.options.lookahead_every:
        state.ema = {
            k: v.detach().clone()
            for k, v in state.model.state_dict().items()
            if v.is_floating_point()  # BatchNorm's step counter is not averaged
        }
    return state


def set_whitening(state: CifarState, kernel: np.ndarray, bias: np.ndarray) -> CifarState:
    """The speedrun net's first conv set to the patch-whitening filters (HWIO -> OIHW)."""
    with torch.no_grad():
        state.model.whiten.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
        state.model.whiten.bias.copy_(torch.from_numpy(bias))
    return with_lookahead(state)


def autocast(options: StepOptions):
    """bf16 compute with float32 master weights (precision=bf16), else nothing."""
    # PARITY: the JAX twin sets the modules' dtype to bf16 instead; both keep BatchNorm's
    # statistics and the loss in float32.
    if options.precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def loss_fn(state: CifarState, batch):
    """Mean (label-smoothed) cross-entropy of the batch, and the logits it came from."""
    # PARITY: JAX's loss_fn(params, state, batch, rng) also returns the new BatchNorm
    # statistics; torch's modules update their running buffers in place.
    with autocast(state.options):
        logits = output_float32(state.model(batch["image"]))
    losses = cross_entropy(logits, batch["label"], state.options.label_smoothing)
    return torch.mean(losses), logits


@torch.no_grad()
def lookahead(state: CifarState) -> None:
    """airbench's Lookahead: every k steps average the weights into `ema` and jump there.

    After step t (counted from 1) with t % k == 0: ema <- ema + (1 - d_t) (w - ema), w <- ema,
    where d_t = 0.95^5 (t / total)^3, over params and BatchNorm statistics alike; after the
    last step w <- ema.
    """
    every, step = state.options.lookahead_every, state.step
    if step % every and step != state.options.total_steps:
        return  # most steps: nothing to do, and no state_dict to build
    current = state.model.state_dict()
    if step % every == 0:
        decay = state.options.lookahead_decay(float(step))
        for key, ema in state.ema.items():
            ema.lerp_(current[key], 1.0 - decay)
            current[key].copy_(ema)
    if step == state.options.total_steps:
        for key, ema in state.ema.items():
            current[key].copy_(ema)


def train_step(state: CifarState, batch, rng: int):
    """One optimizer step on `batch`; returns the (updated in place) state and metric sums."""
    del rng  # no dropout in these models; the kit's signature keeps it
    state.model.train()
    state.optimizer.zero_grad(set_to_none=True)
    loss, logits = loss_fn(state, batch)
    loss.backward()
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    if state.options.lookahead_every:
        lookahead(state)
    with torch.no_grad():
        return state, classification_sums(
            logits.detach(), batch["label"], None, state.options.label_smoothing
        )


@torch.inference_mode()
def predict(state: CifarState, batch):
    """Logits (float32) of the model in inference mode (running BatchNorm statistics)."""
    state.model.eval()
    with autocast(state.options):
        return output_float32(state.model(batch["image"]))


@torch.inference_mode()
def predict_tta(state: CifarState, batch):
    """Logits averaged over test-time augmentations (`options.tta`), as airbench94 does.

    mirror: the image and its mirror image. mirror_translate: half that, half the same for
    the image shifted one pixel up-left and down-right (reflect padding).
    """
    images = batch["image"]

    def mirror(x):
        flipped = predict(state, {"image": x.flip(-1)})
        return 0.5 * predict(state, {"image": x}) + 0.5 * flipped

    if state.options.tta == "none":
        return predict(state, batch)
    logits = mirror(images)
    if state.options.tta == "mirror":
        return logits
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    h, w = images.shape[2:]
    shifted = [padded[:, :, :h, :w], padded[:, :, 2 : h + 2, 2 : w + 2]]
    translated = 0.5 * mirror(shifted[0]) + 0.5 * mirror(shifted[1])
    return 0.5 * logits + 0.5 * translated


@torch.inference_mode()
def eval_step(state: CifarState, batch):
    """Metric sums of the model in inference mode on `batch`."""
    return classification_sums(predict(state, batch), batch["label"], batch.get("mask"))


@torch.inference_mode()
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
