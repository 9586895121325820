"""Regression: the hand-derived NumPy oracle against jax.grad, autograd and the exact optima.

Tolerances, each about 3x (or more) above what was measured here:
* gradients 1e-6 in float64: the formulas are exact, only rounding differs;
* SGD steps 1e-5 in float32 (three steps of values of order 1; measured ~1e-7);
* after the default recipe (40 epochs of SGD, cosine decay), every implementation within
  relative parameter distance 1e-2 (synthetic; measured 1e-3 to 3e-3), 2e-2 (diabetes; 6e-3)
  and 3e-2 (breast cancer; 1e-2) of the exact optimum, and within a relative objective gap of
  1e-4 (synthetic; <= 4e-5) or 1e-3 (real; <= 2.3e-4): mini-batch SGD stops near the optimum;
* the frameworks within 1e-5 relative distance of the oracle's own SGD run, the same steps in
  float32 instead of float64 (measured 2e-7 to 5e-7).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
import torch

from comparisons.parity import make_pair
from comparisons.registry import get_project
from jaxpath.regression import train as jax_train
from shared_data.batches import iterate_batches
from shared_data.byhand import regression as byhand
from shared_data.configs.base import ConfigError, override
from shared_data.configs.regression import get_config, get_task
from shared_data.errors import DataError
from shared_data.tabular import load_for_config, load_tabular
from torchpath.regression import train as torch_train

PROJECT = get_project("regression")
TRUTH_TOLERANCE = {"linear": 0.05, "logistic": 0.25, "softmax": 0.25}
MODELS = ("linear", "logistic", "softmax")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Steps this small gain nothing from intra-op threads, which stall on busy shared cores
    (measured here: 7 ms instead of 60 us per step with 2 threads under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _float64_problem(model: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    k = 4 if model == "softmax" else 1
    x = rng.standard_normal((12, 5))
    y = rng.standard_normal(12) if model == "linear" else rng.integers(0, max(k, 2), 12)
    params = {"kernel": rng.standard_normal((5, k)), "bias": rng.standard_normal(k)}
    return x, y, params


def _batch(model: str, x, y) -> dict:
    return {"x": x, ("target" if model == "linear" else "label"): y}


@pytest.mark.parametrize("model", MODELS)
def test_hand_gradients_equal_jax_grad_and_autograd(model):
    x, y, params = _float64_problem(model)
    l2 = 0.3
    expected = byhand.grad(model, params, x, y, l2)
    config = dataclasses.replace(
        get_config("smoke"), model=model, l2=l2, num_features=5, num_classes=4
    )
    state = jax_train.create_state(config, 1)
    with jax.enable_x64(True):
        (loss, _), grads = jax.value_and_grad(jax_train.loss_fn, has_aux=True)(
            {"fc": params}, state, _batch(model, x, y), None
        )
    assert float(loss) == pytest.approx(byhand.loss(model, params, x, y, l2), abs=1e-12)
    for key in ("kernel", "bias"):
        assert grads["fc"][key].dtype == np.float64
        np.testing.assert_allclose(np.asarray(grads["fc"][key]), expected[key], atol=1e-6)

    tstate = torch_train.create_state(config, 1)
    tstate.model.double()
    with torch.no_grad():
        tstate.model.fc.weight.copy_(torch.from_numpy(params["kernel"].T))
        tstate.model.fc.bias.copy_(torch.from_numpy(params["bias"]))
    tbatch = {k: torch.from_numpy(v) for k, v in _batch(model, x, y).items()}
    loss, _ = torch_train.loss_fn(tstate, tbatch)
    loss.backward()
    np.testing.assert_allclose(tstate.model.fc.weight.grad.numpy().T, expected["kernel"], atol=1e-6)
    np.testing.assert_allclose(tstate.model.fc.bias.grad.numpy(), expected["bias"], atol=1e-6)


def _params_of(pair) -> dict[str, dict[str, np.ndarray]]:
    fc = pair.torch_state.model.fc
    return {
        "jax": {k: np.asarray(v, np.float64) for k, v in pair.jax_state.params["fc"].items()},
        "torch": {
            "kernel": fc.weight.detach().numpy().T.astype(np.float64),
            "bias": fc.bias.detach().numpy().astype(np.float64),
        },
    }


def _train_all(config, arrays, steps: int | None = None):
    """The oracle and both frameworks over the same batches from the same (torch) init."""
    pair = make_pair(PROJECT, config, steps_per_epoch=len(arrays["x"]) // config.batch_size)
    start = _params_of(pair)["torch"]
    oracle = byhand.fit_for_config(dataclasses.replace(config, max_steps=steps), arrays, start)
    step = 0
    for epoch in range(config.epochs):
        for batch in iterate_batches(arrays, config.batch_size, seed=config.seed, epoch=epoch):
            if steps is not None and step >= steps:
                break
            pair.jax_state, _ = jax_train.train_step(
                pair.jax_state, jax_train.to_device(batch), None
            )
            torch_train.train_step(pair.torch_state, torch_train.to_device(batch), step)
            step += 1
    return {"byhand": oracle, **_params_of(pair)}


@pytest.mark.parametrize("model", MODELS)
def test_sgd_steps_equal_the_oracle(model):
    # Three steps: the first is plain SGD, the next two add momentum and the cosine decay.
    config = dataclasses.replace(get_config("smoke"), model=model)
    data = load_for_config(config)
    results = _train_all(config, data.train, steps=3)
    for fw in ("jax", "torch"):
        for key in ("kernel", "bias"):
            np.testing.assert_allclose(results[fw][key], results["byhand"][key], atol=1e-5)


@pytest.mark.parametrize(
    "model,dataset,max_error,max_gap",
    [
        ("linear", "synthetic", 1e-2, 1e-4),
        ("logistic", "synthetic", 1e-2, 1e-4),
        ("softmax", "synthetic", 1e-2, 1e-4),
        ("linear", "diabetes", 2e-2, 1e-3),
        ("logistic", "breast_cancer", 3e-2, 1e-3),
    ],
)
def test_all_three_reach_the_exact_optimum(model, dataset, max_error, max_gap):
    config = dataclasses.replace(get_config("default"), model=model, dataset=dataset)
    data = load_for_config(config)
    x = data.train["x"].astype(np.float64)
    y = data.train[data.target_key].astype(np.float64 if model == "linear" else np.int64)
    ref = byhand.reference(model, x, y, config.l2)
    # The reference is the optimum of the oracle's objective (this checks C = 1 / (l2 N)).
    flat_grad = np.concatenate(
        [g.ravel() for g in byhand.grad(model, ref, x, y, config.l2).values()]
    )
    assert np.max(np.abs(flat_grad)) < 1e-4 * max(1.0, np.abs(y).mean())
    if data.truth is not None:
        # The known answer, up to the sampling noise of 800 examples (measured: 0.01 linear,
        # 0.10 logistic, 0.14 softmax), against a nearly unpenalised optimum.
        unpenalised = byhand.reference(model, x, y, 1e-4)
        assert byhand.relative_error(model, data.truth, unpenalised) < TRUTH_TOLERANCE[model]
    results = _train_all(config, data.train)
    j_ref = byhand.loss(model, ref, x, y, config.l2)
    for name, params in results.items():
        assert byhand.relative_error(model, params, ref) < max_error, name
        assert byhand.loss(model, params, x, y, config.l2) - j_ref < max_gap * abs(j_ref), name
    for fw in ("jax", "torch"):
        assert byhand.relative_error(model, results[fw], results["byhand"]) < 1e-5, fw


def test_data_is_split_by_seed_and_standardised_on_train():
    a = load_tabular("breast_cancer", "logistic", seed=3)
    b = load_tabular("breast_cancer", "logistic", seed=3)
    c = load_tabular("breast_cancer", "logistic", seed=4)
    np.testing.assert_array_equal(a.train["x"], b.train["x"])
    assert not np.array_equal(a.train["x"], c.train["x"])
    assert a.train["x"].dtype == np.float32 and a.train["label"].dtype == np.int32
    np.testing.assert_allclose(a.train["x"].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(a.train["x"].std(0), 1, atol=1e-4)
    d = load_tabular("synthetic", "linear", seed=0, noise=0.0)
    assert d.train["target"].dtype == np.float32
    predicted = byhand.outputs("linear", d.truth, d.train["x"].astype(np.float64))
    np.testing.assert_allclose(predicted, d.train["target"], rtol=1e-4, atol=1e-4)


def test_linear_task_reports_mse_and_r2():
    task = get_task(get_config())
    assert (task.headline, task.higher_is_better, task.metric_names) == (
        "mse",
        False,
        ("loss", "mse", "r2"),
    )
    assert task.evaluator(np.array([1.0, 2.0, 3.0]), {"target": np.array([1.0, 2.0, 3.0])}) == {
        "r2": 1.0
    }


@pytest.mark.parametrize(
    "change",
    [
        "model=ridge",
        "dataset=iris",
        "l2=-1",
        "test_fraction=0.9",
        "num_classes=1",
        "dataset=digits",
    ],
)
def test_bad_config_values_raise_config_error(change):
    with pytest.raises(ConfigError, match=repr(change.split("=")[0])):
        override(get_config(), [change])


def test_bad_data_requests_raise_data_error():
    with pytest.raises(DataError, match="'dataset'"):
        load_tabular("iris", "linear")
    with pytest.raises(DataError, match="no linear target"):
        load_tabular("digits", "linear")
    with pytest.raises(DataError, match="'test_fraction'"):
        load_tabular("diabetes", "linear", test_fraction=1.5)
