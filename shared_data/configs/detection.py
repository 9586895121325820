"""Detection: a CenterNet-style detector (small ResNet + FPN, stride 4) on generated scenes.

Scenes of 1-4 MNIST digits at random scales on a 128x128 canvas (shared_data/scenes.py); the
targets are CenterNet's (shared_data/detection.py); the loss is a focal loss on the class
heatmaps, GIoU on the box decoded at each object's centre and L1 on the centre offset; the
predictions are decoded from heatmap peaks and filtered by class-aware NMS (torchvision's
batched_nms in torch, a fixed-size jit-compatible one in JAX); COCO box mAP by pycocotools
(mAP@0.5 is the headline). Variants (`get_config(variant)`), measured 2026-11-29 on
one CPU core each (docs/RESULTS.md, docs/DETECTION_SEGMENTATION.md):

* ``default`` -- 8,000 MNIST scenes (1,000 held out, made of MNIST's test digits), Adam
  one-cycle to 2e-3, batch 32, 6 epochs: ``roadmap run detection --framework jax|torch
  --data-dir ../shared/data`` reached mAP@0.5 / mAP@[.5:.95] of 0.933 / 0.671 (JAX) and
  0.933 / 0.670 (torch), both past 0.90 at epoch 3; the whole run takes 4.2 (JAX) / 3.0
  (torch) minutes on one quiet core (docs/RESULTS.md).
* ``digits`` -- the offline quickstart on scikit-learn's embedded digits (not measured yet).
* ``smoke`` -- a few steps on 64x64 scenes of embedded digits, for tests.

Each epoch writes ``images/detections_epoch<N>.png``: held-out scenes with the boxes, classes
and scores the model predicts.
"""

from __future__ import annotations

import dataclasses

from shared_data.configs.base import (
    ConfigError,
    TrainConfig,
    above,
    at_least,
    between,
    field,
    one_of,
    pick_variant,
    widths,
)
from shared_data.detection import STRIDE, coco_map
from shared_data.tasks import Task

MODELS = ("centernet",)
SOURCES = ("mnist", "digits", "cifar10")  # what the scenes are made of (shared_data/scenes.py)


@dataclasses.dataclass(frozen=True)
class DetectionConfig(TrainConfig):
    """Hyperparameters of one detection run; identical for both frameworks."""

    model: str = field("centernet", one_of(*MODELS))  # ResNet + FPN body, CenterNet heads
    source: str = field("mnist", one_of(*SOURCES))  # the objects pasted into the scenes
    canvas: int = field(128, at_least(32))  # scene side in pixels (a multiple of 32)
    train_scenes: int = field(8_000, at_least(1))  # generated training scenes
    test_scenes: int = field(1_000, at_least(1))  # held-out scenes (the source's test split)
    min_objects: int = field(1, at_least(1))  # objects drawn per scene (some may not fit)
    max_objects: int = field(4, at_least(1))
    min_scale: float = field(0.75, above(0))  # object side = 28 px x a uniform scale
    max_scale: float = field(2.0, above(0))
    max_overlap: float = field(0.3, between(0, 1))  # largest IoU between two placed boxes
    widths: tuple[int, ...] = field((16, 32, 64, 128), widths(4))  # stem, strides 4, 8, 16
    fpn_width: int = field(32, at_least(1))  # the top-down pathway's channels
    head_width: int = field(32, at_least(1))  # each head's hidden 3x3 conv
    giou_weight: float = field(2.0, at_least(0))  # loss = focal + this x GIoU + ...
    offset_weight: float = field(1.0, at_least(0))  # ... + this x L1(offset)
    pre_nms_top_k: int = field(64, at_least(1))  # heatmap peaks decoded per image
    max_detections: int = field(20, at_least(1))  # boxes kept per image after NMS
    nms_iou: float = field(0.5, between(0, 1))  # NMS drops a box overlapping a better one more
    score_threshold: float = field(0.01, between(0, 1))  # peaks below it are not decoded
    bn_momentum: float = field(0.1, between(0, 1))  # torch's convention (jaxpath's BatchNorm)
    bn_eps: float = field(1e-5, above(0))

    def check(self) -> None:
        """Rules across fields: the canvas halves cleanly, ranges are ordered."""
        super().check()
        if self.canvas % (8 * STRIDE):
            raise ConfigError(
                f"field 'canvas' wants a multiple of {8 * STRIDE} (the body's stride), "
                f"got {self.canvas}"
            )
        if self.min_objects > self.max_objects:
            raise ConfigError(
                f"field 'min_objects' wants at most max_objects={self.max_objects}, "
                f"got {self.min_objects}"
            )
        if self.min_scale > self.max_scale:
            raise ConfigError(
                f"field 'min_scale' wants at most max_scale={self.max_scale}, got {self.min_scale}"
            )
        if self.max_detections > self.pre_nms_top_k:
            raise ConfigError(
                f"field 'max_detections' wants at most pre_nms_top_k={self.pre_nms_top_k}, "
                f"got {self.max_detections}"
            )

    @property
    def num_classes(self) -> int:
        """K: ten digits, or CIFAR-10's ten classes."""
        return 10

    @property
    def channels(self) -> int:
        """Image channels: 1 for digits, 3 for CIFAR-10 objects."""
        return 3 if self.source == "cifar10" else 1

    @property
    def cells(self) -> int:
        """Side of the output grid (canvas / stride)."""
        return self.canvas // STRIDE


