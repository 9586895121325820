"""Weight porting between torch models and Flax variables: a table of per-layer rules.

`torch_to_flax(model, template)` walks `model.named_modules()`, ports each layer by the rule
for its type (`RULES`, looked up along the type's MRO) and asserts every shape against the
Flax `template`; `flax_to_torch(variables, model)` is the inverse. Module paths map one to
one: torch "a.b.weight" belongs to Flax params["a"]["b"][...]. A layer with parameters and
no rule, a tensor a rule leaves unread, a Flax variable no layer claims, or a shape that
differs raises `PortingError`. A rule ports a layer's whole subtree (MultiheadAttention owns
its out_proj). Projects with a new layer type add `RULES[TorchType] = Rule(...)`.

| torch tensor | Flax variable | rule |
| --- | --- | --- |
| Linear.weight [out, in] | Dense kernel [in, out] | transpose |
| Linear after a (C,H,W) flatten | Dense after an (H,W,C) flatten | also permute rows |
| ConvNd.weight [O, I/g, *k] | Conv kernel [*k, I/g, O] | move k first |
| ConvTransposeNd.weight [I, O, *k] | ConvTranspose kernel [*k, O, I] (1) | as Conv, no flip |
| BatchNormNd.weight / .bias | BatchNorm params scale / bias | copy |
| BatchNormNd.running_mean / _var | BatchNorm batch_stats mean / var | copy |
| BatchNormNd.num_batches_tracked | -- | dropped |
| LayerNorm / GroupNorm .weight, .bias | LayerNorm / GroupNorm scale, bias | copy |
| Embedding.weight | Embed embedding | copy |
| LSTM.weight_ih_l{k}[_reverse] | TorchLSTM l{k}[_reverse]/cell/i{i,f,g,o} kernel | split rows, .T |
| LSTM.weight_hh_l{k}[_reverse] | .../cell/h{i,f,g,o} kernel | split rows, .T |
| LSTM.bias_ih + .bias_hh | .../cell/h{i,f,g,o} bias | sum (2) |
| GRU.weight_ih / _hh (r, z, n) | TorchGRU .../cell/i{r,z,n} / h{r,z,n} kernel | split rows, .T |
| GRU.bias_ih + .bias_hh (r, z) | .../cell/ir, iz bias | sum (2) |
| GRU.bias_ih, .bias_hh (n) | .../cell/in bias, hn bias | copy |
| MultiheadAttention.in_proj_weight | query / key / value kernel [E, heads, head_dim] | split, .T |
| (or q_/k_/v_proj_weight) [E, E] | (the same) | .T, reshape |
| MultiheadAttention.in_proj_bias | query / key / value bias [heads, head_dim] | split, reshape |
| MultiheadAttention.out_proj.weight | out kernel [heads, head_dim, E] | .T, reshape |

(1) the Flax ConvTranspose must set transpose_kernel=True. (2) Flax -> torch keeps b_hh
from the reference model and gives b_ih the rest, so torch -> Flax -> torch is exact
(comparisons/weights_rnn.py says why).

Layers of the second kind are listed by the torch model in `flattened_inputs`
({"fc1": (C, H, W)}); both functions read the model's attribute when none is passed.

The rules port values; the Flax module must still be configured to compute torch's function:
- PARITY: Conv padding p (int) is Flax padding ((p, p), ...); Flax's default is "SAME".
- PARITY: ConvTranspose(kernel k, stride s, padding p, output_padding q, dilation d) is Flax
  ConvTranspose(k, s, padding=((d*(k-1)-p, d*(k-1)-p+q), ...), transpose_kernel=True): Flax
  pads the stride-dilated input directly, torch crops p from a full transposed convolution.
- PARITY: BatchNorm momentum m in torch is momentum 1-m in Flax (0.1 <-> 0.9), and torch
  tracks the unbiased batch variance; LayerNorm's epsilon is 1e-5 in torch, 1e-6 in Flax.
- PARITY: MultiheadAttention's key_padding_mask is True where a key is ignored; Flax's mask
  is True where a key is attended (mask = ~key_padding_mask[:, None, None, :]).
- PARITY: Embedding(padding_idx=...) only freezes that row's gradient; Embed has no such
  option (the forward pass agrees).

A bare state_dict (no module) is still accepted: then layers can only be guessed from names
and ndim (Linear, Conv2d, BatchNorm, LayerNorm), as callers did before the rule table.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from comparisons.weights_layers import (
    FEEDFORWARD_RULES,
    FlaxView,
    Layer,
    PortingError,
    Rule,
    Tracked,
    chw_rows_from_hwc,
    hwc_rows_from_chw,
)
from comparisons.weights_rnn import RNN_RULES

__all__ = ["RULES", "PortingError", "Rule", "flax_to_torch", "torch_to_flax"]

RULES: dict[type, Rule] = {**FEEDFORWARD_RULES, **RNN_RULES}

_BN_STATS = {"running_mean": "mean", "running_var": "var"}
_DROPPED = "num_batches_tracked"  # torch's BatchNorm step counter; Flax keeps none


def torch_to_flax(
    source: torch.nn.Module | Mapping[str, Any],
    template: Mapping[str, Any],
    flattened_inputs: Mapping[str, tuple] | None = None,
) -> dict[str, Any]:
    """Flax variables {"params"[, "batch_stats"]} shaped like `template`, from a torch model."""
    if isinstance(source, Mapping):
        return _state_dict_to_flax(source, template, flattened_inputs or {})
    if flattened_inputs is None:
        flattened_inputs = getattr(source, "flattened_inputs", {})
    expected = {
        (col, *path): np.shape(v)
        for col, tree in template.items()
        for path, v in _flat(tree).items()
    }
    ported: dict[tuple, np.ndarray] = {}
    for layer, rule in _layers(source, flattened_inputs):
        with _about(layer):
            converted = rule.to_flax(layer)
            unread = layer.tensors.unread()
        if unread:
            raise PortingError(
                f"torch {_name(layer)}: {unread} have no Flax counterpart in the {rule.flax} rule"
            )
        for key, value in converted.items():
            full = (key[0], *_path(layer), *key[1:])
            where = f"torch {_name(layer)} -> Flax {'/'.join(full)}"
            if full not in expected:
                raise PortingError(f"{where}, which the Flax model does not have ({rule.flax})")
            if value.shape != expected[full]:
                raise PortingError(
                    f"shape mismatch for {where}: {value.shape} vs {expected[full]}"
                    + (f" ({rule.notes})" if rule.notes else "")
                )
            ported[full] = np.array(value, dtype=np.float32, order="C")  # never aliases torch
    missing = sorted("/".join(p) for p in set(expected) - set(ported))
    if missing:
        raise PortingError(f"Flax variables with no torch counterpart: {missing}")
    return _nest(ported)


def flax_to_torch(
    variables: Mapping[str, Any],
    reference: torch.nn.Module | Mapping[str, Any],
    flattened_inputs: Mapping[str, tuple] | None = None,
) -> dict[str, Any]:
    """A torch state_dict (tensors) keyed and shaped like `reference`'s, from Flax variables."""
    if isinstance(reference, Mapping):
        return _flax_to_state_dict(variables, reference, flattened_inputs or {})
    if flattened_inputs is None:
        flattened_inputs = getattr(reference, "flattened_inputs", {})
    flat = Tracked(
        {
            (col, *path): np.asarray(v)
            for col, tree in variables.items()
            for path, v in _flat(tree).items()
        },
        lambda key: f"Flax {'/'.join(key)}",
    )
    state = reference.state_dict()
    ported: dict[str, Any] = {}
    for layer, rule in _layers(reference, flattened_inputs):
        with _about(layer):
            converted = rule.to_torch(layer, FlaxView(flat, _path(layer)))
        for name, value in converted.items():
            key = f"{layer.path}.{name}" if layer.path else name
            where = f"Flax {rule.flax} -> torch {key}"
            if key not in state:
                raise PortingError(f"{where}, which the torch model does not have")
            if tuple(value.shape) != tuple(state[key].shape):
                raise PortingError(
                    f"shape mismatch for {where}: {value.shape} vs {tuple(state[key].shape)}"
                )
            ported[key] = torch.from_numpy(np.array(value, dtype=np.float32, order="C"))
    for key, ref in state.items():
        if key.rpartition(".")[2] == _DROPPED:
            ported[key] = ref.detach().clone()
        elif key not in ported:
            raise PortingError(f"torch {key} has no Flax counterpart")
    unused = sorted("/".join(p) for p in flat.unread())
    if unused:
        raise PortingError(f"Flax variables with no torch counterpart: {unused}")
    return {key: ported[key] for key in state}


