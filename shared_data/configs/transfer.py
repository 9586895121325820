"""Transfer learning from ResNet-18: the same pretrained weights, frozen and unfrozen, twice.

The roadmap's CV stage: take a torchvision ResNet with pretrained weights, freeze the body
and train a new last layer on a small dataset of your own (a linear probe), then unfreeze
and fine-tune with a smaller learning rate for the body; compare with training from scratch
on the same examples. The model is torchvision's class on the torch side and a Flax twin
that computes exactly its function (jaxpath/transfer/model.py); `--weights` is ported into
both (comparisons/pretrained.py), so the two frameworks start from the same function.

ImageNet weights cannot be fetched on this offline machine, so the demo makes its own
pretrained network first, on the *other* half of CIFAR-10 (docs/TRANSFER.md):

* ``pretrain`` -- ResNet-18 from scratch on CIFAR-10 classes 0-4 (airplane, automobile,
  bird, cat, deer), all 25,000 training images at 32x32, 30 epochs of SGD + Nesterov,
  cosine schedule, crop + flip:
  ``roadmap run transfer --variant pretrain --framework torch --run-id pretrain``:
  87.78% on those classes' test images, 913 s.
* ``probe`` -- a new 5-way `fc` on classes 5-9 (dog, frog, horse, ship, truck) from 100
  labelled images a class; body parameters and BatchNorm statistics frozen:
  ``roadmap run transfer --variant probe --framework jax --weights runs/transfer/torch/pretrain``:
  63.26% in both frameworks (seed 1), 50 s (torch) / 67 s (JAX).
* ``finetune`` (the default) -- everything trains, the body at 0.1x the learning rate,
  starting from a probe run (its head kept: ``--set reinit=``): 73.98% / 73.92%, 75 / 102 s.
* ``scratch`` -- the same 500 images, random initialisation, 60 epochs: 63.84% / 64.98%,
  147 / 199 s.
* ``imagenet`` -- torchvision's ImageNet weights (``--weights imagenet``) and 224x224
  inputs; needs the weights in the torch hub cache or a network.
* ``folder`` -- your own images: ``--set image_folder=DIR`` holding DIR/train/<class>/*.png
  and DIR/val/<class>/*.png (torchvision's ImageFolder layout).
* ``smoke`` -- generated shapes, a few steps (the registry-wide tests).

The measured table is in docs/RESULTS.md ("Transfer learning").
"""

from __future__ import annotations

import dataclasses
import os
import re

from shared_data.configs.base import (
    Check,
    ConfigError,
    ParamGroup,
    TrainConfig,
    at_least,
    between,
    existing_dir,
    field,
    layer_prefixes,
    one_of,
    pick_variant,
)
from shared_data.tasks import Task, classification

# name -> (block, blocks per stage), as torchvision.models.resnet18/34/50 build them
ARCHITECTURES = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}
MODELS = tuple(ARCHITECTURES)
DATASETS = ("cifar10", "folder", "shapes")
TRAINED = ("all", "head")  # head: a linear probe (body parameters and statistics frozen)
# torchvision's ImageNet presets normalise with these (weights.transforms()); the demo's own
# pretraining uses them too, so any of its checkpoints and ImageNet's take the same inputs.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BODY_GROUP = "body"  # every parameter but the head's


def weights_source() -> Check:
    """none, imagenet, a torchvision weights name, or a file or run folder that exists."""
    return Check(
        lambda v: (
            v in ("none", "imagenet")
            or re.fullmatch(r"\w+_Weights\.\w+", v) is not None
            or os.path.exists(os.path.expanduser(v))
        ),
        "none, imagenet, a torchvision weights name (ResNet18_Weights.IMAGENET1K_V1), "
        "a .pth state dict or a run folder",
        "/nonexistent/weights.pth",
    )


def class_indices() -> Check:
    """Distinct class indices >= 0 (empty: every class)."""
    return Check(
        lambda v: all(c >= 0 for c in v) and len(set(v)) == len(v),
        "distinct class indices >= 0 such as 5,6,7,8,9",
        "-1",
    )


