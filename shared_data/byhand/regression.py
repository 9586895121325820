"""Linear, logistic and softmax regression in NumPy, gradients derived by hand.

The three models share one affine map, scores s = x W + b (x [N, d], W [d, k], b [k]; k = 1
for linear and logistic), and differ only in the loss. Every objective is

    J(W, b) = (1/N) sum_i loss(s_i, y_i) + (l2 / 2) ||W||^2     (the bias is not penalised)

so with g_i = d loss(s_i, y_i) / d s_i (a row of k numbers) the chain rule through s = x W + b
gives, for every model alike,

    dJ/dW = x^T G / N + l2 W,    dJ/db = sum_i g_i / N,    G = [g_1; ...; g_N].

Only g_i differs (derived in `score_grad`). Parameters use Flax's layout, {"kernel": [d, k],
"bias": [k]}; torch's Linear holds kernel.T as its weight.

The references are exact optima of the same J: ridge's normal equations for linear, and
scikit-learn's LogisticRegression (lbfgs, tol 1e-10) for the other two, whose objective
C sum_i loss_i + ||W||^2 / 2 is N C times J when C = 1 / (l2 N).

Run `python -m shared_data.byhand.regression [--model linear|logistic|softmax]` to fit the
default config's dataset with mini-batch SGD and print the distance to the reference.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping

import numpy as np

from shared_data.batches import iterate_batches, num_batches, train_val_split

MODELS = ("linear", "logistic", "softmax")
SCHEDULES = ("constant", "cosine")

Params = dict[str, np.ndarray]


def init_params(num_features: int, num_outputs: int, dtype=np.float64) -> Params:
    """Zero weights and biases (each objective is convex, so the start does not matter)."""
    return {
        "kernel": np.zeros((num_features, num_outputs), dtype),
        "bias": np.zeros((num_outputs,), dtype),
    }


def scores(params: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """s = x W + b, [N, k]."""
    return x @ params["kernel"] + params["bias"]


def outputs(model: str, params: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """What `predict` returns: predictions [N] (linear), logits [N] (logistic) or [N, k]."""
    s = scores(params, x)
    return s if model == "softmax" else s[:, 0]


def _log_softmax(s: np.ndarray) -> np.ndarray:
    # Subtracting the row max changes nothing mathematically and keeps exp() finite.
    shifted = s - s.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _sigmoid(s: np.ndarray) -> np.ndarray:
    # 1 / (1 + e^-s) overflows for very negative s; tanh's form does not.
    return 0.5 * (1.0 + np.tanh(0.5 * s))


def per_example_loss(model: str, s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """loss(s_i, y_i) per example, [N]: squared error, sigmoid or softmax cross-entropy."""
    if model == "linear":
        return (s[:, 0] - y) ** 2
    if model == "logistic":
        # -y log sigma(s) - (1-y) log(1-sigma(s)) == log(1 + e^s) - y s
        return np.logaddexp(0.0, s[:, 0]) - y * s[:, 0]
    if model == "softmax":
        return -_log_softmax(s)[np.arange(len(y)), y]
    raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")


def score_grad(model: str, s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """G = d loss(s_i, y_i) / d s_i for every example, [N, k] (derivations inline)."""
    if model == "linear":
        # d/ds (s - y)^2 = 2 (s - y)
        return 2.0 * (s - y[:, None])
    if model == "logistic":
        # d/ds [log(1 + e^s) - y s] = e^s / (1 + e^s) - y = sigma(s) - y
        return _sigmoid(s) - y[:, None]
    if model == "softmax":
        # loss = -s_y + log sum_j e^{s_j}; d/ds_c = -[c == y] + e^{s_c} / sum_j e^{s_j}
        #      = p_c - onehot(y)_c
        p = np.exp(_log_softmax(s))
        p[np.arange(len(y)), y] -= 1.0
        return p
    raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")


def loss(model: str, params: Mapping[str, np.ndarray], x, y, l2: float) -> float:
    """J = mean loss + (l2 / 2) ||W||^2."""
    data = per_example_loss(model, scores(params, x), y).mean()
    return float(data + 0.5 * l2 * np.sum(params["kernel"] ** 2))


def grad(model: str, params: Mapping[str, np.ndarray], x, y, l2: float) -> Params:
    """(dJ/dW, dJ/db) = (x^T G / N + l2 W, sum_i g_i / N), as a params-shaped dict."""
    g = score_grad(model, scores(params, x), y) / len(y)
    return {"kernel": x.T @ g + l2 * params["kernel"], "bias": g.sum(axis=0)}


def learning_rate(schedule: str, lr: float, step: int, total: int, warmup: int = 0) -> float:
    """The rate of `step`: constant, or optax.warmup_cosine_decay_schedule(0, lr, warmup, total)."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        if step < warmup:
            return lr * step / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"the oracle knows schedules {', '.join(SCHEDULES)}, not {schedule!r}")


