"""Segmentation: a small U-Net on generated scenes; per-pixel cross-entropy + Dice, mIoU.

Scenes of MNIST digits at random scales (shared_data/scenes.py); every pixel is labelled
background (0) or its digit's class + 1, and the model predicts those 11 classes per pixel.
The loss of an image is its per-pixel cross-entropy, background pixels weighing
`background_weight` (0.1) and digit pixels 1, plus `dice_weight` x (1 - its soft Dice
averaged over the classes it holds); the headline is the mean IoU over the classes of the
whole held-out set (one numpy evaluator, `mean_iou`, for both frameworks' predictions).
Without the weight the model stalls on "ink, but no digit" (docs/RESULTS.md).
Variants (`get_config(variant)`), measured 2026-11-29 on one CPU core each (docs/RESULTS.md,
"Segmentation"):

* ``default`` -- 20,000 64x64 MNIST scenes of 1-3 digits (scale 0.75-1.5), 300 held out
  from MNIST's test digits; widths 8/16/32/64 (121k parameters), Adam one-cycle to 3e-3,
  batch 32, 15 epochs: ``roadmap run segmentation --framework torch|jax --data-dir
  ../shared/data`` reached test mIoU 80.6% (torch, 16 min) / 81.8% (JAX, 30 min).
* ``wide`` -- widths 16/32/64/128 (483k parameters), 10 epochs: 84.1% (torch, 21 min) /
  84.8% (JAX, 45 min).
* ``digits`` -- the offline quickstart: 3,000 scenes of scikit-learn's embedded digits,
  5 epochs (not measured).
* ``smoke`` -- a few steps on tiny scenes of embedded digits, for tests.

`remat=blocks` recomputes each U-Net block's activations in the backward pass instead of
keeping them (`nn.remat` / `torch.utils.checkpoint`): the same values and gradients, less
memory (`roadmap bench segmentation --memory`, docs/BENCHMARKS.md). Each epoch writes
``images/masks_epoch<N>.png``: held-out scenes beside their predicted and true masks.
"""

from __future__ import annotations

import dataclasses

import numpy as np

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
from shared_data.datasets import ImageDataset
from shared_data.scenes import SOURCES, make_scenes
from shared_data.tasks import Task

MODELS = ("unet",)
REMAT = ("none", "blocks")  # activation checkpointing: off, or around every conv block


