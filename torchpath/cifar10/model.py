"""CIFAR-10 models in PyTorch: the blitz's small CNN, ResNet-18 and an airbench-style net.

Read beside jaxpath/cifar10/model.py: the same block classes (ConvBN, BasicBlock,
ConvGroup), the same submodule names, the same order. Inputs are NCHW float32 images
[N, 3, 32, 32]; outputs are logits [N, 10]. bf16 compute (`--set precision=bf16`) is
torch.autocast around the step (torchpath/cifar10/train.py), not a module setting.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv(in_features, features, kernel, *, stride=1, padding=1, bias=False) -> nn.Conv2d:
    """Conv2d without a bias (BatchNorm follows)."""
    return nn.Conv2d(in_features, features, kernel, stride, padding, bias=bias)


def batch_norm(features: int, momentum: float, eps: float) -> nn.BatchNorm2d:
    """BatchNorm2d with the config's momentum and epsilon, set explicitly."""
    # PARITY: jaxpath/common/batchnorm.py takes the same torch-convention momentum.
    return nn.BatchNorm2d(features, momentum=momentum, eps=eps)


def dirac_init(layer: nn.Conv2d) -> nn.Conv2d:
    """torch's default init, then dirac_ on the first in-channels filters (airbench)."""
    with torch.no_grad():
        weight = layer.weight  # OIHW
        torch.nn.init.dirac_(weight[: weight.shape[1]])
    return layer


class SmallCNN(nn.Module):
    """The 60-minute blitz's CIFAR net: conv6-pool-conv16-pool-fc120-fc84-fc10."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)  # 32 -> 28
        self.conv2 = nn.Conv2d(6, 16, 5)  # 14 -> 10
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        # fc1 reads a flattened (C, H, W) map; comparisons/weights.py permutes its rows.
        self.flattened_inputs = {"fc1": (16, 5, 5)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, 10] of images [N, 3, 32, 32]."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # 14
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # 5
        x = torch.flatten(x, 1)  # PARITY: (c, h, w) order; Flax flattens (h, w, c).
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class ConvBN(nn.Module):
    """conv (no bias) then BatchNorm: ResNet's unit and its projection shortcut."""

    def __init__(self, in_features, features, kernel=3, stride=1, bn_momentum=0.1, bn_eps=1e-5):
        super().__init__()
        self.conv = conv(in_features, features, kernel, stride=stride, padding=kernel // 2)
        self.bn = batch_norm(features, bn_momentum, bn_eps)
        # WORKAROUND (torch 2.14.1, oneDNN on AVX2 CPUs without AVX-512): the weight gradient
        # of a strided 1x1 conv with 2-7 input channels corrupts the heap when its input is
        # channels_last (jit_avx2_1x1_convolution_bwd_weights_t; docs/TROUBLESHOOTING.md).
        # One-channel images reach the model channels_last (to_layout), so the detection
        # smoke model's first shortcut hit it. Such a conv gets a plain NCHW input instead.
        self.nchw_input = kernel == 1 and stride > 1 and in_features < 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.nchw_input:
            x = x.contiguous(memory_format=torch.contiguous_format)
        return self.bn(self.conv(x))


class BasicBlock(nn.Module):
    """ResNet's basic block: conv-bn-relu-conv-bn plus the (projected) input, then relu."""

    def __init__(self, in_features, features, stride=1, bn_momentum=0.1, bn_eps=1e-5):
        super().__init__()
        self.conv1 = conv(in_features, features, 3, stride=stride)
        self.bn1 = batch_norm(features, bn_momentum, bn_eps)
        self.conv2 = conv(features, features, 3)
        self.bn2 = batch_norm(features, bn_momentum, bn_eps)
        self.shortcut = None
        if stride != 1 or in_features != features:
            self.shortcut = ConvBN(in_features, features, 1, stride, bn_momentum, bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.shortcut(x) if self.shortcut is not None else x))


