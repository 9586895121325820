"""CIFAR-10 models in Flax Linen: the blitz's small CNN, ResNet-18 and an airbench-style net.

Read beside torchpath/cifar10/model.py: the same block classes (ConvBN, BasicBlock,
ConvGroup), the same submodule names, the same order. Inputs are NHWC float32 images
[N, 32, 32, 3]; outputs are float32 logits [N, 10]. `dtype=jnp.bfloat16` computes the
convolutions and matmuls in bf16 with float32 parameters (`--set precision=bf16`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxpath.common.batchnorm import BatchNorm
from jaxpath.common.init import TorchConv, TorchDense, torch_kernel_init
from jaxpath.common.pooling import max_pool


def conv(features, in_features, kernel, *, stride=1, padding=1, dtype=None, **options):
    """TorchConv without a bias (BatchNorm follows), in the compute dtype."""
    return TorchConv(
        features, in_features, kernel, stride=stride, padding=padding, use_bias=False,
        dtype=dtype, **options,
    )  # fmt: skip


def dirac_kernel_init(key, shape, dtype=jnp.float32):
    """torch's default init, then torch.nn.init.dirac_ on the first in-channels filters.

    airbench starts each conv as (partly) the identity: filter i < in_channels passes input
    channel i through unchanged.
    """
    kernel = torch_kernel_init(key, shape, dtype)  # HWIO
    h, w, cin, cout = shape
    n = min(cin, cout)
    channels = jnp.arange(n)
    identity = jnp.zeros((h, w, cin, n), dtype).at[h // 2, w // 2, channels, channels].set(1.0)
    return kernel.at[..., :n].set(identity)


def pool2(x, pool: str):
    """2x2 max pool, stride 2, flooring odd sizes as torch's F.max_pool2d does (31 -> 15)."""
    h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
    return max_pool(x[:, :h, :w], (2, 2), strides=(2, 2), formulation=pool)


class SmallCNN(nn.Module):
    """The 60-minute blitz's CIFAR net: conv6-pool-conv16-pool-fc120-fc84-fc10."""

    num_classes: int = 10
    pool: str = "reshape"
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(TorchConv(6, 3, 5, name="conv1", dtype=self.dtype)(x))  # 32 -> 28
        x = pool2(x, self.pool)  # 14
        x = nn.relu(TorchConv(16, 6, 5, name="conv2", dtype=self.dtype)(x))  # 10
        x = pool2(x, self.pool)  # 5
        x = x.reshape((x.shape[0], -1))  # PARITY: (h, w, c) flatten; torch's is (c, h, w)
        x = nn.relu(TorchDense(120, 16 * 5 * 5, name="fc1", dtype=self.dtype)(x))
        x = nn.relu(TorchDense(84, 120, name="fc2", dtype=self.dtype)(x))
        return TorchDense(self.num_classes, 84, name="fc3", dtype=self.dtype)(x)


class ConvBN(nn.Module):
    """conv (no bias) then BatchNorm: ResNet's unit and its projection shortcut."""

    features: int
    in_features: int
    kernel: int = 3
    stride: int = 1
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        pad = self.kernel // 2
        x = conv(
            self.features,
            self.in_features,
            self.kernel,
            stride=self.stride,
            padding=pad,
            dtype=self.dtype,
            name="conv",
        )(x)
        return BatchNorm(self.bn_momentum, self.bn_eps, self.dtype, name="bn")(x, train)


class BasicBlock(nn.Module):
    """ResNet's basic block: conv-bn-relu-conv-bn plus the (projected) input, then relu."""

    features: int
    in_features: int
    stride: int = 1
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = {"momentum": self.bn_momentum, "epsilon": self.bn_eps, "dtype": self.dtype}
        f, s = self.features, self.stride
        y = conv(f, self.in_features, 3, stride=s, dtype=self.dtype, name="conv1")(x)
        y = nn.relu(BatchNorm(**bn, name="bn1")(y, train))
        y = conv(f, f, 3, dtype=self.dtype, name="conv2")(y)
        y = BatchNorm(**bn, name="bn2")(y, train)
        if s != 1 or self.in_features != f:
            x = ConvBN(
                f, self.in_features, 1, s, self.bn_momentum, self.bn_eps, self.dtype,
                name="shortcut",
            )(x, train)  # fmt: skip
        return nn.relu(y + x)