@dataclasses.dataclass(frozen=True)
class TransferConfig(TrainConfig):
    """Hyperparameters of one transfer run; identical for both frameworks."""

    model: str = field("resnet18", one_of(*MODELS))
    dataset: str = field("cifar10", one_of(*DATASETS))
    classes: tuple[int, ...] = field((5, 6, 7, 8, 9), class_indices())  # kept, relabelled 0..k-1
    per_class: int | None = field(100, at_least(1))  # training examples a class (None: all)
    subset_seed: int = field(0, at_least(0))  # which per_class examples (fixed across seeds)
    image_folder: str | None = field(None, existing_dir())  # dataset=folder: train/ and val/
    image_size: int = field(32, between(16, 512))  # images are resized to this square
    weights: str = field("none", weights_source())  # the pretrained network (see the docstring)
    reinit: str = field("fc", layer_prefixes())  # layers of `weights` left at their fresh init
    train: str = field("all", one_of(*TRAINED))  # what trains: all, or the head alone
    body_lr_scale: float = field(1.0, between(0, 1e3))  # the body's lr x this (train=all)
    label_smoothing: float = field(0.0, between(0, 1))
    crop_padding: int = field(4, between(0, 16))  # training augmentation: crop and flip
    # JAX: convolutions over <= 4 output pixels as patches @ kernel (auto) or always XLA's
    # convolution (xla, 20-60x slower on XLA:CPU there; jaxpath/transfer/model.py: Conv)
    conv: str = field("auto", one_of("auto", "xla"))

    @property
    def num_classes(self) -> int:
        """Classes of the task: the kept ones, or every class folder."""
        if self.dataset == "folder" and not self.classes:
            from shared_data.imagefolder import class_names, split_dir

            return len(class_names(split_dir(self.image_folder, "train")))
        return len(self.classes) or 10

    def check(self) -> None:
        super().check()
        if self.dataset != "folder" and any(c > 9 for c in self.classes):
            raise ConfigError(
                f"field 'classes' wants indices of the 10 {self.dataset} classes (0-9), "
                f"got {self.classes}"
            )


def get_task(config: TransferConfig) -> Task:
    """Classification with random crop and flip (padding black, as on raw pixels)."""
    from shared_data.augment import black_pixel, cifar_augment

    return classification(
        augment=cifar_augment(
            padding=config.crop_padding,
            fill=black_pixel(IMAGENET_MEAN, IMAGENET_STD),
            seed=config.seed,
        )
    )


def param_group(config: TransferConfig, path: tuple[str, ...]) -> str | None:
    """The body group for every parameter but the `fc` head's (torch names, split)."""
    return None if path[0] == "fc" else BODY_GROUP


def param_groups(config: TransferConfig, steps_per_epoch: int) -> dict[str, ParamGroup]:
    """A frozen body for a linear probe, else the body at `body_lr_scale` x the lr."""
    del steps_per_epoch
    if config.train == "head":
        return {BODY_GROUP: ParamGroup(trainable=False)}
    return {BODY_GROUP: ParamGroup(lr_scale=config.body_lr_scale)}


def variants() -> dict[str, TransferConfig]:
    """Every named config: pretrain, probe, finetune, scratch, imagenet, folder and smoke."""
    few_shot = TransferConfig(
        classes=(5, 6, 7, 8, 9),
        per_class=100,
        augment=True,
        optimizer="sgd",
        momentum=0.9,
        nesterov=True,
        lr=0.01,
        weight_decay=5e-4,
        schedule="cosine",
        epochs=30,
        batch_size=50,
        eval_batch_size=500,
        log_every=10,
    )
    pretrain = dataclasses.replace(
        few_shot,
        classes=(0, 1, 2, 3, 4),
        per_class=None,
        lr=0.1,
        epochs=30,
        warmup_epochs=1,
        batch_size=128,
        log_every=50,
        checkpoint_every=100,
    )
    probe = dataclasses.replace(few_shot, train="head", lr=0.05)
    finetune = dataclasses.replace(few_shot, body_lr_scale=0.1)
    return {
        "default": finetune,
        "probe": probe,
        "finetune": finetune,
        "scratch": dataclasses.replace(few_shot, lr=0.05, epochs=60),
        "pretrain": pretrain,
        "imagenet": dataclasses.replace(probe, weights="imagenet", image_size=224),
        "folder": dataclasses.replace(few_shot, dataset="folder", classes=(), per_class=None),
        "smoke": dataclasses.replace(
            few_shot,
            dataset="shapes",
            classes=(0, 1, 2),
            per_class=16,
            limit_test=32,
            epochs=2,
            batch_size=16,
            eval_batch_size=32,
            log_every=1,
        ),
    }


def get_config(variant: str = "default") -> TransferConfig:
    """The config of one variant (see the module docstring)."""
    return pick_variant("transfer", variants(), variant)