class ResNet18(nn.Module):
    """kuangliu's CIFAR ResNet-18: a 3x3 stem (no max-pool), four stages of two blocks."""

    def __init__(self, num_classes: int = 10, bn_momentum: float = 0.1, bn_eps: float = 1e-5):
        super().__init__()
        self.conv1 = conv(3, 64, 3)
        self.bn1 = batch_norm(64, bn_momentum, bn_eps)
        in_features = 64
        for stage, (features, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2))):
            blocks = nn.Sequential(  # named "0" and "1", as the Flax Stage names them
                BasicBlock(in_features, features, stride, bn_momentum, bn_eps),
                BasicBlock(features, features, 1, bn_momentum, bn_eps),
            )
            self.add_module(f"layer{stage + 1}", blocks)
            in_features = features
        self.linear = nn.Linear(512, num_classes)
        self.flattened_inputs: dict[str, tuple[int, int, int]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, 10] of images [N, 3, 32, 32]."""
        x = F.relu(self.bn1(self.conv1(x)))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
        x = torch.mean(x, dim=(2, 3))  # 4x4 average pool
        return self.linear(x)


class ConvGroup(nn.Module):
    """airbench's group: conv-pool-bn-gelu-conv-bn-gelu, convs identity-initialised."""

    def __init__(self, in_features, features, bn_momentum=0.6, bn_eps=1e-12):
        super().__init__()
        self.conv1 = dirac_init(conv(in_features, features, 3))
        self.norm1 = batch_norm(features, bn_momentum, bn_eps)
        self.conv2 = dirac_init(conv(features, features, 3))
        self.norm2 = batch_norm(features, bn_momentum, bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv1(x), 2)  # floors odd sizes: 31 -> 15
        x = F.gelu(self.norm1(x))
        return F.gelu(self.norm2(self.conv2(x)))


class SpeedrunNet(nn.Module):
    """airbench94's net: 2x2 whitening conv, three ConvGroups, global max-pool, linear / 9."""

    def __init__(
        self,
        widths: Sequence[int] = (64, 256, 256),
        num_classes: int = 10,
        bn_momentum: float = 0.6,
        bn_eps: float = 1e-12,
    ):
        super().__init__()
        # Weights set from the training images (shared_data/whitening.py) and frozen.
        self.whiten = nn.Conv2d(3, 24, 2, padding=0)  # 32 -> 31
        in_features = 24
        for i, width in enumerate(widths):
            self.add_module(
                f"group{i + 1}", ConvGroup(in_features, width, bn_momentum, bn_eps)
            )  # 31 -> 15 -> 7 -> 3
            in_features = width
        self.num_groups = len(widths)
        self.head = nn.Linear(in_features, num_classes, bias=False)
        self.flattened_inputs: dict[str, tuple[int, int, int]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, 10] of images [N, 3, 32, 32]."""
        x = F.gelu(self.whiten(x))
        for i in range(self.num_groups):
            x = getattr(self, f"group{i + 1}")(x)
        x = torch.amax(x, dim=(2, 3))  # MaxPool2d(3) over the 3x3 map
        return self.head(x) / 9.0  # airbench's scaling_factor


MODELS = {"smallcnn": SmallCNN, "resnet18": ResNet18, "speedrun": SpeedrunNet}


def create_model(config) -> nn.Module:
    """The model named by `config.model`, configured from `config`."""
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; known: {', '.join(MODELS)}")
    bn = {"bn_momentum": config.bn_momentum, "bn_eps": config.bn_eps}
    if config.model == "smallcnn":
        return SmallCNN()
    if config.model == "resnet18":
        return ResNet18(**bn)
    return SpeedrunNet(widths=tuple(config.widths), **bn)


def input_shape(batch_size: int) -> tuple[int, ...]:
    """Shape of a model input batch in this framework's layout (NCHW)."""
    return (batch_size, 3, 32, 32)


def dummy_input(batch_size: int = 1) -> torch.Tensor:
    """Zeros of the model's input shape, for initialisation and tracing."""
    return torch.zeros(input_shape(batch_size), dtype=torch.float32)


def output_float32(logits: torch.Tensor) -> torch.Tensor:
    """Logits in float32 whatever the compute dtype (losses and metrics want float32)."""
    return logits.float()
