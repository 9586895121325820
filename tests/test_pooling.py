"""JAX's 2x2 max-pool as reshape + max: the same values and gradients as nn.max_pool, ties too."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import linen as nn

from comparisons.registry import get_project
from jaxpath.common.pooling import max_pool, max_pool_2x2
from shared_data.configs.base import override


def _inputs(ties: bool, shape=(2, 6, 8, 3)) -> np.ndarray:
    rng = np.random.default_rng(0)
    if not ties:
        return rng.standard_normal(shape, dtype=np.float32)
    # Small integers: most windows hold two to four equal maxima; a ReLU's zeros, everywhere.
    x = rng.integers(-1, 2, shape).astype(np.float32)
    x[0, :2, :2] = 0.0
    return np.maximum(x, 0.0)


def _value_and_grad(pool, x, cotangent):
    out, vjp = jax.vjp(pool, jnp.asarray(x))
    return np.asarray(out), np.asarray(vjp(jnp.asarray(cotangent))[0])


STOCK = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))  # noqa: E731


@pytest.mark.parametrize("ties", [False, True])
def test_same_values_and_gradients_as_nn_max_pool(ties):
    x = _inputs(ties)
    g = np.random.default_rng(1).standard_normal((2, 3, 4, 3), dtype=np.float32)
    out, grad = _value_and_grad(max_pool, x, g)
    ref_out, ref_grad = _value_and_grad(STOCK, x, g)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(grad, ref_grad)  # bit for bit: a select, no arithmetic
    # torch's max_pool2d also sends each window's gradient to its first maximum.
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    F.max_pool2d(tx, 2).backward(torch.from_numpy(g.transpose(0, 3, 1, 2).copy()))
    np.testing.assert_array_equal(grad, tx.grad.numpy().transpose(0, 2, 3, 1))
    if ties:  # every cotangent lands on exactly one input per window
        assert np.count_nonzero(grad) == np.count_nonzero(g)


def test_plain_jnp_max_splits_ties_which_is_why_the_rule_exists():
    x = jnp.array([1.0, 1.0, 0.0, 1.0]).reshape(1, 2, 2, 1)
    plain = lambda x: x.reshape(1, 1, 2, 1, 2, 1).max(axis=(2, 4)).sum()  # noqa: E731
    np.testing.assert_allclose(jax.grad(plain)(x).ravel(), [1 / 3, 1 / 3, 0, 1 / 3])
    np.testing.assert_array_equal(
        jax.grad(lambda x: max_pool_2x2(x).sum())(x).ravel(), [1, 0, 0, 0]
    )
    np.testing.assert_array_equal(jax.grad(lambda x: STOCK(x).sum())(x).ravel(), [1, 0, 0, 0])


def test_forward_mode_and_second_use():
    x = jnp.asarray(_inputs(True))
    t = jnp.ones_like(x)
    _, tangent = jax.jvp(max_pool_2x2, (x,), (t,))
    np.testing.assert_array_equal(tangent, jnp.ones((2, 3, 4, 3)))


@pytest.mark.parametrize(
    "shape, window, strides, padding",
    [((2, 7, 8, 3), (2, 2), (2, 2), "VALID"), ((2, 6, 8, 3), (3, 3), (2, 2), "VALID"),
     ((2, 6, 8, 3), (2, 2), (1, 1), "VALID"), ((2, 7, 7, 3), (2, 2), (2, 2), "SAME")],
)  # fmt: skip
def test_other_windows_fall_back_to_nn_max_pool(shape, window, strides, padding):
    x = jnp.asarray(np.random.default_rng(2).standard_normal(shape, dtype=np.float32))
    out = max_pool(x, window, strides, padding)
    np.testing.assert_array_equal(out, nn.max_pool(x, window, strides=strides, padding=padding))
    assert "reduce_window_max" in str(jax.make_jaxpr(max_pool, static_argnums=(1, 2, 3))(
        x, window, strides, padding))  # fmt: skip


def test_unknown_formulation_is_named():
    with pytest.raises(ValueError, match="maxpool"):
        max_pool(jnp.zeros((1, 2, 2, 1)), formulation="maxpool")


def _cnn_grads(pool: str, model: str):
    project = get_project("mnist")
    config = override(project.config("smoke"), {"model": model, "pool": pool, "dropout": False})
    train = project.module("jax", "train")
    state = train.create_state(config, 10)
    batch = train.to_device(project.example_batch(8, 0, config=config))
    rng = jax.random.key(0)
    (loss, logits), grads = jax.value_and_grad(train.loss_fn, has_aux=True)(
        state.params, state, batch, rng
    )
    return logits, grads


@pytest.mark.parametrize("model", ["cnn", "fastcnn"])
def test_models_compute_the_same_function_in_both_formulations(model):
    logits, grads = _cnn_grads("reshape", model)
    ref_logits, ref_grads = _cnn_grads("reduce_window", model)
    np.testing.assert_array_equal(logits, ref_logits)
    jax.tree.map(np.testing.assert_array_equal, grads, ref_grads)


def test_optimized_hlo_shows_the_lesson():
    """Stock: select_and_scatter, expanded by XLA:CPU into a scatter. Reshape: no scatter."""
    x = jnp.zeros((4, 24, 24, 8))

    def hlo(pool, optimized):
        lowered = jax.jit(jax.grad(lambda x: pool(x).sum())).lower(x)
        return lowered.compile().as_text() if optimized else lowered.as_text(dialect="hlo")

    assert "select-and-scatter" in hlo(STOCK, optimized=False)
    assert "scatter" in hlo(STOCK, optimized=True)
    for optimized in (False, True):
        text = hlo(max_pool, optimized)
        assert "scatter" not in text and "reduce-window" not in text
