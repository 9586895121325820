"""The recipe knobs of scale-out compute the same in JAX and torch (common/optim.py).

From the same weights (comparisons/parity.py), a few steps with each knob on give the same
parameters in both frameworks; accumulating N batches equals one batch N times as large in
each framework; the accumulated gradients and the EMA survive a torch checkpoint round trip
(JAX keeps both in its optimizer state, which Orbax checkpoints whole).
"""

from __future__ import annotations

import copy

import jax
import numpy as np
import pytest
import torch

from comparisons.parity import make_pair, params_diff, parity_config, step_both
from comparisons.registry import get_project
from comparisons.weights import torch_to_flax
from jaxpath.common import optim as jax_optim
from jaxpath.common.loop import step_rng as jax_step_rng
from torchpath.common import optim as torch_optim
from torchpath.common.loop import step_rng as torch_step_rng

KNOBS = {
    "lr_scaled": {"lr_base_batch": 256, "schedule": "cosine", "warmup_epochs": 0.5},
    "clip": {"clip_grad_norm": 0.05},
    "no_decay_1d": {"weight_decay": 0.05, "decay_norms_and_biases": False},
    "ema": {"ema_decay": 0.5},
    "accumulate": {"accumulate_steps": 2, "clip_grad_norm": 0.05},
}
STEPS = 4


def _pair(project="mnist", model="mlp", **changes):
    project = get_project(project)
    base = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "epochs": 2, "batch_size": 16}
    config = parity_config(project, model, **{**base, **changes})
    return make_pair(project, config, steps_per_epoch=STEPS)


def _batches(pair, size: int, count: int) -> list[dict]:
    return [
        pair.project.example_batch(size, seed=10 + i, noise=True, config=pair.config)
        for i in range(count)
    ]


def _torch_params(state) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in state.model.named_parameters()}


@pytest.mark.parametrize("knob", sorted(KNOBS))
def test_knob_same_in_both_frameworks(knob):
    pair = _pair(**KNOBS[knob])
    for step, batch in enumerate(_batches(pair, 16, STEPS)):
        step_both(pair, batch, step)
    worst = max(params_diff(pair).values())
    assert worst <= 1e-5, params_diff(pair)
    moved = max(
        np.abs(v - pair.weights["torch"][k].numpy()).max()
        for k, v in _torch_params(pair.torch_state).items()
    )
    assert moved > 1e-3  # the steps did train
    if knob == "ema":  # the averages agree too, ported like the weights
        ema = {"params": jax_optim.ema_of(pair.jax_state.opt_state)}
        averaged = copy.deepcopy(pair.torch_state.model)
        averaged.load_state_dict(pair.torch_state.optimizer.ema_state_dict(pair.torch_state.model))
        ported = torch_to_flax(averaged, ema)
        ema_leaves = jax.tree.leaves(ema)
        for ours, theirs in zip(ema_leaves, jax.tree.leaves(ported), strict=True):
            np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=1e-5, rtol=0)
        weights = jax.tree.leaves(pair.jax_state.params)
        lag = [np.abs(a - b).max() for a, b in zip(ema_leaves, weights, strict=True)]
        assert max(lag) > 1e-4  # the average trails the weights


def test_no_decay_1d_puts_biases_and_norms_in_groups_without_decay():
    pair = _pair("cifar10", "speedrun", weight_decay=0.05, decay_norms_and_biases=False)
    for group in pair.torch_state.optimizer.param_groups:
        dims = {p.ndim for p in group["params"]}
        assert dims <= {1} if group["weight_decay"] == 0 else dims.isdisjoint({0, 1})
    assert any(p.ndim == 1 for g in pair.torch_state.optimizer.param_groups for p in g["params"])


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_accumulation_equals_the_large_batch(framework):
    small = _pair(accumulate_steps=2, batch_size=8)
    large = _pair(batch_size=16)
    batches = _batches(large, 16, 2)
    for step, batch in enumerate(batches):
        halves = [{k: v[i * 8 : (i + 1) * 8] for k, v in batch.items()} for i in range(2)]
        for i, half in enumerate(halves):
            _step(small, framework, half, 2 * step + i)
        _step(large, framework, batch, step)
    if framework == "torch":
        a, b = _torch_params(small.torch_state), _torch_params(large.torch_state)
    else:
        a = dict(enumerate(jax.tree.leaves(small.jax_state.params)))
        b = dict(enumerate(jax.tree.leaves(large.jax_state.params)))
    for key in a:
        np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]), atol=1e-6, rtol=0)


def _step(pair, framework: str, batch: dict, step: int) -> None:
    train = pair.torch_train if framework == "torch" else pair.jax_train
    state = pair.torch_state if framework == "torch" else pair.jax_state
    step_rng = torch_step_rng if framework == "torch" else jax_step_rng
    state, _ = train.train_step(state, train.to_device(batch), step_rng(pair.config.seed, step))
    if framework == "jax":
        pair.jax_state = state


def test_torch_resume_mid_accumulation_is_exact():
    knobs = {"accumulate_steps": 2, "ema_decay": 0.5, "clip_grad_norm": 0.05}
    straight, resumed = _pair(**knobs), _pair(**knobs)
    batches = _batches(straight, 16, 3)
    for step, batch in enumerate(batches):
        _step(straight, "torch", batch, step)
    _step(resumed, "torch", batches[0], 0)
    saved = {
        "model": resumed.torch_state.model.state_dict(),
        "optimizer": resumed.torch_state.optimizer.state_dict(),
        "scheduler": resumed.torch_state.scheduler.state_dict(),
    }
    fresh = _pair(**knobs)  # a new process: new tensors, no gradients
    fresh.torch_state.model.load_state_dict(saved["model"])
    fresh.torch_state.optimizer.load_state_dict(saved["optimizer"])
    fresh.torch_state.scheduler.load_state_dict(saved["scheduler"])
    assert fresh.torch_state.optimizer.pending == 1
    for step, batch in enumerate(batches[1:], start=1):
        _step(fresh, "torch", batch, step)
    for key, value in _torch_params(straight.torch_state).items():
        np.testing.assert_array_equal(_torch_params(fresh.torch_state)[key], value)
    torch.testing.assert_close(
        fresh.torch_state.optimizer.ema_state_dict(fresh.torch_state.model),
        straight.torch_state.optimizer.ema_state_dict(straight.torch_state.model),
        rtol=0,
        atol=0,
    )


def test_lr_scales_with_the_global_batch():
    config = parity_config(get_project("mnist"), lr=0.1, lr_base_batch=256, batch_size=64)
    assert config.peak_lr() == pytest.approx(0.025)
    accumulated = parity_config(
        get_project("mnist"), lr=0.1, lr_base_batch=256, batch_size=64, accumulate_steps=4
    )
    assert accumulated.peak_lr() == pytest.approx(0.1)
    optimizer, _ = torch_optim.make_optimizer(accumulated, 10, [torch.nn.Parameter(torch.zeros(2))])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    assert float(jax_optim.make_schedule(accumulated, 10)(0)) == pytest.approx(0.1)
