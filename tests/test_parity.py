"""Same weights -> same logits; one optimizer step on the same batch -> same parameters."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from comparisons.registry import get_project
from comparisons.weights import torch_to_flax
from jaxpath.common.loop import step_rng

PROJECT = get_project("mnist")


def _pair(model: str, **changes):
    config = dataclasses.replace(PROJECT.config("smoke"), model=model, dropout=False, **changes)
    jax_train, torch_train = PROJECT.module("jax"), PROJECT.module("torch")
    torch_state = torch_train.create_state(config, 10)
    template = {"params": jax_train.create_state(config, 10).params}
    variables = torch_to_flax(
        torch_state.model.state_dict(), template, torch_state.model.flattened_inputs
    )
    return (
        config,
        jax_train,
        jax_train.create_state(config, 10, variables),
        torch_train,
        torch_state,
    )


@pytest.mark.parametrize("model", ["mlp", "cnn", "fastcnn"])
def test_same_weights_same_logits(model):
    _, jax_train, jax_state, torch_train, torch_state = _pair(model)
    batch = PROJECT.example_batch(16, seed=3)
    jax_logits = np.asarray(jax_train.predict(jax_state, jax_train.to_device(batch)))
    torch_logits = torch_train.predict(torch_state, torch_train.to_device(batch)).numpy()
    assert jax_logits.shape == torch_logits.shape == (16, 10)
    assert np.max(np.abs(jax_logits - torch_logits)) <= 1e-5


@pytest.mark.parametrize("model", ["mlp", "cnn", "fastcnn"])
@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.05), ("adam", 1e-3), ("adadelta", 1.0)])
def test_one_step_same_parameters(model, optimizer, lr):
    config, jax_train, jax_state, torch_train, torch_state = _pair(
        model, optimizer=optimizer, lr=lr, weight_decay=1e-4, schedule="step"
    )
    batch = PROJECT.example_batch(32, seed=4)
    jax_state, jax_metrics = jax_train.train_step(
        jax_state, jax_train.to_device(batch), step_rng(config.seed, 0)
    )
    torch_state, torch_metrics = torch_train.train_step(
        torch_state, torch_train.to_device(batch), 0
    )
    np.testing.assert_allclose(
        float(jax_metrics["loss_sum"]), float(torch_metrics["loss_sum"]), rtol=1e-5
    )
    stepped = torch_to_flax(
        torch_state.model.state_dict(),
        {"params": jax_state.params},
        torch_state.model.flattened_inputs,
    )
    diffs = jax.tree.map(
        lambda a, b: float(np.max(np.abs(np.asarray(a) - b))), jax_state.params, stepped["params"]
    )
    worst = max(jax.tree.leaves(diffs))
    assert worst <= 1e-4, diffs
    # The step really moved the weights, so the comparison is not vacuous.
    moved = jax.tree.map(
        lambda a, b: float(np.max(np.abs(np.asarray(a) - b))),
        jax_state.params,
        _pair(model)[2].params,
    )
    assert max(jax.tree.leaves(moved)) > 1e-4


def test_two_steps_with_schedule_stay_equal():
    config, jax_train, jax_state, torch_train, torch_state = _pair(
        "mlp", optimizer="adam", lr=3e-3, schedule="onecycle", epochs=1
    )
    for step in range(3):
        batch = PROJECT.example_batch(16, seed=10 + step)
        jax_state, _ = jax_train.train_step(
            jax_state, jax_train.to_device(batch), step_rng(config.seed, step)
        )
        torch_train.train_step(torch_state, torch_train.to_device(batch), step)
    stepped = torch_to_flax(torch_state.model.state_dict(), {"params": jax_state.params})
    worst = max(
        jax.tree.leaves(
            jax.tree.map(
                lambda a, b: float(np.max(np.abs(a - b))), jax_state.params, stepped["params"]
            )
        )
    )
    assert worst <= 1e-4
