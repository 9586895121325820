"""MNIST: an MLP, pytorch/examples' CNN and a lean CNN; SGD+momentum, Adam or Adadelta.

Variants (`get_config(variant)`), measured 2026-11-29 on 2 CPU cores (docs/RESULTS.md):

* ``default`` -- pytorch/examples' CNN (1.2M parameters), Adam with a one-cycle schedule
  peaking at 3e-3, batch 64, one epoch:
  ``roadmap compare mnist --epochs 1 --data-dir ../shared/data`` reaches 98.60% (torch) /
  98.59% (JAX) test accuracy in 24.9 s / 24.5 s of training (under the stock runtime,
  ``roadmap --runtime stock ... --set pool=reduce_window``: 33 s / 125 s).
* ``examples`` -- pytorch/examples' own recipe (Adadelta lr 1.0, x0.7 per epoch, 14 epochs);
  one epoch of it gives 98.54% / 98.46%.
* ``fast`` -- the quickest recipe to 99.0% here: FastCNN(16, 32), Adam one-cycle 5e-3,
  batch 128, two epochs: ``roadmap compare mnist --variant fast --data-dir ../shared/data``
  reaches 99.10% / 99.17% in 8.1-8.5 s / 8.5-9.4 s, compilation included, once JAX's
  compilation cache is warm (12.2 s for JAX's very first run; 36 s under the stock runtime;
  docs/BENCHMARKS.md).
* ``digits`` -- the offline quickstart on scikit-learn's embedded digits:
  ``roadmap compare mnist --variant digits`` reaches about 98.6-98.9% in ~30 s in all.
* ``smoke`` -- a few steps on synthetic data, for tests.
"""

from __future__ import annotations

import dataclasses

from shared_data.batches import random_shift
from shared_data.configs.base import ConfigError, TrainConfig, field, one_of, pick_variant, widths
from shared_data.tasks import Task, classification

MODELS = ("mlp", "cnn", "fastcnn")
DATASETS = ("mnist", "digits", "synthetic")


@dataclasses.dataclass(frozen=True)
class MnistConfig(TrainConfig):
    """Hyperparameters of one MNIST run; identical for both frameworks."""

    model: str = field("cnn", one_of(*MODELS))  # mlp, cnn (pytorch/examples), fastcnn (speed)
    dataset: str = field("mnist", one_of(*DATASETS))  # IDX files, embedded digits, synthetic
    dropout: bool = True  # the CNN's two dropout layers (0.25, 0.5)
    hidden: tuple[int, ...] = field((256, 128), widths())  # MLP hidden widths
    conv_widths: tuple[int, ...] = field((32, 64), widths(2))  # FastCNN's two conv widths
    # JAX's 2x2 max-pool: reshape + max (fast on XLA:CPU) or nn.max_pool's reduce_window
    # (stock; its gradient is select_and_scatter). Same values and gradients; torch ignores it.
    pool: str = field("reshape", one_of("reshape", "reduce_window"))
    # JAX only: Flax Linen (explicit params, pure step) or Flax NNX (stateful objects under
    # nnx.jit; the CNN only) -- docs/STYLES.md. The same function either way; torch refuses nnx.
    style: str = field("linen", one_of("linen", "nnx"))

    def check(self) -> None:
        """Rules across fields: the NNX style exists for the CNN only."""
        super().check()
        if self.style == "nnx" and self.model != "cnn":
            raise ConfigError(
                f"field 'style': nnx is written for model 'cnn' only, got {self.model!r}"
            )


def get_task(config: MnistConfig) -> Task:
    """Classification; augmentation is shared_data's random +-2 px shift."""
    return classification(augment=random_shift)


def variants() -> dict[str, MnistConfig]:
    """Every named config: default, examples, fast, digits and smoke."""
    # Adam one-cycle peaking at 3e-3 (the TrainConfig defaults are Adam 1e-3, constant).
    base = MnistConfig(lr=3e-3, schedule="onecycle")
    variants = {
        "default": base,
        # pytorch/examples/mnist's own recipe, for reference (14 epochs there).
        "examples": dataclasses.replace(
            base, optimizer="adadelta", lr=1.0, schedule="step", gamma=0.7, epochs=14
        ),
        "fast": dataclasses.replace(
            base,
            model="fastcnn",
            conv_widths=(16, 32),
            optimizer="adam",
            lr=5e-3,
            schedule="onecycle",
            batch_size=128,
            epochs=2,
            dropout=False,
            log_every=200,
        ),
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
    return variants


def get_config(variant: str = "default") -> MnistConfig:
    """The config of one variant (see the module docstring)."""
    return pick_variant("mnist", variants(), variant)
