"""CenterNet-style detector in PyTorch: a small ResNet, an FPN top-down path, two heads.

Read beside jaxpath/detection/model.py: the same submodule names in the same order. The
body reuses CIFAR-10's ResNet blocks (torchpath/cifar10/model.py): a stride-2 stem and three
stride-2 BasicBlocks (strides 4, 8, 16); 1x1 laterals and nearest-neighbour upsampling merge
them back to stride 4, where a 3x3 conv feeds a heatmap head (K class logits per cell) and a
box head (centre offset x, y and log width, height in cells). Inputs are NCHW float32 images
in [0, 1]; outputs are NHWC maps (N, H/4, W/4, K) and (N, H/4, W/4, 4), as JAX's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from shared_data.detection import STRIDE
from torchpath.cifar10.model import BasicBlock, ConvBN
from torchpath.detection.boxes import decode_boxes, giou_loss, target_boxes

PRIOR = 0.1  # the heatmap's initial probability (CenterNet's bias -2.19)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 upsampling of an NCHW map."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


class Head(nn.Module):
    """3x3 conv, ReLU, 1x1 conv to `features` outputs (bias initialised to `bias`, if set)."""

    def __init__(self, in_features: int, features: int, hidden: int, bias: float | None = None):
        super().__init__()
        self.conv = nn.Conv2d(in_features, hidden, 3, padding=1)
        self.out = nn.Conv2d(hidden, features, 1)
        if bias is not None:
            nn.init.constant_(self.out.bias, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.conv(x)))


class CenterNet(nn.Module):
    """ResNet body (stem + three BasicBlocks), FPN to stride 4, heatmap and box heads."""

    def __init__(
        self,
        num_classes: int = 10,
        channels: int = 1,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        fpn_width: int = 32,
        head_width: int = 32,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
    ):
        super().__init__()
        bn = {"bn_momentum": bn_momentum, "bn_eps": bn_eps}
        w0, w1, w2, w3 = widths
        self.stem = ConvBN(channels, w0, 3, 2, **bn)
        self.layer1 = BasicBlock(w0, w1, 2, **bn)
        self.layer2 = BasicBlock(w1, w2, 2, **bn)
        self.layer3 = BasicBlock(w2, w3, 2, **bn)
        f = fpn_width
        self.lateral3 = nn.Conv2d(w3, f, 1)
        self.lateral2 = nn.Conv2d(w2, f, 1)
        self.lateral1 = nn.Conv2d(w1, f, 1)
        self.smooth = nn.Conv2d(f, f, 3, padding=1)
        prior = -math.log((1 - PRIOR) / PRIOR)
        self.heatmap_head = Head(f, num_classes, head_width, prior)
        self.box_head = Head(f, 4, head_width)
        self.flattened_inputs: dict[str, tuple[int, int, int]] = {}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap logits (N, H/4, W/4, K) and box maps (N, H/4, W/4, 4) of NCHW images."""
        x = F.relu(self.stem(x))  # stride 2
        c1 = self.layer1(x)  # stride 4
        c2 = self.layer2(c1)  # stride 8
        c3 = self.layer3(c2)  # stride 16
        p3 = self.lateral3(c3)
        p2 = self.lateral2(c2) + upsample2(p3)
        p1 = self.lateral1(c1) + upsample2(p2)
        p1 = F.relu(self.smooth(p1))
        heatmap, boxes = self.heatmap_head(p1), self.box_head(p1)
        # PARITY: NCHW -> NHWC, so targets, flat cell indices and decoding match JAX's.
        return heatmap.permute(0, 2, 3, 1), boxes.permute(0, 2, 3, 1)


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


def dummy_input(config, batch_size: int = 1) -> torch.Tensor:
    """Zeros of the model's input shape (NCHW), for tracing."""
    return torch.zeros(batch_size, config.channels, config.canvas, config.canvas)


def focal_loss(logits: torch.Tensor, heatmap: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), summed per image (N,).

    Cells where the target is exactly 1 are positives, -(1 - p)^2 log p; every other cell
    is a negative weighted down near a centre, -(1 - y)^4 p^2 log(1 - p). With 0/1 targets
    this is torchvision.ops.sigmoid_focal_loss(alpha=-1, gamma=2).
    """
    p = torch.sigmoid(logits)
    positive = -torch.square(1 - p) * F.logsigmoid(logits)
    negative = -torch.square(p) * (1 - heatmap) ** 4 * F.logsigmoid(-logits)
    return torch.sum(torch.where(heatmap == 1.0, positive, negative), dim=(1, 2, 3))


def detection_terms(heatmap_logits, box_maps, batch) -> dict[str, torch.Tensor]:
    """Per-image loss terms (N,): focal, GIoU and offset L1 sums, and the object count."""
    n, _, width, _ = box_maps.shape
    valid = batch["valid"]
    boxes = decode_boxes(box_maps, batch["index"], STRIDE)
    giou = giou_loss(boxes, target_boxes(batch, width, STRIDE))
    index = batch["index"].long()[..., None].expand(-1, -1, 4)  # PARITY: gather wants int64
    raw = torch.gather(box_maps.reshape(n, -1, 4), 1, index)
    offset = torch.sum(torch.abs(raw[..., :2] - batch["offset"]), -1)
    return {
        "focal": focal_loss(heatmap_logits, batch["heatmap"]),
        "giou": torch.sum(torch.where(valid > 0, giou, 0.0), -1),
        "offset": torch.sum(offset * valid, -1),
        "objects": torch.sum(valid, -1),
    }


def detection_sums(terms, options, mask=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss (weighted terms per object of the batch) and the Task's metric sums.

    `options`: the config's StepOptions (the terms' weights).
    """
    if mask is not None:  # padded evaluation rows count for nothing
        terms = {k: v * mask for k, v in terms.items()}
    sums = {
        "focal_sum": torch.sum(terms["focal"]),
        "giou_sum": torch.sum(terms["giou"]),
        "offset_sum": torch.sum(terms["offset"]),
        "objects": torch.sum(terms["objects"]),
    }
    total = (
        sums["focal_sum"]
        + options.giou_weight * sums["giou_sum"]
        + options.offset_weight * sums["offset_sum"]
    )
    sums["loss_sum"] = total
    return total / torch.clamp(sums["objects"], min=1.0), sums
