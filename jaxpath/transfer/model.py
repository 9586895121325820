"""torchvision's ResNet-18/34/50 in Flax Linen: the same function, the same variable names.

Read beside torchpath/transfer/model.py, which *is* torchvision's class. Everything that
decides the function is set here to torchvision's choice, so that a torchvision state dict
ported by comparisons/weights.py computes the same outputs:

- the stem: a 7x7 stride-2 convolution (padding 3, no bias), BatchNorm, ReLU, then a 3x3
  stride-2 max-pool with padding 1 (padded with -inf, as torch's MaxPool2d does);
- ResNet v1.5: a Bottleneck strides in its 3x3 convolution (conv2), not in the first 1x1;
- the projection shortcut `downsample` (1x1 conv with the block's stride, then BatchNorm) is
  made when the stride or the width changes, and named "0" and "1" as nn.Sequential names it;
- BatchNorm with torch's momentum 0.1 and epsilon 1e-5 (jaxpath/common/batchnorm.py);
- global average pooling, then `fc`.

`frozen_bn=True` keeps every BatchNorm on its running statistics even when training (the
body of a linear probe): the statistics then never change, and the function is the one the
pretrained network computes in eval mode. torch's twin does the same by keeping those
modules in eval mode.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxpath.common.batchnorm import BatchNorm
from jaxpath.common.init import TorchDense
from shared_data.configs.transfer import ARCHITECTURES

# PARITY: torchvision initialises convolutions with kaiming_normal_(mode="fan_out",
# nonlinearity="relu"): a normal of variance 2 / (out_channels * kh * kw).
kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


CONV_FORMULATIONS = ("auto", "xla")
SMALL_MAP = 4  # at most this many output pixels: "auto" convolves as patches @ kernel


def conv(features, in_features, kernel, stride=1, formulation="auto", name=""):
    """torchvision's conv: no bias (BatchNorm follows), padding kernel // 2."""
    return Conv(features, in_features, kernel, stride, formulation, name=name)


