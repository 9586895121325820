"""The toy autodiff engine (shared_data/byhand/autodiff) against jax.grad and torch.autograd.

Each expression is written once against a small namespace of ops (`ad`, jnp or torch), so
the three systems differentiate the same function. Everything runs in float64; values and
gradients agree to 1e-6 (measured: 1e-15 to 1e-13, rounding only). Second derivatives
(reverse over reverse) agree with jax.hessian; finite differences (eps 1e-6) to 1e-6.
"""

from __future__ import annotations

import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from shared_data.byhand import autodiff as ad
from shared_data.byhand.autodiff import mlp

TOL = 1e-6


def _jax_sce(logits, labels):
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]


def _torch_sce(logits, labels):
    return torch.nn.functional.cross_entropy(logits, labels.long(), reduction="none")


AD = types.SimpleNamespace(
    tanh=ad.tanh, exp=ad.exp, log=ad.log, sigmoid=ad.sigmoid, relu=ad.relu,
    sum=lambda x, axis=None, keepdims=False: x.sum(axis, keepdims),
    mean=lambda x, axis=None, keepdims=False: x.mean(axis, keepdims),
    reshape=ad.reshape, transpose=ad.transpose,
    sce=lambda lg, lb: ad.softmax_cross_entropy(lg, lb, "none"),
)  # fmt: skip
JAX = types.SimpleNamespace(
    tanh=jnp.tanh, exp=jnp.exp, log=jnp.log, sigmoid=jax.nn.sigmoid, relu=jax.nn.relu,
    sum=lambda x, axis=None, keepdims=False: jnp.sum(x, axis, keepdims=keepdims),
    mean=lambda x, axis=None, keepdims=False: jnp.mean(x, axis, keepdims=keepdims),
    reshape=jnp.reshape, transpose=lambda x, perm=None: jnp.transpose(x, perm), sce=_jax_sce,
)  # fmt: skip


def _torch_reduce(fn):
    def reduce(x, axis=None, keepdims=False):
        return fn(x) if axis is None else fn(x, dim=axis, keepdim=keepdims)

    return reduce


TORCH = types.SimpleNamespace(
    tanh=torch.tanh, exp=torch.exp, log=torch.log, sigmoid=torch.sigmoid, relu=torch.relu,
    sum=_torch_reduce(torch.sum), mean=_torch_reduce(torch.mean),
    reshape=torch.reshape,
    transpose=lambda x, perm=None: x.permute(*(perm or reversed(range(x.ndim)))), sce=_torch_sce,
)  # fmt: skip


def _mlp(o, x, w1, b1, w2, b2, labels):
    return o.mean(o.sce(o.tanh(x @ w1 + b1) @ w2 + b2, labels))


# name -> (function of (ops, *args), argument shapes; "labels:N:K": N int labels in [0, K))
EXPRS = {
    "bcast_add": (lambda o, x, b: o.sum(o.tanh(x + b)), [(3, 4), (4,)]),
    "outer_mul": (lambda o, u, v: o.sum(o.exp(u * v)), [(3, 1), (1, 4)]),
    "sub_div_sigmoid": (lambda o, x, y: o.mean((x - y) / (o.sigmoid(y) + 1.0)), [(3, 4), (3, 4)]),
    "sum_keepdims": (
        lambda o, x: o.sum(o.log(o.sum(o.exp(x), axis=1, keepdims=True)) * x),
        [(3, 4)],
    ),
    "sum_axis0_mean_axis1": (
        lambda o, x: o.sum(o.sum(x, axis=0) ** 2.0) + o.sum(o.mean(x * x, axis=1)),
        [(3, 4)],
    ),
    "reshape_transpose": (
        lambda o, x, w: o.sum(o.tanh(o.transpose(o.reshape(x, (4, 3))) @ w)),
        [(3, 4), (4, 2)],
    ),
    "pow_scalars": (
        lambda o, x: o.sum(x**3.0 + (x * x + 1.0) ** 0.5 + (x * x + 2.0) ** -1.0),
        [(2, 3)],
    ),
    "relu_matmul": (lambda o, x, w: o.mean(o.relu(x @ w - 0.1)), [(4, 3), (3, 5)]),
    "neg_scalar_ops": (lambda o, x: o.sum(-x * 2.0 + 1.0 / (1.0 + x * x) - 3.0), [(5,)]),
    "sce_mean": (lambda o, lg, lb: o.mean(o.sce(lg, lb)), [(4, 5), "labels:4:5"]),
    "sce_weighted": (lambda o, lg, lb, w: o.sum(o.sce(lg, lb) * w), [(4, 5), "labels:4:5", (4,)]),
    "mlp": (_mlp, [(5, 6), (6, 7), (7,), (7, 3), (3,), "labels:5:3"]),
}


