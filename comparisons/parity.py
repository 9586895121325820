"""The parity harness, written once for every registered project and model.

From torch's seeded initialisation, ported to Flax (comparisons/weights.py asserts every
shape), the two implementations must compute the same function: the same outputs, the same
loss on the same batch (and the same noise, where the model samples), and the same
parameters after an optimizer step. `roadmap compare` uses the same port for its initial
weights; tests/test_parity.py runs the checks over the whole registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from comparisons.env import pin_fp32
from comparisons.pretrained import apply_pretrained, has_pretrained, source_state_dict
from comparisons.weights import torch_to_flax


@dataclasses.dataclass
class Pair:
    """One project's two states holding the same weights, and the config they were built from."""

    project: Any
    config: Any
    jax_train: Any  # jaxpath.<project>.train
    torch_train: Any  # torchpath.<project>.train
    jax_state: Any
    torch_state: Any
    weights: dict[str, Any]  # {"torch": state_dict, "jax": Flax variables}


def parity_config(project, model: str | None = None, variant: str = "smoke", **changes):
    """The `variant` config with the project's parity overrides (dropout off...) applied."""
    config = project.config(variant)
    changes = {**project.parity_overrides, **changes}
    if model is not None:
        changes["model"] = model
    return dataclasses.replace(config, **changes)


def jax_variables(jax_state) -> dict[str, Any]:
    """{"params"[, "batch_stats"]} of a JAX TrainState."""
    variables = {"params": jax_state.params}
    if getattr(jax_state, "batch_stats", None) is not None:
        variables["batch_stats"] = jax_state.batch_stats
    return variables


def torch_as_flax(torch_state, template: Mapping[str, Any]) -> dict[str, Any]:
    """The torch model's current weights in Flax's layout (shapes asserted against template)."""
    # Per-layer rules dispatch on the module types (comparisons/weights.py: RULES).
    return torch_to_flax(torch_state.model, template)


def make_pair(project, config, steps_per_epoch: int = 10) -> Pair:
    """Both states from torch's seeded init: torch's weights ported into the JAX state."""
    pin_fp32()  # also when called as a library function, not from the CLI or the tests
    jax_train, torch_train = project.module("jax"), project.module("torch")
    torch_state = torch_train.create_state(config, steps_per_epoch)
    if has_pretrained(config):  # --weights: loaded into torch's seeded model, then ported
        source, _ = source_state_dict(project, config)
        apply_pretrained(torch_state.model, source, getattr(config, "reinit", ""))
    template = jax_variables(jax_train.create_state(config, steps_per_epoch))
    variables = torch_as_flax(torch_state, template)
    jax_state = jax_train.create_state(config, steps_per_epoch, variables)
    state_dict = {k: v.detach().clone() for k, v in torch_state.model.state_dict().items()}
    weights = {"torch": state_dict, "jax": variables}
    return Pair(project, config, jax_train, torch_train, jax_state, torch_state, weights)


def leaves(tree: Any) -> list[np.ndarray]:
    """The arrays of a model output (array, tensor, tuple or dict), as numpy, in a fixed order."""
    if isinstance(tree, Mapping):
        return [a for key in sorted(tree) for a in leaves(tree[key])]
    if isinstance(tree, (tuple, list)):
        return [a for item in tree for a in leaves(item)]
    if hasattr(tree, "detach"):  # a torch tensor
        return [tree.detach().cpu().numpy()]
    return [np.asarray(tree)]


def max_abs_diff(a: Any, b: Any) -> float:
    """Largest |a - b| over every leaf; shapes must agree leaf by leaf."""
    left, right = leaves(a), leaves(b)
    if len(left) != len(right):
        raise ValueError(f"outputs have {len(left)} vs {len(right)} arrays")
    worst = 0.0
    for x, y in zip(left, right, strict=True):
        if x.shape != y.shape:
            raise ValueError(f"output shapes differ: {x.shape} vs {y.shape}")
        if x.size:
            worst = max(worst, float(np.max(np.abs(x.astype(np.float64) - y))))
    return worst


def predict_both(pair: Pair, batch: dict[str, np.ndarray]) -> tuple[Any, Any]:
    """`predict` of each framework on the same numpy batch: (JAX's output, torch's)."""
    import torch

    jax_out = pair.jax_train.predict(pair.jax_state, pair.jax_train.to_device(batch))
    with torch.no_grad():
        torch_out = pair.torch_train.predict(pair.torch_state, pair.torch_train.to_device(batch))
    return jax_out, torch_out


def predict_diff(pair: Pair, batch: dict[str, np.ndarray]) -> float:
    """Max |JAX - torch| of `predict` on the same numpy batch."""
    return max_abs_diff(*predict_both(pair, batch))


def output_scale(outputs: Any) -> float:
    """max(1, largest |value| over every leaf): what an output tolerance is relative to."""
    return max([1.0] + [float(np.max(np.abs(x))) for x in leaves(outputs) if x.size])


def step_both(pair: Pair, batch: dict[str, np.ndarray], step: int = 0) -> tuple[dict, dict]:
    """One train_step in each framework on `batch`; returns the two metric sums (as floats)."""
    from jaxpath.common.loop import step_rng as jax_step_rng
    from torchpath.common.loop import step_rng as torch_step_rng

    seed = pair.config.seed
    pair.jax_state, jax_metrics = pair.jax_train.train_step(
        pair.jax_state, pair.jax_train.to_device(batch), jax_step_rng(seed, step)
    )
    pair.torch_state, torch_metrics = pair.torch_train.train_step(
        pair.torch_state, pair.torch_train.to_device(batch), torch_step_rng(seed, step)
    )
    as_floats = lambda metrics: {k: float(v) for k, v in metrics.items()}  # noqa: E731
    return as_floats(jax_metrics), as_floats(torch_metrics)


def flat_arrays(tree) -> dict[str, np.ndarray]:
    """{"params/block3/fc1/kernel": numpy array} of every leaf of a Flax variable tree."""
    import jax

    return {
        jax.tree_util.keystr(path, simple=True, separator="/"): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def params_diff(pair: Pair) -> dict[str, float]:
    """{flax path: max |JAX - torch|} of every variable (params and batch_stats) right now."""
    ours = jax_variables(pair.jax_state)
    theirs = flat_arrays(torch_as_flax(pair.torch_state, ours))
    return {
        path: float(np.max(np.abs(value - theirs[path])))
        for path, value in flat_arrays(ours).items()
    }


def params_outliers(pair: Pair, tolerance: float) -> tuple[int, int]:
    """(entries differing by more than `tolerance`, all entries) of params and batch_stats."""
    import jax

    ours = jax_variables(pair.jax_state)
    theirs = torch_as_flax(pair.torch_state, ours)
    pairs = zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True)
    counts = [
        (int(np.sum(np.abs(np.asarray(a) - np.asarray(b)) > tolerance)), np.size(a))
        for a, b in pairs
    ]
    return sum(c for c, _ in counts), sum(n for _, n in counts)