class Conv(nn.Module):
    """A bias-free 2-D convolution (NHWC, HWIO kernel) with torch's symmetric padding.

    XLA:CPU runs a 3x3 convolution over a 2x2 or 1x1 feature map 20-60x slower than
    oneDNN does (ResNet-18's last stages at 32x32 inputs; docs/BENCHMARKS.md). On such small
    maps "auto" computes the same function as a matrix product: the k*k shifted views of
    the padded input side by side (im2col) times the kernel reshaped to (k*k*in, out), whose
    gradients are slices, pads and two more matrix products. "xla" is always
    lax.conv_general_dilated. The variable is nn.Conv's `kernel`, so weights port unchanged.
    """

    features: int
    in_features: int
    kernel_size: int
    stride: int = 1
    formulation: str = "auto"

    @nn.compact
    def __call__(self, x):
        k, s, pad = self.kernel_size, self.stride, self.kernel_size // 2
        kernel = self.param(
            "kernel", kaiming_fan_out, (k, k, self.in_features, self.features), jnp.float32
        )
        h_out = (x.shape[1] + 2 * pad - k) // s + 1
        w_out = (x.shape[2] + 2 * pad - k) // s + 1
        if self.formulation == "xla" or k == 1 or h_out * w_out > SMALL_MAP:
            # PARITY: torch's integer padding pads both sides; Flax's default is "SAME".
            return jax.lax.conv_general_dilated(
                x, kernel, (s, s), [(pad, pad)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        views = [
            padded[:, i : i + s * (h_out - 1) + 1 : s, j : j + s * (w_out - 1) + 1 : s, :]
            for i in range(k)
            for j in range(k)
        ]  # (i, j, channel) order along the last axis, as the HWIO kernel's rows
        patches = jnp.concatenate(views, axis=-1)
        return patches @ kernel.reshape(k * k * self.in_features, self.features)


class Downsample(nn.Module):
    """The projection shortcut: a strided 1x1 conv ("0") and BatchNorm ("1")."""

    features: int
    in_features: int
    stride: int
    frozen_bn: bool = False
    conv: str = "auto"  # Conv's formulation: auto or xla

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = conv(self.features, self.in_features, 1, self.stride, formulation=self.conv, name="0")(
            x
        )
        return BatchNorm(name="1")(x, train and not self.frozen_bn)


class BasicBlock(nn.Module):
    """ResNet-18/34's block: 3x3 conv-bn-relu, 3x3 conv-bn, plus the shortcut, relu."""

    planes: int
    in_features: int
    stride: int = 1
    frozen_bn: bool = False
    conv: str = "auto"  # Conv's formulation: auto or xla
    expansion = 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn_train = train and not self.frozen_bn
        y = conv(
            self.planes, self.in_features, 3, self.stride, formulation=self.conv, name="conv1"
        )(x)
        y = nn.relu(BatchNorm(name="bn1")(y, bn_train))
        y = conv(self.planes, self.planes, 3, formulation=self.conv, name="conv2")(y)
        y = BatchNorm(name="bn2")(y, bn_train)
        if self.stride != 1 or self.in_features != self.planes:
            x = Downsample(
                self.planes, self.in_features, self.stride, self.frozen_bn, self.conv,
                name="downsample",
            )(x, train)  # fmt: skip
        return nn.relu(y + x)


class Bottleneck(nn.Module):
    """ResNet-50's block (v1.5): 1x1 reduce, 3x3 with the stride, 1x1 expand x4, shortcut."""

    planes: int
    in_features: int
    stride: int = 1
    frozen_bn: bool = False
    conv: str = "auto"  # Conv's formulation: auto or xla
    expansion = 4

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn_train = train and not self.frozen_bn
        out = self.planes * self.expansion
        y = conv(self.planes, self.in_features, 1, formulation=self.conv, name="conv1")(x)
        y = nn.relu(BatchNorm(name="bn1")(y, bn_train))
        y = conv(self.planes, self.planes, 3, self.stride, formulation=self.conv, name="conv2")(y)
        y = nn.relu(BatchNorm(name="bn2")(y, bn_train))
        y = conv(out, self.planes, 1, formulation=self.conv, name="conv3")(y)
        y = BatchNorm(name="bn3")(y, bn_train)
        if self.stride != 1 or self.in_features != out:
            x = Downsample(
                out, self.in_features, self.stride, self.frozen_bn, self.conv, name="downsample"
            )(x, train)
        return nn.relu(y + x)


class Layer(nn.Module):
    """One stage: `blocks` blocks named "0", "1"... (nn.Sequential's names); the first strides."""

    block: Any
    planes: int
    in_features: int
    blocks: int
    stride: int
    frozen_bn: bool = False
    conv: str = "auto"  # Conv's formulation: auto or xla

    @nn.compact
    def __call__(self, x, train: bool = False):
        in_features = self.in_features
        for i in range(self.blocks):
            stride = self.stride if i == 0 else 1
            x = self.block(
                self.planes, in_features, stride, self.frozen_bn, self.conv, name=str(i)
            )(x, train)
            in_features = self.planes * self.block.expansion
        return x


class ResNet(nn.Module):
    """torchvision.models.ResNet: stem, four stages (64, 128, 256, 512 planes), pool, fc."""

    block: Any
    layers: tuple[int, ...]
    num_classes: int = 1000
    frozen_bn: bool = False
    conv: str = "auto"  # Conv's formulation: auto or xla

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = conv(64, 3, 7, 2, formulation=self.conv, name="conv1")(x)
        x = nn.relu(BatchNorm(name="bn1")(x, train and not self.frozen_bn))
        # PARITY: MaxPool2d(3, 2, padding=1) pads with -inf, as nn.max_pool does.
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        in_features = 64
        for i, blocks in enumerate(self.layers):
            planes, stride = 64 * 2**i, 1 if i == 0 else 2
            x = Layer(
                self.block, planes, in_features, blocks, stride, self.frozen_bn, self.conv,
                name=f"layer{i + 1}",
            )(x, train)  # fmt: skip
            in_features = planes * self.block.expansion
        x = jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d((1, 1)) and flatten
        return TorchDense(self.num_classes, in_features, name="fc")(x)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
# resnet18 / resnet34 / resnet50: ResNet(block, layers) awaiting num_classes and frozen_bn
MODELS = {
    name: functools.partial(ResNet, BLOCKS[block], layers)
    for name, (block, layers) in ARCHITECTURES.items()
}


def create_model(config) -> ResNet:
    """The config's ResNet with its number of classes; frozen BatchNorm for a linear probe."""
    return MODELS[config.model](
        config.num_classes, frozen_bn=config.train == "head", conv=config.conv
    )


def dummy_input(config, batch_size: int = 1):
    """A zero batch of the config's images (NHWC), for model.init."""
    return jnp.zeros((batch_size, config.image_size, config.image_size, 3), jnp.float32)