def _layers(
    model: torch.nn.Module, flattened_inputs: Mapping[str, tuple]
) -> Iterator[tuple[Layer, Rule]]:
    """(layer, rule) for each torch layer holding tensors, outermost first."""
    state = {
        key: value.detach().cpu().numpy()
        for key, value in model.state_dict().items()
        if key.rpartition(".")[2] != _DROPPED
    }
    modules = dict(model.named_modules(remove_duplicate=False))  # tied layers under each path
    strays = sorted(
        set(flattened_inputs) - {n for n, m in modules.items() if isinstance(m, torch.nn.Linear)}
    )
    if strays:
        raise PortingError(f"flattened_inputs names {strays}, which are not Linear layers here")
    claimed: list[str] = []
    for name, module in modules.items():
        if any(_within(name, owner) for owner in claimed):
            continue
        prefix = f"{name}." if name else ""
        local = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        rule = next((RULES[t] for t in type(module).__mro__ if t in RULES), None)
        if rule is None:
            own = [k for k in local if "." not in k]  # tensors of this module, not its children
            if own:
                raise PortingError(
                    f"no porting rule for torch layer {name or '<root>'} "
                    f"({type(module).__name__}, holding {own}): add one to weights.RULES"
                )
            continue
        claimed.append(name)
        tensors = Tracked(local, lambda key, p=prefix: f"torch {p}{key}")
        flattened = flattened_inputs.get(name)
        yield Layer(name, module, tensors, tuple(flattened) if flattened else None), rule