class ResNet18(nn.Module):
    """kuangliu's CIFAR ResNet-18: a 3x3 stem (no max-pool), four stages of two blocks."""

    num_classes: int = 10
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = {"bn_momentum": self.bn_momentum, "bn_eps": self.bn_eps, "dtype": self.dtype}
        x = conv(64, 3, 3, dtype=self.dtype, name="conv1")(x)
        x = nn.relu(BatchNorm(self.bn_momentum, self.bn_eps, self.dtype, name="bn1")(x, train))
        in_features = 64
        for stage, (features, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2))):
            x = Stage(features, in_features, stride, **bn, name=f"layer{stage + 1}")(x, train)
            in_features = features
        x = jnp.mean(x, axis=(1, 2))  # 4x4 average pool
        return TorchDense(self.num_classes, 512, name="linear", dtype=self.dtype)(x)


class Stage(nn.Module):
    """Two BasicBlocks named "0" and "1", as torch's nn.Sequential names them."""

    features: int
    in_features: int
    stride: int
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = {"bn_momentum": self.bn_momentum, "bn_eps": self.bn_eps, "dtype": self.dtype}
        x = BasicBlock(self.features, self.in_features, self.stride, **bn, name="0")(x, train)
        return BasicBlock(self.features, self.features, 1, **bn, name="1")(x, train)


class ConvGroup(nn.Module):
    """airbench's group: conv-pool-bn-gelu-conv-bn-gelu, convs identity-initialised."""

    features: int
    in_features: int
    bn_momentum: float = 0.6
    bn_eps: float = 1e-12
    pool: str = "reshape"
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = {"momentum": self.bn_momentum, "epsilon": self.bn_eps, "dtype": self.dtype}
        f = self.features
        init = dirac_kernel_init
        x = conv(f, self.in_features, 3, dtype=self.dtype, kernel_init=init, name="conv1")(x)
        x = pool2(x, self.pool)
        # PARITY: torch's nn.GELU() is the exact (erf) GELU; Flax's default is the tanh one.
        x = nn.gelu(BatchNorm(**bn, name="norm1")(x, train), approximate=False)
        x = conv(f, f, 3, dtype=self.dtype, kernel_init=init, name="conv2")(x)
        return nn.gelu(BatchNorm(**bn, name="norm2")(x, train), approximate=False)


class SpeedrunNet(nn.Module):
    """airbench94's net: 2x2 whitening conv, three ConvGroups, global max-pool, linear / 9."""

    widths: Sequence[int] = (64, 256, 256)
    num_classes: int = 10
    bn_momentum: float = 0.6
    bn_eps: float = 1e-12
    pool: str = "reshape"
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        # The whitening conv's weights are set from the training images (shared_data/
        # whitening.py) and frozen; its bias trains for the first epochs only.
        x = TorchConv(24, 3, 2, name="whiten", dtype=self.dtype)(x)  # 32 -> 31
        x = nn.gelu(x, approximate=False)
        in_features = 24
        kwargs = {"bn_momentum": self.bn_momentum, "bn_eps": self.bn_eps, "dtype": self.dtype}
        for i, width in enumerate(self.widths):
            x = ConvGroup(width, in_features, pool=self.pool, **kwargs, name=f"group{i + 1}")(
                x, train
            )  # 31 -> 15 -> 7 -> 3
            in_features = width
        x = jnp.max(x, axis=(1, 2))  # torch's MaxPool2d(3) over the 3x3 map
        head = TorchDense(
            self.num_classes, in_features, name="head", use_bias=False, dtype=self.dtype
        )
        return head(x) / 9.0  # airbench's scaling_factor


MODELS = {"smallcnn": SmallCNN, "resnet18": ResNet18, "speedrun": SpeedrunNet}


def create_model(config) -> nn.Module:
    """The model named by `config.model`, configured from `config`."""
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; known: {', '.join(MODELS)}")
    dtype = jnp.bfloat16 if config.precision == "bf16" else None
    bn = {"bn_momentum": config.bn_momentum, "bn_eps": config.bn_eps, "dtype": dtype}
    if config.model == "smallcnn":
        return SmallCNN(dtype=dtype)
    if config.model == "resnet18":
        return ResNet18(**bn)
    return SpeedrunNet(widths=tuple(config.widths), **bn)


def input_shape(batch_size: int) -> tuple[int, ...]:
    """Shape of a model input batch in this framework's layout (NHWC)."""
    return (batch_size, 32, 32, 3)


def dummy_input(batch_size: int = 1):
    """Zeros of the model's input shape, for initialisation and tracing."""
    return jnp.zeros(input_shape(batch_size), jnp.float32)


def output_float32(logits: jax.Array) -> jax.Array:
    """Logits in float32 whatever the compute dtype (losses and metrics want float32)."""
    return logits.astype(jnp.float32)