@dataclasses.dataclass(frozen=True)
class StepOptions:
    """What the steps and `predict` read from the config (static in JAX's state)."""

    giou_weight: float = 2.0
    offset_weight: float = 1.0
    top_k: int = 64
    max_detections: int = 20
    nms_iou: float = 0.5
    score_threshold: float = 0.01


def step_options(config: DetectionConfig) -> StepOptions:
    """The config's loss weights and decoding settings."""
    return StepOptions(
        giou_weight=config.giou_weight,
        offset_weight=config.offset_weight,
        top_k=config.pre_nms_top_k,
        max_detections=config.max_detections,
        nms_iou=config.nms_iou,
        score_threshold=config.score_threshold,
    )


def get_task(config: DetectionConfig) -> Task:
    """The loss and its three terms per object; COCO mAP@0.5 (headline) and mAP@[.5:.95]."""
    return Task(
        sums=("loss_sum", "focal_sum", "giou_sum", "offset_sum", "objects"),
        means={
            "loss": ("loss_sum", "objects"),
            "focal": ("focal_sum", "objects"),
            "giou": ("giou_sum", "objects"),
            "offset": ("offset_sum", "objects"),
        },
        headline="map50",
        higher_is_better=True,
        evaluator=coco_map,
        evaluator_metrics=("map50", "map"),
        formats={"map50": "pct", "map": "pct"},
    )


def variants() -> dict[str, DetectionConfig]:
    """Every named config: default, digits and smoke."""
    base = DetectionConfig(
        optimizer="adam",
        lr=2e-3,
        schedule="onecycle",
        weight_decay=0.0,
        batch_size=32,
        epochs=6,
        eval_batch_size=100,
        log_every=50,
    )
    return {
        "default": base,
        "digits": dataclasses.replace(base, source="digits", train_scenes=4000, epochs=10),
        "smoke": dataclasses.replace(
            base,
            source="digits",
            canvas=64,
            train_scenes=16,
            test_scenes=8,
            max_objects=2,
            min_scale=0.5,
            max_scale=1.0,
            widths=(4, 8, 8, 8),
            fpn_width=8,
            head_width=8,
            pre_nms_top_k=8,
            max_detections=4,
            batch_size=8,
            eval_batch_size=8,
            epochs=1,
            log_every=1,
        ),
    }


def get_config(variant: str = "default") -> DetectionConfig:
    """The config of one variant (see the module docstring)."""
    return pick_variant("detection", variants(), variant)
