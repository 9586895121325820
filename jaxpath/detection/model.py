"""CenterNet-style detector in Flax Linen: a small ResNet, an FPN top-down path, two heads.

Read beside torchpath/detection/model.py: the same submodule names in the same order. The
body reuses CIFAR-10's ResNet blocks (jaxpath/cifar10/model.py): a stride-2 stem and three
stride-2 BasicBlocks (strides 4, 8, 16); 1x1 laterals and nearest-neighbour upsampling merge
them back to stride 4, where a 3x3 conv feeds a heatmap head (K class logits per cell) and a
box head (centre offset x, y and log width, height in cells). Inputs are NHWC float32 images
in [0, 1]; outputs are NHWC maps (N, H/4, W/4, K) and (N, H/4, W/4, 4).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxpath.cifar10.model import BasicBlock, ConvBN
from jaxpath.common.init import TorchConv, torch_kernel_init
from jaxpath.detection.boxes import decode_boxes, giou_loss, target_boxes
from shared_data.detection import STRIDE

PRIOR = 0.1  # the heatmap's initial probability (CenterNet's bias -2.19)


def upsample2(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2 upsampling of an NHWC map (torch's F.interpolate(scale_factor=2))."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class Head(nn.Module):
    """3x3 conv, ReLU, 1x1 conv to `features` outputs (bias initialised to `bias`, if set)."""

    features: int
    in_features: int
    hidden: int
    bias: float | None = None

    @nn.compact
    def __call__(self, x):
        x = nn.relu(TorchConv(self.hidden, self.in_features, 3, padding=1, name="conv")(x))
        if self.bias is None:
            return TorchConv(self.features, self.hidden, 1, name="out")(x)
        out = nn.Conv(
            self.features,
            (1, 1),
            kernel_init=torch_kernel_init,
            bias_init=nn.initializers.constant(self.bias),
            name="out",
        )
        return out(x)


class CenterNet(nn.Module):
    """ResNet body (stem + three BasicBlocks), FPN to stride 4, heatmap and box heads."""

    num_classes: int = 10
    channels: int = 1
    widths: tuple[int, ...] = (16, 32, 64, 128)
    fpn_width: int = 32
    head_width: int = 32
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = {"bn_momentum": self.bn_momentum, "bn_eps": self.bn_eps}
        w0, w1, w2, w3 = self.widths
        x = nn.relu(ConvBN(w0, self.channels, 3, 2, **bn, name="stem")(x, train))  # stride 2
        c1 = BasicBlock(w1, w0, 2, **bn, name="layer1")(x, train)  # stride 4
        c2 = BasicBlock(w2, w1, 2, **bn, name="layer2")(c1, train)  # stride 8
        c3 = BasicBlock(w3, w2, 2, **bn, name="layer3")(c2, train)  # stride 16
        f = self.fpn_width
        p3 = TorchConv(f, w3, 1, name="lateral3")(c3)
        p2 = TorchConv(f, w2, 1, name="lateral2")(c2) + upsample2(p3)
        p1 = TorchConv(f, w1, 1, name="lateral1")(c1) + upsample2(p2)
        p1 = nn.relu(TorchConv(f, f, 3, padding=1, name="smooth")(p1))
        prior = -math.log((1 - PRIOR) / PRIOR)
        heatmap = Head(self.num_classes, f, self.head_width, prior, name="heatmap_head")(p1)
        boxes = Head(4, f, self.head_width, name="box_head")(p1)
        return heatmap, boxes


MODELS = {"centernet": CenterNet}


def create_model(config) -> nn.Module:
    """The model named by `config.model`, configured from `config`."""
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; known: {', '.join(MODELS)}")
    return CenterNet(
        num_classes=config.num_classes,
        channels=config.channels,
        widths=tuple(config.widths),
        fpn_width=config.fpn_width,
        head_width=config.head_width,
        bn_momentum=config.bn_momentum,
        bn_eps=config.bn_eps,
    )


def dummy_input(config, batch_size: int = 1) -> jax.Array:
    """Zeros of the model's input shape (NHWC), for initialisation and tracing."""
    return jnp.zeros((batch_size, config.canvas, config.canvas, config.channels), jnp.float32)


def focal_loss(logits: jax.Array, heatmap: jax.Array) -> jax.Array:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), summed per image (N,).

    Cells where the target is exactly 1 are positives, -(1 - p)^2 log p; every other cell
    is a negative weighted down near a centre, -(1 - y)^4 p^2 log(1 - p). With 0/1 targets
    this is torchvision.ops.sigmoid_focal_loss(alpha=-1, gamma=2).
    """
    p = jax.nn.sigmoid(logits)
    positive = -jnp.square(1 - p) * jax.nn.log_sigmoid(logits)
    negative = -jnp.square(p) * (1 - heatmap) ** 4 * jax.nn.log_sigmoid(-logits)
    return jnp.sum(jnp.where(heatmap == 1.0, positive, negative), axis=(1, 2, 3))


def detection_terms(heatmap_logits, box_maps, batch) -> dict[str, jax.Array]:
    """Per-image loss terms (N,): focal, GIoU and offset L1 sums, and the object count."""
    n, _, width, _ = box_maps.shape
    valid = batch["valid"]
    boxes = decode_boxes(box_maps, batch["index"], STRIDE)
    giou = giou_loss(boxes, target_boxes(batch, width, STRIDE))
    raw = jnp.take_along_axis(box_maps.reshape(n, -1, 4), batch["index"][..., None], axis=1)
    offset = jnp.sum(jnp.abs(raw[..., :2] - batch["offset"]), -1)
    return {
        "focal": focal_loss(heatmap_logits, batch["heatmap"]),
        "giou": jnp.sum(jnp.where(valid > 0, giou, 0.0), -1),
        "offset": jnp.sum(offset * valid, -1),
        "objects": jnp.sum(valid, -1),
    }


def detection_sums(terms, options, mask=None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The loss (weighted terms per object of the batch) and the Task's metric sums.

    `options`: the config's StepOptions (the terms' weights).
    """
    if mask is not None:  # padded evaluation rows count for nothing
        terms = {k: v * mask for k, v in terms.items()}
    sums = {
        "focal_sum": jnp.sum(terms["focal"]),
        "giou_sum": jnp.sum(terms["giou"]),
        "offset_sum": jnp.sum(terms["offset"]),
        "objects": jnp.sum(terms["objects"]),
    }
    total = (
        sums["focal_sum"]
        + options.giou_weight * sums["giou_sum"]
        + options.offset_weight * sums["offset_sum"]
    )
    sums["loss_sum"] = total
    return total / jnp.maximum(sums["objects"], 1.0), sums