@dataclasses.dataclass(frozen=True)
class SegmentationConfig(TrainConfig):
    """Hyperparameters of one segmentation run; identical for both frameworks."""

    model: str = field("unet", one_of(*MODELS))  # encoder-decoder with skip connections
    source: str = field("mnist", one_of(*SOURCES))  # the objects pasted into the scenes
    canvas: int = field(64, at_least(8))  # scene side in pixels (a multiple of 2^levels)
    train_scenes: int = field(20_000, at_least(1))  # generated training scenes
    test_scenes: int = field(300, at_least(1))  # held-out scenes (the source's test split)
    scene_seed: int = field(0, at_least(0))  # the scenes; `seed` is the model's and the order's
    min_objects: int = field(1, at_least(1))  # objects drawn per scene (some may not fit)
    max_objects: int = field(3, at_least(1))
    min_scale: float = field(0.75, above(0))  # object side = 28 px x a uniform scale
    max_scale: float = field(1.5, above(0))
    max_overlap: float = field(0.3, between(0, 1))  # largest IoU between two placed boxes
    widths: tuple[int, ...] = field((8, 16, 32, 64), widths())  # channels per level
    groups: int = field(4, at_least(1))  # GroupNorm groups (divides every width)
    dice_weight: float = field(1.0, at_least(0))  # loss = CE + this x (1 - soft Dice)
    background_weight: float = field(0.1, above(0))  # CE weight of background pixels (objects: 1)
    remat: str = field("none", one_of(*REMAT))

    def check(self) -> None:
        """Rules across fields: the canvas halves cleanly, groups divide, ranges ordered."""
        super().check()
        stride = 2 ** (len(self.widths) - 1)
        if self.canvas % stride:
            raise ConfigError(
                f"field 'canvas' wants a multiple of {stride} ({len(self.widths)} levels "
                f"halve it {len(self.widths) - 1} times), got {self.canvas}"
            )
        if any(w % self.groups for w in self.widths):
            raise ConfigError(
                f"field 'groups' wants a divisor of every width {self.widths}, got {self.groups}"
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
        if self.canvas < round(32 * self.max_scale):
            raise ConfigError(
                f"field 'canvas' wants room for the largest object ({round(32 * self.max_scale)} "
                f"pixels at max_scale={self.max_scale}), got {self.canvas}"
            )

    @property
    def num_classes(self) -> int:
        """Classes per pixel: background and the source's ten classes."""
        return 11

    @property
    def channels(self) -> int:
        """Image channels: 1 for digits, 3 for CIFAR-10 objects."""
        return 3 if self.source == "cifar10" else 1


def confusion_matrix(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """[true, predicted] pixel counts of two integer maps of the same shape."""
    index = labels.astype(np.int64).ravel() * num_classes + predicted.astype(np.int64).ravel()
    counts = np.bincount(index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU = TP / (TP + FP + FN) of each class; NaN for a class in neither map."""
    true_positive = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positive / union, np.nan)


def mean_iou(logits: np.ndarray, arrays) -> dict[str, float]:
    """The evaluator: mIoU over the classes of the whole split from logits [N, H, W, classes]."""
    num_classes = logits.shape[-1]
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for start in range(0, len(logits), 256):  # argmax in chunks: logits can be large
        chunk = slice(start, start + 256)
        predicted = np.argmax(logits[chunk], axis=-1)
        confusion += confusion_matrix(predicted, arrays["label"][chunk], num_classes)
    iou = iou_per_class(confusion)
    return {"miou": float(np.nanmean(iou)), "objects_miou": float(np.nanmean(iou[1:]))}


def get_task(config: SegmentationConfig) -> Task:
    """Loss (CE + Dice) and its terms per image, pixel accuracy; mIoU from the evaluator."""
    return Task(
        sums=("loss_sum", "ce_sum", "dice_sum", "correct", "pixels", "count"),
        means={
            "loss": ("loss_sum", "count"),
            "ce": ("ce_sum", "count"),
            "dice": ("dice_sum", "count"),
            "pixel_accuracy": ("correct", "pixels"),
        },
        headline="miou",
        higher_is_better=True,
        evaluator=mean_iou,
        evaluator_metrics=("miou", "objects_miou"),
        formats={"pixel_accuracy": "pct", "miou": "pct", "objects_miou": "pct"},
    )


def load_dataset(config: SegmentationConfig) -> ImageDataset:
    """Generated train and held-out scenes as {"image": NHWC in [0, 1], "label": [N, H, W]}."""
    splits = {}
    for split, count in (("train", config.train_scenes), ("test", config.test_scenes)):
        limit = config.limit_train if split == "train" else config.limit_test
        scenes = make_scenes(
            min(count, limit or count),
            seed=config.scene_seed,
            split=split,
            source=config.source,
            canvas=config.canvas,
            objects=(config.min_objects, config.max_objects),
            scale=(config.min_scale, config.max_scale),
            max_overlap=config.max_overlap,
            data_dir=config.data_dir,
        )
        splits[split] = {"image": scenes.images, "label": scenes.semantic}
    return ImageDataset(
        name="scenes",
        train=splits["train"],
        test=splits["test"],
        num_classes=config.num_classes,
        source=f"{config.source} scenes (shared_data/scenes.py)",
    )


def variants() -> dict[str, SegmentationConfig]:
    """Every named config: default, wide, digits and smoke."""
    base = SegmentationConfig(
        optimizer="adam",
        lr=3e-3,
        schedule="onecycle",
        batch_size=32,
        epochs=15,
        eval_batch_size=100,
        log_every=25,
    )
    return {
        "default": base,
        "wide": dataclasses.replace(base, widths=(16, 32, 64, 128), epochs=10),
        # The quickstart: minutes, not half an hour (scikit-learn's digits, fewer scenes).
        "digits": dataclasses.replace(base, source="digits", train_scenes=3_000, epochs=5),
        "smoke": dataclasses.replace(
            base,
            source="digits",
            canvas=32,
            min_scale=0.5,
            max_scale=1.0,
            max_objects=2,
            train_scenes=16,
            test_scenes=8,
            widths=(4, 8),
            groups=2,
            batch_size=8,
            eval_batch_size=8,
            epochs=1,
            log_every=1,
        ),
    }


def get_config(variant: str = "default") -> SegmentationConfig:
    """The config of one variant (see the module docstring)."""
    return pick_variant("segmentation", variants(), variant)
