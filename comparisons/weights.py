"""Weight porting between torch state_dicts and Flax variables, asserting every shape.

Conversion rules (torch -> Flax; the reverse inverts each):

| torch | Flax | rule |
| --- | --- | --- |
| Linear.weight [out, in] | Dense.kernel [in, out] | transpose |
| Conv2d.weight [O, I, kh, kw] | Conv.kernel [kh, kw, I, O] | transpose(2, 3, 1, 0) |
| BatchNorm.weight / .bias | BatchNorm.scale / .bias (params) | copy |
| BatchNorm.running_mean / _var | batch_stats mean / var | copy |
| BatchNorm.num_batches_tracked | -- | dropped (Flax keeps none) |
| Linear after a (C,H,W) flatten | Dense after an (H,W,C) flatten | permute the kernel's rows |

Layers of the last kind are listed by the torch model in `flattened_inputs`
({"fc1": (C, H, W)}). Module paths map one to one: torch "conv1.weight" is Flax
params["conv1"]["kernel"]; nested torch paths "a.b.weight" are params["a"]["b"][...].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

_BN_PARAMS = {"weight": "scale", "bias": "bias"}
_BN_STATS = {"running_mean": "mean", "running_var": "var"}


class PortingError(ValueError):
    """A key or shape that does not line up between the two frameworks."""


def _flat(tree: Mapping, prefix: tuple = ()) -> dict[tuple, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, prefix + (key,)))
        else:
            out[prefix + (key,)] = value
    return out


def _nest(flat: dict[tuple, Any]) -> dict:
    out: dict = {}
    for path, value in flat.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


def _hwc_rows_from_chw(kernel_chw: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Reorder a Dense kernel's rows from torch's (c, h, w) flatten order to Flax's (h, w, c)."""
    c, h, w = chw
    out = kernel_chw.shape[-1]
    return kernel_chw.reshape(c, h, w, out).transpose(1, 2, 0, 3).reshape(c * h * w, out)


def _chw_rows_from_hwc(kernel_hwc: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Inverse of `_hwc_rows_from_chw`."""
    c, h, w = chw
    out = kernel_hwc.shape[-1]
    return kernel_hwc.reshape(h, w, c, out).transpose(2, 0, 1, 3).reshape(c * h * w, out)


def _torch_to_flax_entry(
    module: str, name: str, value: np.ndarray, flattened_inputs: Mapping[str, tuple]
) -> tuple[str, tuple, np.ndarray]:
    """(collection, flax path, converted array) of one torch state_dict entry."""
    path = tuple(module.split(".")) if module else ()
    if name in _BN_STATS:
        return "batch_stats", path + (_BN_STATS[name],), value
    if name == "weight" and value.ndim == 4:
        return "params", path + ("kernel",), value.transpose(2, 3, 1, 0)
    if name == "weight" and value.ndim == 2:
        kernel = value.T
        if module in flattened_inputs:
            kernel = _hwc_rows_from_chw(kernel, tuple(flattened_inputs[module]))
        return "params", path + ("kernel",), kernel
    if name == "weight" and value.ndim == 1:  # a normalisation layer's scale
        return "params", path + ("scale",), value
    if name == "bias":
        return "params", path + ("bias",), value
    raise PortingError(
        f"no porting rule for torch parameter {module}.{name} of shape {value.shape}"
    )


def torch_to_flax(
    state_dict: Mapping[str, Any],
    template: Mapping[str, Any],
    flattened_inputs: Mapping[str, tuple] | None = None,
) -> dict[str, Any]:
    """Flax variables {"params"[, "batch_stats"]} from a torch state_dict, like `template`."""
    flattened_inputs = flattened_inputs or {}
    expected = {
        (col,) + path: np.shape(v)
        for col, tree in template.items()
        for path, v in _flat(tree).items()
    }
    ported: dict[tuple, np.ndarray] = {}
    for key, tensor in state_dict.items():
        module, _, name = key.rpartition(".")
        if name == "num_batches_tracked":
            continue
        value = tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)
        collection, path, converted = _torch_to_flax_entry(module, name, value, flattened_inputs)
        full = (collection,) + path
        if full not in expected:
            raise PortingError(
                f"torch {key} maps to Flax {'/'.join(full)}, which the Flax model does not have"
            )
        if converted.shape != expected[full]:
            raise PortingError(
                f"shape mismatch for torch {key} -> Flax {'/'.join(full)}: "
                f"{converted.shape} vs {expected[full]}"
            )
        ported[full] = np.ascontiguousarray(converted, dtype=np.float32)
    missing = sorted("/".join(p) for p in set(expected) - set(ported))
    if missing:
        raise PortingError(f"Flax variables with no torch counterpart: {missing}")
    return _nest(ported)


def flax_to_torch(
    variables: Mapping[str, Any],
    template: Mapping[str, Any],
    flattened_inputs: Mapping[str, tuple] | None = None,
) -> dict[str, Any]:
    """A torch state_dict (tensors) from Flax variables, keyed and shaped like `template`."""
    import torch

    flattened_inputs = flattened_inputs or {}
    flat = {
        (col,) + path: np.asarray(v)
        for col, tree in variables.items()
        for path, v in _flat(tree).items()
    }
    used: set[tuple] = set()
    state_dict = {}
    for key, ref in template.items():
        module, _, name = key.rpartition(".")
        path = tuple(module.split(".")) if module else ()
        if name == "num_batches_tracked":
            state_dict[key] = ref.clone()
            continue
        if name in _BN_STATS:
            source = ("batch_stats",) + path + (_BN_STATS[name],)
        elif name == "weight" and ref.ndim == 1:
            source = ("params",) + path + ("scale",)
        elif name == "weight":
            source = ("params",) + path + ("kernel",)
        else:
            source = ("params",) + path + (name,)
        if source not in flat:
            raise PortingError(f"torch {key} needs Flax {'/'.join(source)}, which is missing")
        value = flat[source]
        used.add(source)
        if name == "weight" and ref.ndim == 4:
            value = value.transpose(3, 2, 0, 1)
        elif name == "weight" and ref.ndim == 2:
            if module in flattened_inputs:
                value = _chw_rows_from_hwc(value, tuple(flattened_inputs[module]))
            value = value.T
        if tuple(value.shape) != tuple(ref.shape):
            raise PortingError(
                f"shape mismatch for Flax {'/'.join(source)} -> torch {key}: "
                f"{value.shape} vs {tuple(ref.shape)}"
            )
        state_dict[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    unused = sorted("/".join(p) for p in set(flat) - used)
    if unused:
        raise PortingError(f"Flax variables with no torch counterpart: {unused}")
    return state_dict
