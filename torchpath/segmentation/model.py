"""Segmentation model in PyTorch: a small U-Net (Ronneberger et al. 2015) with GroupNorm.

Read beside jaxpath/segmentation/model.py: the same block class (ConvBlock), the same
submodule names (enc0.., up0.., dec0.., head), the same order. Inputs are NCHW float32
images [N, C, H, W]; outputs are per-pixel logits [N, classes, H, W]. GroupNorm rather than
BatchNorm: it keeps no running statistics, so a recomputed block (checkpoint) is exactly
the block that ran (a checkpointed BatchNorm would update its statistics twice).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class ConvBlock(nn.Module):
    """Two (3x3 conv, GroupNorm, ReLU) layers: the unit of every U-Net level."""

    def __init__(self, in_features: int, features: int, groups: int):
        super().__init__()
        # No conv biases: the GroupNorm after each conv subtracts them again.
        self.conv1 = nn.Conv2d(in_features, features, 3, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(groups, features, eps=1e-5)  # PARITY: Flax's default is 1e-6
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(groups, features, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Two conv-norm-ReLU layers; the spatial size is kept."""
        x = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(x)))


def up_conv(in_features: int, features: int) -> nn.ConvTranspose2d:
    """2x2 stride-2 transposed conv: doubles the height and width."""
    return nn.ConvTranspose2d(in_features, features, 2, stride=2)


class UNet(nn.Module):
    """Encoder of ConvBlocks and 2x2 max pools, decoder of up-convs and skip concatenations."""

    def __init__(
        self,
        widths: Sequence[int] = (8, 16, 32, 64),
        in_channels: int = 1,
        num_classes: int = 11,
        groups: int = 4,
        remat: str = "none",
    ):
        super().__init__()
        self.widths, self.remat = tuple(widths), remat
        in_features = in_channels
        for level, features in enumerate(self.widths):
            self.add_module(f"enc{level}", ConvBlock(in_features, features, groups))
            in_features = features
        for level in reversed(range(len(self.widths) - 1)):
            features = self.widths[level]
            self.add_module(f"up{level}", up_conv(in_features, features))
            self.add_module(f"dec{level}", ConvBlock(2 * features, features, groups))
            in_features = features
        self.head = nn.Conv2d(in_features, num_classes, 1)

    def _block(self, name: str, x: torch.Tensor) -> torch.Tensor:
        block = getattr(self, name)
        if self.remat == "blocks" and torch.is_grad_enabled():
            # PARITY: Flax wraps the module class in nn.remat; here each call is checkpointed
            # (the non-reentrant form, which torch recommends and torch.compile traces).
            return checkpoint(block, x, use_reentrant=False)
        return block(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, classes, H, W] of images [N, C, H, W]."""
        skips = []
        for level in range(len(self.widths)):
            if level:
                x = F.max_pool2d(x, 2)
            x = self._block(f"enc{level}", x)
            skips.append(x)
        for level in reversed(range(len(self.widths) - 1)):
            x = getattr(self, f"up{level}")(x)
            x = torch.cat([skips[level], x], dim=1)  # PARITY: channels first; Flax: axis -1
            x = self._block(f"dec{level}", x)
        return self.head(x)


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


def segmentation_terms(
    logits, labels, dice_weight: float, background_weight: float = 1.0
) -> torch.Tensor:
    """Per-image (loss, CE, soft Dice) [3, N] of logits [N, K, H, W] and labels [N, H, W].

    The CE is each image's weighted mean over its pixels, background pixels (label 0)
    weighing `background_weight` and object pixels 1 (F.cross_entropy's `weight`, per image).
    """
    log_probs = F.log_softmax(logits, dim=1)
    nll = F.nll_loss(log_probs, labels, reduction="none")
    weights = torch.where(labels == 0, background_weight, 1.0).to(logits.dtype)
    ce = torch.sum(weights * nll, dim=(1, 2)) / torch.sum(weights, dim=(1, 2))
    probs = log_probs.exp()
    one_hot = F.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
    # Soft Dice per image and class, averaged over the classes the image holds: counting
    # absent classes too rewards putting every object pixel in one class (training collapsed
    # to a single digit that way); the cross-entropy penalises absent classes.
    intersection = torch.sum(probs * one_hot, dim=(2, 3))
    area = torch.sum(one_hot, dim=(2, 3))
    dice = (2.0 * intersection + 1.0) / (torch.sum(probs, dim=(2, 3)) + area + 1.0)
    present = (area > 0).to(logits.dtype)
    dice = torch.sum(dice * present, dim=-1) / torch.sum(present, dim=-1)
    return torch.stack([ce + dice_weight * (1.0 - dice), ce, dice])


def segmentation_sums(terms, logits, labels, mask=None) -> dict[str, torch.Tensor]:
    """Metric sums of a batch: loss, CE and Dice per image, correct and counted pixels."""
    weights = torch.ones(labels.shape[0]) if mask is None else mask.float()
    correct = torch.sum(torch.argmax(logits, dim=1) == labels, dim=(1, 2))
    pixels = labels.shape[1] * labels.shape[2]
    return {
        "loss_sum": torch.sum(terms[0] * weights),
        "ce_sum": torch.sum(terms[1] * weights),
        "dice_sum": torch.sum(terms[2] * weights),
        "correct": torch.sum(correct * weights),
        "pixels": torch.sum(weights) * pixels,
        "count": torch.sum(weights),
    }