def _within(name: str, owner: str) -> bool:
    return owner == "" or name == owner or name.startswith(owner + ".")


def _path(layer: Layer) -> tuple[str, ...]:
    return tuple(layer.path.split(".")) if layer.path else ()


def _name(layer: Layer) -> str:
    return f"{layer.path or '<root>'} ({type(layer.module).__name__})"


@contextmanager
def _about(layer: Layer) -> Iterator[None]:
    """Prefix a PortingError raised inside a rule with the layer it was porting."""
    try:
        yield
    except PortingError as error:
        if str(error).startswith("torch "):
            raise
        raise PortingError(f"torch {_name(layer)}: {error}") from None


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


# A bare state_dict carries no layer types: guess them from names and ndim, as before the
# rule table (compare.py, parity.py and the MNIST tests still pass state_dicts).


def _legacy_entry(
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
            kernel = hwc_rows_from_chw(kernel, tuple(flattened_inputs[module]))
        return "params", path + ("kernel",), kernel
    if name == "weight" and value.ndim == 1:  # a normalisation layer's scale
        return "params", path + ("scale",), value
    if name == "bias":
        return "params", path + ("bias",), value
    raise PortingError(
        f"no porting rule for torch parameter {module}.{name} of shape {value.shape}"
    )


def _state_dict_to_flax(
    state_dict: Mapping[str, Any], template: Mapping[str, Any], flattened_inputs: Mapping
) -> dict[str, Any]:
    """Flax variables from a bare state_dict, layers guessed from parameter names and ndim."""
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
        collection, path, converted = _legacy_entry(module, name, value, flattened_inputs)
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
        ported[full] = np.array(converted, dtype=np.float32, order="C")  # never aliases torch
    missing = sorted("/".join(p) for p in set(expected) - set(ported))
    if missing:
        raise PortingError(f"Flax variables with no torch counterpart: {missing}")
    return _nest(ported)


def _flax_to_state_dict(
    variables: Mapping[str, Any], template: Mapping[str, Any], flattened_inputs: Mapping
) -> dict[str, Any]:
    """A torch state_dict from Flax variables, keyed like `template`, guessed by name and ndim."""
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
                value = chw_rows_from_hwc(value, tuple(flattened_inputs[module]))
            value = value.T
        if tuple(value.shape) != tuple(ref.shape):
            raise PortingError(
                f"shape mismatch for Flax {'/'.join(source)} -> torch {key}: "
                f"{value.shape} vs {tuple(ref.shape)}"
            )
        state_dict[key] = torch.from_numpy(np.array(value, dtype=np.float32, order="C"))
    unused = sorted("/".join(p) for p in set(flat) - used)
    if unused:
        raise PortingError(f"Flax variables with no torch counterpart: {unused}")
    return state_dict
