"""VAE: pytorch/examples' and Flax's variational autoencoder (784-400-20 MLPs, Bernoulli decoder).

The metric is the negative ELBO in nats per example (reconstruction + KL), lower is better;
training batches are binarised dynamically, the test split once from a fixed seed with fixed
reparameterisation noise (shared_data/binarize.py). Variants (`get_config(variant)`),
measured 2026-11-29 on 2 CPU cores (docs/RESULTS.md):

* ``default`` -- offline, on scikit-learn's embedded digits upsampled to 28x28 (1,437 train /
  360 test), batch 32, 20 epochs: ``roadmap compare vae`` reaches a test loss of 172.9 (torch)
  / 172.2 (JAX) nats in 15 s for the whole command.
* ``mnist`` -- the pytorch/examples and Flax recipe: real MNIST, Adam 1e-3, batch 128,
  10 epochs: ``roadmap compare vae --variant mnist --data-dir ../shared/data`` reaches
  102.33 (torch) / 102.15 (JAX) nats (the Flax example reports about 104) in 25.3 s / 16.4 s
  of training on a quiet machine; 49 s for the whole command.
* ``smoke`` -- a few steps on synthetic data, for tests.

Each epoch writes ``images/samples_epoch<N>.png`` (64 decodings of fixed prior draws) and
``images/reconstructions_epoch<N>.png`` (8 test images above their reconstructions) into the run.
"""

from __future__ import annotations

import dataclasses
import functools

from shared_data.binarize import binarize_batch, fixed_test_split
from shared_data.configs.base import TrainConfig, at_least, field, one_of, pick_variant
from shared_data.tasks import Task

MODELS = ("mlp",)
DATASETS = ("mnist", "digits", "synthetic")


@dataclasses.dataclass(frozen=True)
class VaeConfig(TrainConfig):
    """Hyperparameters of one VAE run; identical for both frameworks."""

    model: str = field("mlp", one_of(*MODELS))  # MLP encoder and decoder (pytorch/examples)
    dataset: str = field("digits", one_of(*DATASETS))  # IDX files, embedded digits, synthetic
    hidden: int = field(400, at_least(1))  # width of the encoder's and decoder's hidden layer
    latents: int = field(20, at_least(1))  # dimension of z (the registry's noise field: 20)
    augment: bool = True  # dynamic binarisation of training batches (off: train on grey levels)


def get_task(config: VaeConfig) -> Task:
    """Negative ELBO and its two terms per example; augmentation is dynamic binarisation."""
    return Task(
        sums=("loss_sum", "recon_sum", "kl_sum", "count"),
        means={
            "loss": ("loss_sum", "count"),
            "recon": ("recon_sum", "count"),
            "kl": ("kl_sum", "count"),
        },
        headline="loss",
        higher_is_better=False,
        augment=binarize_batch,
        # A validation split is scored like the test split: binarised once, fixed noise.
        prepare_eval=functools.partial(fixed_test_split, latents=config.latents),
    )


def variants() -> dict[str, VaeConfig]:
    """Every named config: default, mnist and smoke."""
    base = VaeConfig()  # Adam 1e-3, constant: the TrainConfig defaults, as in both examples
    return {
        "default": dataclasses.replace(
            base, batch_size=32, epochs=20, eval_batch_size=360, log_every=20
        ),
        "mnist": dataclasses.replace(base, dataset="mnist", batch_size=128, epochs=10),
        "smoke": dataclasses.replace(
            base,
            dataset="synthetic",
            batch_size=32,
            epochs=2,
            eval_batch_size=64,
            limit_train=128,
            limit_test=64,
            log_every=2,
        ),
    }


def get_config(variant: str = "default") -> VaeConfig:
    """The config of one variant (see the module docstring)."""
    return pick_variant("vae", variants(), variant)
