"""MNIST: an MLP and pytorch/examples' CNN, trained with SGD+momentum, Adam or Adadelta.

Variants (`get_config(variant)`):

* ``default`` -- pytorch/examples' recipe: CNN, Adadelta lr 1.0 decayed x0.7 each epoch,
  batch 64.  ``roadmap compare mnist --model cnn --epochs 1 --data-dir ../shared/data``
  reaches 98.9% (torch) / 98.9% (JAX) test accuracy after one epoch; see docs/RESULTS.md
  for the measured table and times.
* ``fast`` -- the fastest recipe to 99.0% here (see docs/BENCHMARKS.md):
  ``roadmap compare mnist --variant fast --data-dir ../shared/data``.
* ``digits`` -- the offline quickstart on scikit-learn's embedded digits (no download).
* ``smoke`` -- a few steps on synthetic data, for tests.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class MnistConfig:
    """Hyperparameters of one MNIST run; identical for both frameworks."""

    model: str = "cnn"  # "mlp", "cnn" (pytorch/examples) or "fastcnn" (the speed recipe)
    dataset: str = "mnist"  # "mnist" (IDX files), "digits" (embedded), "synthetic"
    data_dir: str | None = None  # None: $ROADMAP_DATA_DIR, then the cache
    download: bool = False  # fetch MNIST from its mirrors if it is nowhere local
    limit_train: int | None = None  # keep the first N training examples (smoke runs)
    limit_test: int | None = None  # keep the first N test examples
    val_size: int = 0  # hold out this many training examples as a validation split
    epochs: int = 1
    batch_size: int = 64
    eval_batch_size: int = 1000
    optimizer: str = "adam"  # "sgd" (with momentum), "adam" or "adadelta"
    lr: float = 3e-3  # peak learning rate
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 0.0  # L2 added to the gradient (torch.optim semantics)
    schedule: str = "onecycle"  # "constant", "step" (x gamma each epoch), "onecycle", "cosine"
    gamma: float = 0.7  # decay per epoch of the "step" schedule
    warmup_epochs: float = 0.0  # linear warm-up of the "cosine" schedule
    dropout: bool = True  # the CNN's two dropout layers (0.25, 0.5)
    augment: bool = False  # random +-2 px shifts of training images
    hidden: tuple[int, ...] = (256, 128)  # MLP hidden widths
    conv_widths: tuple[int, ...] = (32, 64)  # FastCNN's two conv widths
    seed: int = 1  # initial weights, data order, dropout masks
    log_every: int = 100  # steps between train-metric log lines
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints; 0: end of epoch only
    max_steps: int | None = None  # stop after this many steps in all (tests)


def get_config(variant: str = "default") -> MnistConfig:
    """The config of one variant: default, fast, digits or smoke."""
    base = MnistConfig()
    variants = {
        "default": base,
        # pytorch/examples/mnist's own recipe, for reference (14 epochs there).
        "examples": dataclasses.replace(
            base, optimizer="adadelta", lr=1.0, schedule="step", gamma=0.7, epochs=14),
        "fast": dataclasses.replace(
            base, model="fastcnn", conv_widths=(16, 32), optimizer="adam", lr=5e-3,
            schedule="onecycle", batch_size=128, epochs=2, dropout=False, log_every=200),
        "digits": dataclasses.replace(
            base,
            dataset="digits",
            model="cnn",
            optimizer="adam",
            lr=1e-3,
            schedule="constant",
            batch_size=32,
            epochs=8,
            eval_batch_size=360,
            log_every=20,
        ),
        "smoke": dataclasses.replace(
            base,
            dataset="synthetic",
            model="cnn",
            optimizer="adam",
            lr=1e-3,
            schedule="constant",
            batch_size=32,
            epochs=2,
            eval_batch_size=64,
            limit_train=256,
            limit_test=128,
            log_every=4,
        ),
    }
    if variant not in variants:
        raise KeyError(f"unknown mnist variant {variant!r}; known: {', '.join(variants)}")
    return variants[variant]
