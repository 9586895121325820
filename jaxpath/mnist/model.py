"""MNIST models in Flax Linen: an MLP, pytorch/examples' CNN and a small fast CNN.

Read beside torchpath/mnist/model.py: same classes, same submodule names, same order.
Inputs are NHWC float32 images [N, 28, 28, 1]; outputs are logits [N, 10].
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from flax import linen as nn

from jaxpath.common.init import TorchConv, TorchDense
from jaxpath.common.pooling import max_pool


class MLP(nn.Module):
    """Flatten, then Dense-ReLU layers of widths `hidden`, then a 10-way Dense."""

    hidden: Sequence[int] = (256, 128)
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape((x.shape[0], -1))
        in_features = x.shape[-1]
        for i, width in enumerate(self.hidden):
            x = nn.relu(TorchDense(width, in_features, name=f"fc{i + 1}")(x))
            in_features = width
        return TorchDense(self.num_classes, in_features, name="head")(x)


class CNN(nn.Module):
    """pytorch/examples' MNIST net: conv32-conv64-maxpool-dropout-fc128-dropout-fc10."""

    num_classes: int = 10
    dropout: bool = True
    pool: str = "reshape"  # max-pool formulation: reshape + max, or nn.max_pool (reduce_window)

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(TorchConv(32, 1, 3, name="conv1")(x))  # 28 -> 26 (no padding)
        x = nn.relu(TorchConv(64, 32, 3, name="conv2")(x))  # 26 -> 24
        x = max_pool(x, (2, 2), strides=(2, 2), formulation=self.pool)  # 24 -> 12
        x = nn.Dropout(0.25 if self.dropout else 0.0, deterministic=not train)(x)
        # PARITY: flattening NHWC gives (h, w, c) order, torch's NCHW gives (c, h, w);
        # comparisons/weights.py permutes fc1's rows when porting weights.
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(TorchDense(128, 12 * 12 * 64, name="fc1")(x))
        x = nn.Dropout(0.5 if self.dropout else 0.0, deterministic=not train)(x)
        return TorchDense(self.num_classes, 128, name="fc2")(x)


class FastCNN(nn.Module):
    """A compute-lean CNN for the speed recipe: two padded 3x3 convs with pooling, two Dense."""

    num_classes: int = 10
    dropout: bool = False
    widths: Sequence[int] = (32, 64)
    pool: str = "reshape"  # max-pool formulation, see CNN

    @nn.compact
    def __call__(self, x, train: bool = False):
        c1, c2 = self.widths
        x = nn.relu(TorchConv(c1, 1, 3, padding=1, name="conv1")(x))  # 28x28
        x = max_pool(x, (2, 2), strides=(2, 2), formulation=self.pool)  # 14x14
        x = nn.relu(TorchConv(c2, c1, 3, padding=1, name="conv2")(x))  # 14x14
        x = max_pool(x, (2, 2), strides=(2, 2), formulation=self.pool)  # 7x7
        x = nn.Dropout(0.25 if self.dropout else 0.0, deterministic=not train)(x)
        x = x.reshape((x.shape[0], -1))  # PARITY: (h, w, c) flatten order, see CNN.
        x = nn.relu(TorchDense(128, 7 * 7 * c2, name="fc1")(x))
        return TorchDense(self.num_classes, 128, name="fc2")(x)


MODELS = {"mlp": MLP, "cnn": CNN, "fastcnn": FastCNN}


def create_model(config) -> nn.Module:
    """The model named by `config.model`, configured from `config`."""
    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; known: {', '.join(MODELS)}")
    pool = getattr(config, "pool", "reshape")
    if config.model == "mlp":
        return MLP(hidden=tuple(config.hidden))
    if config.model == "fastcnn":
        return FastCNN(dropout=config.dropout, widths=tuple(config.conv_widths), pool=pool)
    return CNN(dropout=config.dropout, pool=pool)


def input_shape(batch_size: int) -> tuple[int, ...]:
    """Shape of a model input batch in this framework's layout (NHWC)."""
    return (batch_size, 28, 28, 1)


def dummy_input(batch_size: int = 1):
    """Zeros of the model's input shape, for initialisation and tracing."""
    return jnp.zeros(input_shape(batch_size), jnp.float32)
