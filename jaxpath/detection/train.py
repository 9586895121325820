"""Detection training in JAX: pure functions of (state, batch, rng), compiled by jax.jit.

Read beside torchpath/detection/train.py; the loop itself is jaxpath/common/loop.py. The
batches carry CenterNet's dense targets (shared_data/detection.py); what the step and
`predict` need from the config (loss weights, decoding) travels in the state as static
`options`, so `train_step(state, batch, rng)` keeps the kit's signature.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import struct

from jaxpath.common.loop import fit, to_device
from jaxpath.common.state import TrainState, new_train_state
from jaxpath.detection.boxes import detect
from jaxpath.detection.model import create_model, detection_sums, detection_terms, dummy_input
from shared_data.configs.detection import StepOptions, get_task, step_options
from shared_data.detection import STRIDE, load_detection, save_detection_pictures
from shared_data.training import train_steps_per_epoch

PICTURE_IMAGES = 6  # held-out scenes drawn with their detections each epoch


class DetectionState(TrainState):
    """TrainState plus the step's static options (a change recompiles, as it should)."""

    options: StepOptions = struct.field(pytree_node=False, default=StepOptions())


def create_state(config, steps_per_epoch: int, init_weights: Any = None) -> DetectionState:
    """Model, parameters and BatchNorm statistics (seeded or `init_weights`), optimizer."""
    return new_train_state(
        create_model(config),
        config,
        steps_per_epoch,
        init_weights,
        (dummy_input(config),),
        state_class=DetectionState,
        options=step_options(config),
    )


def loss_fn(params, state: DetectionState, batch, rng):
    """Loss per object of the batch, the metric sums and the new BatchNorm statistics."""
    del rng  # no dropout or sampling; the kit's signature keeps it
    variables = {"params": params, "batch_stats": state.batch_stats}
    (heatmap, boxes), updates = state.apply_fn(
        variables, batch["image"], train=True, mutable=["batch_stats"]
    )
    loss, sums = detection_sums(detection_terms(heatmap, boxes, batch), state.options)
    return loss, (sums, updates["batch_stats"])


@jax.jit
def train_step(state: DetectionState, batch, rng):
    """One optimizer step on `batch`; returns the new state and the batch's metric sums."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, (sums, batch_stats)), grads = grad_fn(state.params, state, batch, rng)
    return state.apply_gradients(grads=grads, batch_stats=batch_stats), sums


def heads(state: DetectionState, images):
    """Heatmap logits and box maps (NHWC) in inference mode (running BatchNorm statistics)."""
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    return state.apply_fn(variables, images, train=False)


@jax.jit
def eval_step(state: DetectionState, batch):
    """Metric sums of the model in inference mode on `batch` (padded rows masked)."""
    heatmap, boxes = heads(state, batch["image"])
    terms = detection_terms(heatmap, boxes, batch)
    return detection_sums(terms, state.options, batch.get("mask"))[1]


@jax.jit
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
    detections = np.asarray(predict(state, to_device({"image": images})))
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
