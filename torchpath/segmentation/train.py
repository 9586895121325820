"""Segmentation training in PyTorch: the same functions as jaxpath/segmentation/train.py.

Read beside jaxpath/segmentation/train.py; the loop itself is torchpath/common/loop.py. A
batch holds "image" [N, C, H, W] in [0, 1] (NCHW from common/loop.py) and "label"
[N, H, W], the semantic map (0 background, class + 1 on object pixels).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import torch

from shared_data.configs.segmentation import get_task, load_dataset
from shared_data.scenes import save_mask_pictures
from shared_data.training import train_steps_per_epoch
from torchpath.common.loop import fit, to_device
from torchpath.common.state import TorchState, new_torch_state
from torchpath.segmentation.model import create_model, segmentation_sums, segmentation_terms

PICTURE_SCENES = 8  # held-out scenes drawn each epoch


@dataclasses.dataclass
class SegmentationState(TorchState):
    """TorchState plus the loss's Dice and background weights."""

    dice_weight: float = 1.0
    background_weight: float = 1.0


def create_state(config, steps_per_epoch: int, init_weights: Any = None) -> SegmentationState:
    """Model, parameters (from `config.seed` or `init_weights`) and optimizer in one state."""
    return new_torch_state(
        lambda: create_model(config),
        config,
        steps_per_epoch,
        init_weights,
        state_class=SegmentationState,
        dice_weight=config.dice_weight,
        background_weight=config.background_weight,
    )


def loss_fn(state: SegmentationState, batch):
    """Mean per-image loss (CE + Dice) of the batch, its [3, N] terms and the logits."""
    # PARITY: JAX's loss_fn(params, state, batch, rng) takes the parameters explicitly; here
    # autograd finds them in the module.
    logits = state.model(batch["image"])
    terms = segmentation_terms(logits, batch["label"], state.dice_weight, state.background_weight)
    return torch.mean(terms[0]), (terms, logits)


def train_step(state: SegmentationState, batch, rng: int):
    """One optimizer step on `batch`; returns the (updated in place) state and metric sums."""
    del rng  # the model draws no random numbers
    state.model.train()
    state.optimizer.zero_grad(set_to_none=True)
    loss, (terms, logits) = loss_fn(state, batch)
    loss.backward()
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    with torch.no_grad():
        return state, segmentation_sums(terms.detach(), logits.detach(), batch["label"])


@torch.inference_mode()
def eval_step(state: SegmentationState, batch):
    """Metric sums of the model on `batch` (padding rows masked out)."""
    state.model.eval()
    logits = state.model(batch["image"])
    terms = segmentation_terms(logits, batch["label"], state.dice_weight, state.background_weight)
    return segmentation_sums(terms, logits, batch["label"], batch.get("mask"))


@torch.inference_mode()
def predict(state: SegmentationState, batch):
    """Per-pixel logits [N, H, W, classes] (the evaluator takes their argmax)."""
    state.model.eval()
    # PARITY: channels last, as JAX's logits and the shared evaluator have them.
    return state.model(batch["image"]).permute(0, 2, 3, 1)


def write_pictures(state: SegmentationState, workdir: Path, epoch: int, *, scenes) -> None:
    """The on_epoch_end hook: held-out scenes over their predicted and true masks, as a PNG."""
    logits = predict(state, to_device({"image": scenes["image"]}))
    predicted = torch.argmax(logits, dim=-1).numpy()
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