def sgd_step(params: Params, grads: Params, velocity: Params | None, lr: float, momentum: float):
    """(params, velocity) after one SGD step with torch's momentum: v = m v + g; p -= lr v."""
    velocity = (
        dict(grads) if velocity is None else {k: momentum * velocity[k] + grads[k] for k in params}
    )
    return {k: params[k] - lr * velocity[k] for k in params}, velocity


def fit_sgd(
    model: str,
    arrays: Mapping[str, np.ndarray],
    *,
    l2: float,
    lr: float,
    epochs: int,
    batch_size: int,
    seed: int,
    momentum: float = 0.0,
    schedule: str = "constant",
    warmup_epochs: float = 0.0,
    params: Params | None = None,
    num_outputs: int | None = None,
    max_steps: int | None = None,
) -> Params:
    """Mini-batch SGD over shared_data's batches, in the frameworks' order.

    The driver's order exactly: `iterate_batches` with the seed and epoch, the last partial
    batch dropped; the rate of each step from `learning_rate`, momentum as torch's SGD.
    """
    key = "target" if model == "linear" else "label"
    x_all = arrays["x"]
    if params is None:
        if num_outputs is None:  # softmax: as many classes as the labels show
            num_outputs = int(arrays["label"].max()) + 1 if model == "softmax" else 1
        params = init_params(x_all.shape[1], num_outputs)
    steps_per_epoch = num_batches(len(x_all), batch_size, "drop")
    total = epochs * steps_per_epoch
    total = total if max_steps is None else min(max_steps, total)
    warmup = int(warmup_epochs * steps_per_epoch)
    velocity, step = None, 0
    for epoch in range(epochs):
        for batch in iterate_batches(arrays, batch_size, seed=seed, epoch=epoch, remainder="drop"):
            if step >= total:
                return params
            x = batch["x"].astype(params["kernel"].dtype)
            y = batch[key] if model != "linear" else batch[key].astype(x.dtype)
            rate = learning_rate(schedule, lr, step, epochs * steps_per_epoch, warmup)
            grads = grad(model, params, x, y, l2)
            params, velocity = sgd_step(params, grads, velocity, rate, momentum)
            step += 1
    return params


def fit_for_config(config, arrays: Mapping[str, np.ndarray], params: Params | None = None):
    """`fit_sgd` with the hyperparameters of a regression config (shared_data.configs)."""
    from shared_data.configs.regression import num_outputs

    if config.optimizer != "sgd" or config.weight_decay:
        raise ValueError("the oracle is plain SGD (momentum allowed), without weight_decay")
    train, _ = train_val_split(arrays, config.val_size, config.seed)  # as the driver does
    return fit_sgd(
        config.model,
        train,
        l2=config.l2,
        lr=config.lr,
        epochs=config.epochs,
        batch_size=config.batch_size,
        seed=config.seed,
        momentum=config.momentum,
        schedule=config.schedule,
        warmup_epochs=config.warmup_epochs,
        params=params,
        num_outputs=num_outputs(config),
        max_steps=config.max_steps,
    )


def solve_linear(x: np.ndarray, y: np.ndarray, l2: float) -> Params:
    """Ridge by the normal equations: (Z^T Z + (N l2 / 2) D) theta = Z^T y, Z = [x 1].

    dJ/dtheta = (2/N) Z^T (Z theta - y) + l2 D theta = 0, where D is the identity on the
    weights and 0 on the bias; l2 = 0 is ordinary least squares.
    """
    n, d = x.shape
    z = np.hstack([x, np.ones((n, 1))]).astype(np.float64)
    penalty = np.diag(np.r_[np.full(d, 0.5 * n * l2), 0.0])
    theta = np.linalg.lstsq(z.T @ z + penalty, z.T @ np.asarray(y, np.float64), rcond=None)[0]
    return {"kernel": theta[:d, None], "bias": theta[d:]}