def _args(shapes, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for s in shapes:
        if isinstance(s, str):
            _, n, k = s.split(":")
            out.append(rng.integers(0, int(k), int(n)))
        else:
            out.append(rng.standard_normal(s))
    return out


def _graph(name):
    fn, shapes = EXPRS[name]
    return ad.trace(lambda *a: fn(AD, *a), *_args(shapes))


def _floats(args):
    return [i for i, a in enumerate(args) if a.dtype.kind == "f"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(EXPRS))
def test_values_and_gradients_equal_jax_and_torch(name):
    fn, shapes = EXPRS[name]
    args = _args(shapes)
    wrt = _floats(args)
    value, *grads = ad.evaluate(ad.grad(_graph(name), wrt, return_value=True), *args)

    with jax.enable_x64(True):
        jargs = [jnp.asarray(a) for a in args]
        jvalue, jgrads = jax.value_and_grad(lambda *a: fn(JAX, *a), argnums=wrt)(*jargs)
        assert jgrads[0].dtype == jnp.float64
        np.testing.assert_allclose(value, np.asarray(jvalue), atol=TOL, rtol=TOL)
        for g, jg in zip(grads, jgrads, strict=True):
            np.testing.assert_allclose(g, np.asarray(jg), atol=TOL, rtol=TOL)

    targs = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in args]
    tvalue = fn(TORCH, *targs)
    tgrads = torch.autograd.grad(tvalue, [targs[i] for i in wrt])
    np.testing.assert_allclose(value, tvalue.item(), atol=TOL, rtol=TOL)
    for g, tg in zip(grads, tgrads, strict=True):
        assert tg.dtype == torch.float64
        np.testing.assert_allclose(g, tg.numpy(), atol=TOL, rtol=TOL)


@pytest.mark.parametrize("name", sorted(EXPRS))
def test_finite_differences_agree(name):
    args = _args(EXPRS[name][1], seed=1)
    assert ad.check_grad(_graph(name), args) < TOL


@pytest.mark.parametrize(
    "name,wrt",
    [
        ("bcast_add", 0),
        ("sub_div_sigmoid", 1),
        ("pow_scalars", 0),
        ("sum_keepdims", 0),
        ("sce_mean", 0),  # through softmax's own VJP
        ("mlp", 2),
    ],
)
def test_grad_of_grad_equals_jax_hessian(name, wrt):
    fn, shapes = EXPRS[name]
    args = _args(shapes, seed=2)
    others = args[:wrt] + args[wrt + 1 :]
    ours = ad.hessian(_graph(name), args[wrt], wrt, others)
    with jax.enable_x64(True):
        theirs = jax.hessian(lambda *a: fn(JAX, *a), argnums=wrt)(*map(jnp.asarray, args))
        np.testing.assert_allclose(ours, np.asarray(theirs), atol=TOL, rtol=TOL)


@pytest.mark.parametrize("name", sorted(EXPRS))
def test_passes_preserve_values_and_shrink_gradients(name):
    graph = _graph(name)
    args = _args(EXPRS[name][1], seed=3)
    g = ad.grad(graph, _floats(args), return_value=True)
    expected = ad.evaluate(g, *args)
    for p in (ad.dce, ad.cse, ad.fold, ad.simplify):
        got = ad.evaluate(p(g), *args)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15, err_msg=p.__name__)
    assert len(ad.simplify(g)) < len(g)
    # The forward alone has nothing to remove but a few duplicate constants.
    assert len(ad.simplify(graph)) <= len(graph)


