"""Transfer learning in PyTorch: the same functions as jaxpath/transfer/train.py, imperative style.

Read beside jaxpath/transfer/train.py; the loop is torchpath/common/loop.py. Freezing is
two things on this side: the body's parameters get `requires_grad_(False)` and leave the
optimizer (its param group is frozen: shared_data/configs/transfer.py), and the body's
BatchNorms stay in eval mode (torchpath/transfer/model.py), so that neither the weights nor
the running statistics move. Unfrozen, the body is its own param group at a smaller
learning rate (discriminative learning rates).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from shared_data.configs.transfer import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    get_task,
    param_group,
    param_groups,
)
from shared_data.fewshot import load_transfer_dataset
from shared_data.training import train_steps_per_epoch
from torchpath.common.loop import fit, to_device
from torchpath.common.metrics import classification_sums, cross_entropy
from torchpath.common.state import TorchState, new_torch_state
from torchpath.transfer.model import create_model


@dataclasses.dataclass
class TransferState(TorchState):
    """TorchState plus the loss's label smoothing."""

    label_smoothing: float = 0.0


def create_state(config, steps_per_epoch: int, init_weights: Any = None) -> TransferState:
    """Model, parameters (from `config.seed` or `init_weights`) and per-group optimizer."""
    return new_torch_state(
        lambda: create_model(config),
        config,
        steps_per_epoch,
        init_weights,
        state_class=TransferState,
        groups=param_groups(config, steps_per_epoch),
        group_of=lambda path: param_group(config, path),
        label_smoothing=config.label_smoothing,
    )


def loss_fn(state: TransferState, batch):
    """Mean (label-smoothed) cross-entropy of the batch, and the logits it came from."""
    # PARITY: JAX's loss_fn(params, state, batch, rng) also returns the new BatchNorm
    # statistics; torch's modules update their running buffers in place.
    logits = state.model(batch["image"])
    losses = cross_entropy(logits, batch["label"], state.label_smoothing)
    return torch.mean(losses), logits


def train_step(state: TransferState, batch, rng: int):
    """One optimizer step on `batch`; returns the (updated in place) state and metric sums."""
    del rng  # no dropout in these models; the kit's signature keeps it
    state.model.train()  # frozen BatchNorms stay in eval mode (model.py)
    state.optimizer.zero_grad(set_to_none=True)
    loss, logits = loss_fn(state, batch)
    loss.backward()
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    with torch.no_grad():
        return state, classification_sums(
            logits.detach(), batch["label"], None, state.label_smoothing
        )


@torch.inference_mode()
def predict(state: TransferState, batch):
    """Logits of the model in inference mode (running BatchNorm statistics)."""
    state.model.eval()
    return state.model(batch["image"])


@torch.inference_mode()
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