def solve_classifier(model: str, x: np.ndarray, y: np.ndarray, l2: float) -> Params:
    """scikit-learn's LogisticRegression with C = 1 / (l2 N): the optimum of the same J."""
    from sklearn.linear_model import LogisticRegression

    if l2 <= 0:
        raise ValueError(
            "the classification references need l2 > 0 (separable data has no optimum)"
        )
    clf = LogisticRegression(C=1.0 / (l2 * len(y)), tol=1e-10, max_iter=10_000)
    clf.fit(np.asarray(x, np.float64), y)
    if model == "softmax" and len(clf.classes_) != int(y.max()) + 1:
        raise ValueError("every class must occur in the training data")
    # coef_ is [k, d] (k = 1 for binary): Flax's kernel layout is its transpose.
    return {"kernel": clf.coef_.T.copy(), "bias": clf.intercept_.copy()}


def reference(model: str, x: np.ndarray, y: np.ndarray, l2: float) -> Params:
    """The exact minimiser of J on (x, y): normal equations or scikit-learn."""
    if model == "linear":
        return solve_linear(x, y, l2)
    return solve_classifier(model, x, y, l2)


def _flat(model: str, params: Mapping[str, np.ndarray]) -> np.ndarray:
    kernel = np.asarray(params["kernel"], np.float64)
    bias = np.asarray(params["bias"], np.float64)
    if model == "softmax":
        # Softmax ignores a shift common to every class (a vector added to each column of
        # W, a number to each bias): compare the centred representatives of each function.
        kernel = kernel - kernel.mean(axis=1, keepdims=True)
        bias = bias - bias.mean()
    return np.r_[kernel.ravel(), bias]


def relative_error(model: str, params: Mapping[str, np.ndarray], ref: Mapping) -> float:
    """||theta - theta*|| / ||theta*|| over weights and biases (centred per class for softmax)."""
    ours, theirs = _flat(model, params), _flat(model, ref)
    return float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))


def main(argv: list[str] | None = None) -> int:
    """Fit one model of the regression config by hand; print loss and distance to reference."""
    from shared_data.configs.base import override
    from shared_data.configs.regression import get_config
    from shared_data.tabular import load_for_config

    parser = argparse.ArgumentParser(prog="python -m shared_data.byhand.regression")
    parser.add_argument("--variant", default="default")
    parser.add_argument("--model", choices=MODELS)
    parser.add_argument("--dataset")
    args = parser.parse_args(argv)
    config = get_config(args.variant)
    changes = {k: v for k, v in (("model", args.model), ("dataset", args.dataset)) if v}
    config = override(config, changes)
    data = load_for_config(config)
    key = data.target_key
    train_y = data.train[key].astype(np.float64) if key == "target" else data.train[key]
    x = data.train["x"].astype(np.float64)
    params = fit_for_config(config, data.train)
    ref = reference(config.model, x, train_y, config.l2)
    sgd_j, ref_j = (loss(config.model, p, x, train_y, config.l2) for p in (params, ref))
    print(f"{config.model} on {data.name} ({len(x)} train, {data.num_features} features)")
    print(f"train objective J: SGD {sgd_j:.6f}, reference {ref_j:.6f}, gap {sgd_j - ref_j:.2e}")
    print(
        f"relative parameter error ||theta - theta*|| / ||theta*||: "
        f"{relative_error(config.model, params, ref):.2e}"
    )
    for name, fitted in (("SGD", params), ("reference", ref)):
        test_s = outputs(config.model, fitted, data.test["x"].astype(np.float64))
        if config.model == "linear":
            print(f"{name} test MSE {np.mean((test_s - data.test[key]) ** 2):.4f}")
        else:
            predicted = test_s > 0 if config.model == "logistic" else test_s.argmax(axis=1)
            print(f"{name} test accuracy {np.mean(predicted == data.test[key]):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
