"""Detection training in PyTorch: the same functions as jaxpath/detection/train.py.

Read beside jaxpath/detection/train.py; the loop itself is torchpath/common/loop.py. The
batches carry CenterNet's dense targets (shared_data/detection.py); what the step and
`predict` need from the config (loss weights, decoding) travels in the state's `options`.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import torch

from shared_data.configs.detection import StepOptions, get_task, step_options
from shared_data.detection import STRIDE, load_detection, save_detection_pictures
from shared_data.training import train_steps_per_epoch
from torchpath.common.loop import fit, to_device
from torchpath.common.state import TorchState, new_torch_state
from torchpath.detection.boxes import detect
from torchpath.detection.model import create_model, detection_sums, detection_terms

PICTURE_IMAGES = 6  # held-out scenes drawn with their detections each epoch


@dataclasses.dataclass
class DetectionState(TorchState):
    """TorchState plus the step's options."""

    options: StepOptions = dataclasses.field(default_factory=StepOptions)


def create_state(config, steps_per_epoch: int, init_weights: Any = None) -> DetectionState:
    """Model, parameters and BatchNorm statistics (seeded or `init_weights`), optimizer."""
    return new_torch_state(
        lambda: create_model(config),
        config,
        steps_per_epoch,
        init_weights,
        state_class=DetectionState,
        options=step_options(config),
    )


def loss_fn(state: DetectionState, batch):
    """Loss per object of the batch and the metric sums (BatchNorm updates its statistics)."""
    # PARITY: JAX's loss_fn(params, state, batch, rng) returns the new BatchNorm statistics;
    # torch's modules update theirs in place during the forward pass.
    heatmap, boxes = state.model(batch["image"])
    return detection_sums(detection_terms(heatmap, boxes, batch), state.options)


def train_step(state: DetectionState, batch, rng: int):
    """One optimizer step on `batch`; returns the (updated in place) state and metric sums."""
    del rng  # no dropout or sampling; the kit's signature keeps it
    state.model.train()
    state.optimizer.zero_grad(set_to_none=True)
    loss, sums = loss_fn(state, batch)
    loss.backward()
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    return state, {k: v.detach() for k, v in sums.items()}


def heads(state: DetectionState, images):
    """Heatmap logits and box maps (NHWC) in inference mode (running BatchNorm statistics)."""
    state.model.eval()
    return state.model(images)


@torch.inference_mode()
def eval_step(state: DetectionState, batch):
    """Metric sums of the model in inference mode on `batch` (padded rows masked)."""
    heatmap, boxes = heads(state, batch["image"])
    terms = detection_terms(heatmap, boxes, batch)
    return detection_sums(terms, state.options, batch.get("mask"))[1]


@torch.inference_mode()
def predict(state: DetectionState, batch):
    """Detections (N, max_detections, 6): x0, y0, x1, y1, score, class; padded 0 / -1."""
    heatmap, boxes = heads(state, batch["image"])
    options = state.options
    return detect(
        heatmap,
        boxes,
        stride=STRIDE,
        top_k=options.top_k,
        max_detections=options.max_detections,
        iou_threshold=options.nms_iou,
        score_threshold=options.score_threshold,
    )


def write_pictures(state: DetectionState, workdir: Path, epoch: int, *, images, names) -> None:
    """The on_epoch_end hook: held-out scenes with their predicted boxes, as a PNG in the run."""
    detections = predict(state, to_device({"image": images})).numpy()  # NHWC -> NCHW inside
    save_detection_pictures(workdir, epoch, images, detections, names)


def train_and_evaluate(
    config,
    workdir: str | Path,
    *,
    init_weights: Any = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate per `config`, writing logs, checkpoints and pictures under `workdir`."""
    dataset = load_detection(config)
    state = create_state(config, train_steps_per_epoch(config, dataset), init_weights)
    pictures = functools.partial(
        write_pictures,
        images=dataset.test["image"][:PICTURE_IMAGES],
        names=dataset.class_names,
    )
    return fit(
        get_task(config),
        config,
        workdir,
        state,
        train_step,
        eval_step,
        dataset,
        predict=predict,
        on_epoch_end=pictures,
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