def test_dce_removes_the_unwanted_cotangents():
    # d/dw only: the cotangent of x (g @ w.T) is generated, then dead.
    g = ad.grad(_graph("relu_matmul"), wrt=[1])
    ops = lambda graph: [n.op for n in graph.nodes]
    assert ops(g).count("matmul") == 3 and ops(ad.dce(g)).count("matmul") == 2


def test_printer_is_jaxpr_like_and_stable():
    f = ad.trace(lambda x, w, b: ad.tanh(x @ w + b).mean(), (2, 3), (3, 4), (4,))
    assert ad.to_text(f) == (
        "{ lambda ; a:f64[2,3] b:f64[3,4] c:f64[4]. let\n"
        "    d:f64[2,4] = matmul a b\n"
        "    e:f64[2,4] = broadcast_to[shape=(2, 4)] c\n"
        "    f:f64[2,4] = add d e\n"
        "    g:f64[2,4] = tanh f\n"
        "    h:f64[] = mean[axes=(0, 1) keepdims=False] g\n"
        "  in (h) }"
    )
    text = ad.to_text(ad.simplify(ad.grad(f, wrt=[1, 2])), phases=True)
    assert text == ad.to_text(ad.simplify(ad.grad(f, wrt=[1, 2])), phases=True)  # stable
    assert "    # backward\n" in text and text.endswith("in (r p) }")
    assert "sum[axes=(0,) keepdims=True]" in text  # un-broadcasting b
    assert "transpose[perm=(1, 0)] a" in text  # x.T @ g for dW


def test_training_step_graph_has_three_phases_and_dot_draws_it():
    params = mlp.init_params((12, 8, 6, 3), dtype=np.float64)
    step = mlp.step_graph(params, batch=4, lr=0.5, dtype=np.float64)
    assert {n.phase for n in step.nodes} == {"forward", "backward", "update"}
    source = ad.to_dot(step, "step")
    declared = [n for n in re.findall(r"^  (\w+) \[", source, flags=re.M) if n != "node"]
    assert len(declared) == len(step.inputs) + len(step.nodes) + len(step.outputs)
    # Per parameter: broadcast lr, lr * g, p - lr * g (one shared const lr, drawn uncoloured).
    assert source.count(ad.PHASE_COLORS["update"]) == len(params) * 3
    assert "style=bold" in source  # residual edges, forward -> backward
    from comparisons.ir.pictures import render_svg

    svg, how = render_svg(source)
    if svg is None:
        pytest.skip(how)
    assert svg.count(b'class="node"') == len(declared)


def test_sgd_step_equals_a_manual_step_and_torch():
    params = mlp.init_params((12, 8, 6, 3), dtype=np.float64)
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((4, 12)), rng.integers(0, 3, 4).astype(np.int32)
    loss, *new = ad.evaluate(mlp.step_graph(params, 4, lr=0.5, dtype=np.float64),
                             *params, x, labels)  # fmt: skip
    tparams = [torch.tensor(p, requires_grad=True) for p in params]
    h = torch.tensor(x)
    for i in range(0, 6, 2):
        h = h @ tparams[i] + tparams[i + 1]
        h = torch.relu(h) if i < 4 else h
    tloss = torch.nn.functional.cross_entropy(h, torch.tensor(labels).long())
    tloss.backward()
    np.testing.assert_allclose(loss, tloss.item(), atol=TOL)
    for p, tp, n in zip(params, tparams, new, strict=True):
        np.testing.assert_allclose(n, p - 0.5 * tp.grad.numpy(), atol=TOL)


def test_cli_show_and_a_short_train(tmp_path, capsys):
    from comparisons.cli import main

    assert main(["autodiff", "show", "--expr", "tanh", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "# forward (5 nodes)" in out and "# grad after dce, cse, fold" in out
    assert (tmp_path / "train_step.dot").exists()
    assert (tmp_path / "train_step.whole.dot").exists() and (tmp_path / "saved.md").exists()
    assert "# saved for the backward" in out and "dies after backward op" in out
    assert main(["autodiff", "train", "--dataset", "synthetic", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"epoch 1: train loss [\d.]+  test accuracy [\d.]+  [\d.]+ ms/step", out)
