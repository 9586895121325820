"""Segmentation model in Flax Linen: a small U-Net (Ronneberger et al. 2015) with GroupNorm.

Read beside torchpath/segmentation/model.py: the same block class (ConvBlock), the same
submodule names (enc0.., up0.., dec0.., head), the same order. Inputs are NHWC float32
images [N, H, W, C]; outputs are per-pixel logits [N, H, W, classes]. GroupNorm rather than
BatchNorm: it keeps no running statistics, so a recomputed block (remat) is exactly the
block that ran, in both frameworks (torch's checkpoint would update BatchNorm's statistics
twice).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxpath.common.init import TorchConv, torch_bias_init, torch_kernel_init
from jaxpath.common.pooling import max_pool_2x2


class ConvBlock(nn.Module):
    """Two (3x3 conv, GroupNorm, ReLU) layers: the unit of every U-Net level."""

    features: int
    in_features: int
    groups: int

    @nn.compact
    def __call__(self, x):
        # No conv biases: the GroupNorm after each conv subtracts them again (and their
        # gradients, zero up to rounding, make Adam's first steps differ between frameworks).
        conv = functools.partial(TorchConv, kernel_size=3, padding=1, use_bias=False)
        x = conv(self.features, self.in_features, name="conv1")(x)
        # PARITY: torch's GroupNorm epsilon is 1e-5 (Flax: 1e-6) and it computes the variance
        # as the mean of squared deviations (Flax's fast variance is E[x^2] - E[x]^2).
        x = nn.relu(self._norm("norm1")(x))
        x = conv(self.features, self.features, name="conv2")(x)
        return nn.relu(self._norm("norm2")(x))

    def _norm(self, name: str) -> nn.GroupNorm:
        return nn.GroupNorm(
            num_groups=self.groups, epsilon=1e-5, use_fast_variance=False, name=name
        )


def up_conv(features: int, in_features: int, name: str) -> nn.ConvTranspose:
    """2x2 stride-2 transposed conv initialised and padded like torch's ConvTranspose2d."""
    # PARITY: torch's ConvTranspose2d(k=2, s=2, p=0) is Flax's with padding k-1-p = 1 per
    # side and transpose_kernel=True (comparisons/weights.py); torch's fan-in for the init
    # is out_channels x k x k, which variance_scaling reads from the kernel [k, k, O, I].
    return nn.ConvTranspose(
        features,
        (2, 2),
        strides=(2, 2),
        padding=((1, 1), (1, 1)),
        transpose_kernel=True,
        kernel_init=torch_kernel_init,
        bias_init=torch_bias_init(features * 2 * 2),
        name=name,
    )


class UNet(nn.Module):
    """Encoder of ConvBlocks and 2x2 max pools, decoder of up-convs and skip concatenations."""

    widths: Sequence[int] = (8, 16, 32, 64)
    in_channels: int = 1
    num_classes: int = 11
    groups: int = 4
    remat: str = "none"  # "blocks": recompute each ConvBlock's activations in the backward

    @nn.compact
    def __call__(self, x):
        # nn.remat wraps the module class: its activations are recomputed, not stored.
        block = nn.remat(ConvBlock) if self.remat == "blocks" else ConvBlock
        skips, in_features = [], self.in_channels
        for level, features in enumerate(self.widths):
            if level:
                x = max_pool_2x2(x)
            x = block(features, in_features, self.groups, name=f"enc{level}")(x)
            skips.append(x)
            in_features = features
        for level in reversed(range(len(self.widths) - 1)):
            features = self.widths[level]
            x = up_conv(features, in_features, name=f"up{level}")(x)
            # PARITY: channels last; torch concatenates the same maps along dim 1.
            x = jnp.concatenate([skips[level], x], axis=-1)
            x = block(features, 2 * features, self.groups, name=f"dec{level}")(x)
            in_features = features
        return TorchConv(self.num_classes, in_features, 1, name="head")(x)


MODELS = {"unet": UNet}


def create_model(config) -> nn.Module:
    """The model named by `config.model`, configured from `config`."""
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; known: {', '.join(MODELS)}")
    return UNet(
        widths=tuple(config.widths),
        in_channels=config.channels,
        num_classes=config.num_classes,
        groups=config.groups,
        remat=config.remat,
    )


def dummy_input(config, batch_size: int = 1) -> jax.Array:
    """Zeros of the model's input shape [N, canvas, canvas, channels], for initialisation."""
    return jnp.zeros((batch_size, config.canvas, config.canvas, config.channels), jnp.float32)


def segmentation_terms(logits, labels, dice_weight: float, background_weight: float = 1.0):
    """Per-image (loss, CE, soft Dice) [3, N] of logits [N, H, W, K] and labels [N, H, W].

    The CE is each image's weighted mean over its pixels, background pixels (label 0)
    weighing `background_weight` and object pixels 1 (torch's `cross_entropy(weight=...)`).
    """
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    nll = -jnp.sum(one_hot * log_probs, axis=-1)
    weights = jnp.where(labels == 0, background_weight, 1.0).astype(logits.dtype)
    ce = jnp.sum(weights * nll, axis=(1, 2)) / jnp.sum(weights, axis=(1, 2))
    probs = jnp.exp(log_probs)
    # Soft Dice per image and class, averaged over the classes the image holds: counting
    # absent classes too rewards putting every object pixel in one class (training collapsed
    # to a single digit that way); the cross-entropy penalises absent classes.
    intersection = jnp.sum(probs * one_hot, axis=(1, 2))
    area = jnp.sum(one_hot, axis=(1, 2))
    dice = (2.0 * intersection + 1.0) / (jnp.sum(probs, axis=(1, 2)) + area + 1.0)
    present = (area > 0).astype(logits.dtype)
    dice = jnp.sum(dice * present, axis=-1) / jnp.sum(present, axis=-1)
    return jnp.stack([ce + dice_weight * (1.0 - dice), ce, dice])


def segmentation_sums(terms, logits, labels, mask=None) -> dict[str, jax.Array]:
    """Metric sums of a batch: loss, CE and Dice per image, correct and counted pixels."""
    weights = jnp.ones(labels.shape[0], jnp.float32) if mask is None else mask.astype(jnp.float32)
    correct = jnp.sum(jnp.argmax(logits, axis=-1) == labels, axis=(1, 2))
    pixels = labels.shape[1] * labels.shape[2]
    return {
        "loss_sum": jnp.sum(terms[0] * weights),
        "ce_sum": jnp.sum(terms[1] * weights),
        "dice_sum": jnp.sum(terms[2] * weights),
        "correct": jnp.sum(correct * weights),
        "pixels": jnp.sum(weights) * pixels,
        "count": jnp.sum(weights),
    }
