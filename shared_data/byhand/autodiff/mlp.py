"""The MNIST MLP (784-256-128-10, ReLU) on the toy engine, trained by plain SGD.

The training step is one graph (`sgd_step`: forward, generated backward, update), simplified
by the passes and run by the interpreter; nothing is differentiated at run time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from . import tracer as T
from .grad import grad, sgd_step
from .interpret import evaluate
from .ir import Graph
from .passes import simplify

SIZES = (784, 256, 128, 10)
PARAM_NAMES = ("w1", "b1", "w2", "b2", "w3", "b3")


def init_params(sizes: Sequence[int] = SIZES, seed: int = 0, dtype=np.float32) -> list[np.ndarray]:
    """Flax's Dense init: LeCun-normal kernels (std 1/sqrt(fan_in), truncated), zero biases."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        w = rng.standard_normal((fan_in, fan_out))
        while np.any(np.abs(w) > 2):  # truncate at two standard deviations
            bad = np.abs(w) > 2
            w[bad] = rng.standard_normal(bad.sum())
        params += [(w / np.sqrt(fan_in) / 0.8796).astype(dtype), np.zeros(fan_out, dtype)]
    return params


def logits_fn(w1, b1, w2, b2, w3, b3, x):
    """relu(x W1 + b1) -> relu(. W2 + b2) -> . W3 + b3: written once, traced."""
    h = T.relu(x @ w1 + b1)
    h = T.relu(h @ w2 + b2)
    return h @ w3 + b3


def loss_fn(w1, b1, w2, b2, w3, b3, x, labels):
    """Mean softmax cross-entropy of the MLP's logits."""
    return T.softmax_cross_entropy(logits_fn(w1, b1, w2, b2, w3, b3, x), labels)


def _specs(params, batch: int, dtype):
    return [np.zeros(p.shape, dtype) for p in params] + [
        np.zeros((batch, params[0].shape[0]), dtype)
    ]


def loss_graph(params, batch: int, dtype=np.float32) -> Graph:
    """The loss as a graph of (*params, x [batch, 784], labels [batch] int32)."""
    specs = _specs(params, batch, dtype) + [np.zeros(batch, np.int32)]
    return T.trace(loss_fn, *specs, names=(*PARAM_NAMES, "x", "labels"))


def logits_graph(params, batch: int, dtype=np.float32) -> Graph:
    return T.trace(logits_fn, *_specs(params, batch, dtype), names=(*PARAM_NAMES, "x"))


def step_graph(params, batch: int, lr: float, dtype=np.float32, passes: bool = True) -> Graph:
    """One SGD step (loss, *new params) as a graph; simplified by the passes unless asked not."""
    step = sgd_step(loss_graph(params, batch, dtype), list(range(len(params))), lr)
    return simplify(step) if passes else step


def grad_graph(params, batch: int, dtype=np.float64) -> Graph:
    """d loss / d params as a graph (unsimplified): what the tests check against JAX and torch."""
    return grad(loss_graph(params, batch, dtype), list(range(len(params))), return_value=True)


def accuracy(params, x: np.ndarray, labels: np.ndarray) -> float:
    """Test accuracy, the logits graph run on the whole set at once."""
    (logits,) = evaluate(logits_graph(params, len(x), params[0].dtype), *params, x)
    return float(np.mean(logits.argmax(axis=1) == labels))


def train(
    train_arrays: Mapping[str, np.ndarray],
    test_arrays: Mapping[str, np.ndarray],
    *,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 0.1,
    seed: int = 0,
    log: Callable[[dict], None] = print,
) -> tuple[list[np.ndarray], list[dict]]:
    """Plain SGD over shuffled batches (the last partial one dropped); one record per epoch.

    Arrays: {"x": float [N, 784], "label": int [N]}. Each record has the epoch, the mean
    train loss, the test accuracy and the mean step time in milliseconds.
    """
    from shared_data.batches import iterate_batches

    dtype = train_arrays["x"].dtype
    params = init_params((train_arrays["x"].shape[1], *SIZES[1:]), seed, dtype)
    step = step_graph(params, batch_size, lr, dtype)
    records = []
    for epoch in range(epochs):
        losses, seconds = [], 0.0
        for batch in iterate_batches(train_arrays, batch_size, seed=seed, epoch=epoch,
                                     remainder="drop"):  # fmt: skip
            start = time.perf_counter()
            loss, *params = evaluate(step, *params, batch["x"], batch["label"].astype(np.int32))
            seconds += time.perf_counter() - start
            losses.append(float(loss))
        record = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)),
            "test_accuracy": accuracy(params, test_arrays["x"], test_arrays["label"]),
            "ms_per_step": 1000.0 * seconds / max(1, len(losses)),
        }
        records.append(record)
        log(record)
    return params, records
