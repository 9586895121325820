"""Porting rules for feed-forward torch layers, and the types every rule is written against.

A rule turns one torch layer's tensors (numpy, the layer's own state_dict names) into Flax
variables keyed (collection, *path inside the layer), and back. comparisons/weights.py
composes the rules over a whole model and asserts every shape; its docstring is the table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

Flat = dict[tuple[str, ...], np.ndarray]  # (collection, *path) -> array


class PortingError(ValueError):
    """A layer, key or shape that does not line up between the two frameworks."""


class Tracked(dict):
    """A dict that records which keys were read, so unread entries can be reported."""

    def __init__(self, items: Mapping, describe: Callable[[Any], str]):
        super().__init__(items)
        self.read: set = set()
        self._describe = describe

    def __getitem__(self, key):
        if key not in self:
            raise PortingError(f"{self._describe(key)} is missing")
        self.read.add(key)
        return super().__getitem__(key)

    def unread(self) -> list:
        """The keys nobody asked for."""
        return sorted(set(self) - self.read)


@dataclass
class Layer:
    """One torch layer being ported: where it sits, the module, and its tensors."""

    path: str  # torch module path, "" for the root
    module: Any
    # The source tensors (torch -> Flax) or the reference ones (Flax -> torch), by local name.
    tensors: Mapping[str, np.ndarray]
    flattened: tuple[int, int, int] | None = None  # (C, H, W) when the input is a CHW flatten


class FlaxView:
    """Read-only view of one layer's Flax variables: view["params", "kernel"]."""

    def __init__(self, flat: Tracked, prefix: tuple[str, ...]):
        self._flat, self._prefix = flat, prefix

    def __getitem__(self, key: tuple[str, ...]) -> np.ndarray:
        return self._flat[(key[0], *self._prefix, *key[1:])]


@dataclass(frozen=True)
class Rule:
    """How one torch layer type becomes Flax variables, and back."""

    to_flax: Callable[[Layer], Flat]
    to_torch: Callable[[Layer, FlaxView], dict[str, np.ndarray]]
    flax: str  # the Flax module it targets, with any setting the mapping relies on
    notes: str = ""  # added to shape errors: what usually went wrong


def hwc_rows_from_chw(kernel_chw: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Reorder a Dense kernel's rows from torch's (c, h, w) flatten order to Flax's (h, w, c)."""
    c, h, w = chw
    out = kernel_chw.shape[-1]
    return kernel_chw.reshape(c, h, w, out).transpose(1, 2, 0, 3).reshape(c * h * w, out)


def chw_rows_from_hwc(kernel_hwc: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Inverse of `hwc_rows_from_chw`."""
    c, h, w = chw
    out = kernel_hwc.shape[-1]
    return kernel_hwc.reshape(h, w, c, out).transpose(2, 0, 1, 3).reshape(c * h * w, out)


def _check_flattened(layer: Layer, rows: int) -> None:
    if layer.flattened is not None and int(np.prod(layer.flattened)) != rows:
        raise PortingError(
            f"flattened_inputs gives torch {layer.path} a {tuple(layer.flattened)} input "
            f"({int(np.prod(layer.flattened))} features), but the layer has {rows}"
        )


def _linear_to_flax(layer: Layer) -> Flat:
    kernel = layer.tensors["weight"].T
    _check_flattened(layer, kernel.shape[0])
    if layer.flattened is not None:
        kernel = hwc_rows_from_chw(kernel, layer.flattened)
    out = {("params", "kernel"): kernel}
    if "bias" in layer.tensors:
        out["params", "bias"] = layer.tensors["bias"]
    return out


def _linear_to_torch(layer: Layer, flax: FlaxView) -> dict[str, np.ndarray]:
    kernel = flax["params", "kernel"]
    _check_flattened(layer, kernel.shape[0])
    if layer.flattened is not None:
        kernel = chw_rows_from_hwc(kernel, layer.flattened)
    out = {"weight": kernel.T}
    if "bias" in layer.tensors:
        out["bias"] = flax["params", "bias"]
    return out


def _spatial_last(ndim: int) -> tuple[int, ...]:
    """The permutation [A, B, *k] -> [*k, B, A] (torch OI... to Flax ...IO)."""
    return (*range(2, ndim), 1, 0)


def _conv_to_flax(layer: Layer) -> Flat:
    weight = layer.tensors["weight"]
    out = {("params", "kernel"): weight.transpose(_spatial_last(weight.ndim))}
    if "bias" in layer.tensors:
        out["params", "bias"] = layer.tensors["bias"]
    return out


def _conv_to_torch(layer: Layer, flax: FlaxView) -> dict[str, np.ndarray]:
    kernel = flax["params", "kernel"]
    out = {"weight": kernel.transpose(np.argsort(_spatial_last(kernel.ndim)))}
    if "bias" in layer.tensors:
        out["bias"] = flax["params", "bias"]
    return out


def _conv_transpose_to_flax(layer: Layer) -> Flat:
    if layer.module.groups != 1:
        raise PortingError(f"torch {layer.path}: no rule for grouped ConvTranspose (Flax has none)")
    # torch stores [I, O, *k], the kernel of the forward conv O -> I whose gradient this layer
    # computes; with transpose_kernel=True Flax reads its kernel [*k, O, I] the same way, so the
    # permutation is Conv's and no spatial flip is needed.
    # PARITY: padding does not port with the weights. torch's padding p and output_padding q
    # (dilation d, kernel k) are Flax padding (d*(k-1) - p, d*(k-1) - p + q) per spatial axis:
    # Flax pads the stride-dilated input itself, torch crops p from the full transposed conv.
    return _conv_to_flax(layer)


def _renamed(names: dict[str, tuple[str, str]]) -> tuple[Callable, Callable]:
    """(to_flax, to_torch) copying tensors under new names: {torch name: (collection, name)}."""

    def to_flax(layer: Layer) -> Flat:
        return {names[k]: layer.tensors[k] for k in layer.tensors if k in names}

    def to_torch(layer: Layer, flax: FlaxView) -> dict[str, np.ndarray]:
        return {k: flax[names[k]] for k in layer.tensors if k in names}

    return to_flax, to_torch


_NORM = {"weight": ("params", "scale"), "bias": ("params", "bias")}
_BATCH_NORM = {
    **_NORM,
    "running_mean": ("batch_stats", "mean"),
    "running_var": ("batch_stats", "var"),
}
_EMBED = {"weight": ("params", "embedding")}


def _heads(module) -> tuple[int, int]:
    return module.num_heads, module.head_dim


def _mha_to_flax(layer: Layer) -> Flat:
    t, (heads, head_dim) = layer.tensors, _heads(layer.module)
    if "in_proj_weight" in t:  # q, k, v packed row-wise
        weights = np.split(t["in_proj_weight"], 3)
    else:  # kdim/vdim differ from embed_dim: three separate matrices
        weights = [t["q_proj_weight"], t["k_proj_weight"], t["v_proj_weight"]]
    out: Flat = {}
    biases = np.split(t["in_proj_bias"], 3) if "in_proj_bias" in t else [None] * 3
    for name, weight, bias in zip(("query", "key", "value"), weights, biases, strict=True):
        # torch splits heads off the output features as (head, head_dim), in that order.
        out["params", name, "kernel"] = weight.T.reshape(weight.shape[1], heads, head_dim)
        if bias is not None:
            out["params", name, "bias"] = bias.reshape(heads, head_dim)
    out_weight = t["out_proj.weight"]
    out["params", "out", "kernel"] = out_weight.T.reshape(heads, head_dim, out_weight.shape[0])
    if "out_proj.bias" in t:
        out["params", "out", "bias"] = t["out_proj.bias"]
    return out


def _mha_to_torch(layer: Layer, flax: FlaxView) -> dict[str, np.ndarray]:
    t = layer.tensors
    weights = [
        flax["params", n, "kernel"].reshape(-1, layer.module.embed_dim).T
        for n in ("query", "key", "value")
    ]
    if "in_proj_weight" in t:
        out = {"in_proj_weight": np.concatenate(weights)}
    else:
        out = dict(zip(("q_proj_weight", "k_proj_weight", "v_proj_weight"), weights, strict=True))
    if "in_proj_bias" in t:
        out["in_proj_bias"] = np.concatenate(
            [flax["params", n, "bias"].reshape(-1) for n in ("query", "key", "value")]
        )
    kernel = flax["params", "out", "kernel"]
    out["out_proj.weight"] = kernel.reshape(-1, kernel.shape[-1]).T
    if "out_proj.bias" in t:
        out["out_proj.bias"] = flax["params", "out", "bias"]
    return out


_CONV_T = Rule(
    _conv_transpose_to_flax,
    _conv_to_torch,
    "ConvTranspose(transpose_kernel=True)",
    notes="the Flax ConvTranspose must set transpose_kernel=True",
)
_LINEAR = Rule(_linear_to_flax, _linear_to_torch, "Dense")
_CONV = Rule(_conv_to_flax, _conv_to_torch, "Conv")
_BATCH_NORM_RULE = Rule(*_renamed(_BATCH_NORM), "BatchNorm")
_NORM_RULE = Rule(*_renamed(_NORM), "LayerNorm / GroupNorm")

FEEDFORWARD_RULES: dict[type, Rule] = {
    nn.Linear: _LINEAR,
    nn.Conv1d: _CONV,
    nn.Conv2d: _CONV,
    nn.Conv3d: _CONV,
    nn.ConvTranspose1d: _CONV_T,
    nn.ConvTranspose2d: _CONV_T,
    nn.ConvTranspose3d: _CONV_T,
    nn.BatchNorm1d: _BATCH_NORM_RULE,
    nn.BatchNorm2d: _BATCH_NORM_RULE,
    nn.BatchNorm3d: _BATCH_NORM_RULE,
    nn.LayerNorm: _NORM_RULE,
    nn.GroupNorm: _NORM_RULE,
    nn.Embedding: Rule(*_renamed(_EMBED), "Embed"),
    nn.MultiheadAttention: Rule(_mha_to_flax, _mha_to_torch, "MultiHeadDotProductAttention"),
}
