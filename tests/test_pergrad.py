"""Per-example gradients (jaxpath|torchpath/mnist/per_example.py): three ways, one answer.

For the MNIST MLP and CNN (the CNN with its dropout layers configured, and off): vmap equals
the Python loop in each framework, JAX equals torch from the same (ported) weights, and the
mean of the per-example gradients is the batch gradient. Errors are measured relative to
each gradient's largest entry, in float32. Then `roadmap pergrad`'s graphs: what vmap did.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from comparisons import pergrad
from comparisons.cli import main
from comparisons.parity import flat_arrays, make_pair, parity_config
from comparisons.registry import get_project
from comparisons.weights import torch_to_flax
from jaxpath.mnist import per_example as jpe
from torchpath.mnist import per_example as tpe

BATCH = 6
RTOL = 2e-5  # of the largest entry of each gradient; float32 sums in another order


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def case(request):
    """Both frameworks from the same weights, one batch, and every way's gradients."""
    project = get_project("mnist")
    config = parity_config(project, request.param, dropout=True)  # dropout configured
    pair = make_pair(project, config)
    batch = project.example_batch(BATCH, seed=7, config=config)
    jax_batch = pair.jax_train.to_device(batch)
    torch_batch = pair.torch_train.to_device(batch)
    grads = {
        "jax vmap": flat_arrays(jpe.per_example_grads(pair.jax_state, jax_batch)),
        "jax loop": flat_arrays(jpe.per_example_grads_loop(pair.jax_state, jax_batch)),
        "jax batch": flat_arrays(jpe.batch_grads(pair.jax_state, jax_batch)),
    }
    torch_grads = {
        "torch vmap": tpe.per_example_grads(pair.torch_state, torch_batch),
        "torch loop": tpe.per_example_grads_loop(pair.torch_state, torch_batch),
    }
    template = {"params": pair.jax_state.params}
    for key, tree in torch_grads.items():
        grads[key] = _stack(
            [_port(pair.torch_state.model, tree, i, template) for i in range(BATCH)]
        )
    grads["torch batch"] = _port(
        pair.torch_state.model, tpe.batch_grads(pair.torch_state, torch_batch), None, template
    )
    return {"model": request.param, "pair": pair, "batch": jax_batch, "grads": grads}


def _port(model, grads, index, template) -> dict[str, np.ndarray]:
    """torch gradients (of example `index`, or all) in Flax's layout, by the weight rules."""
    holder = copy.deepcopy(model)  # gradients port like the weights they belong to
    holder.load_state_dict({k: v if index is None else v[index] for k, v in grads.items()})
    return flat_arrays(torch_to_flax(holder, template)["params"])


def _stack(rows: list[dict]) -> dict[str, np.ndarray]:
    return {key: np.stack([row[key] for row in rows]) for key in rows[0]}


def _rel_err(got: dict, want: dict) -> dict[str, float]:
    assert set(got) == set(want)
    assert all(got[k].shape == want[k].shape for k in want), {k: got[k].shape for k in got}
    return {k: float(np.max(np.abs(got[k] - want[k])) / np.max(np.abs(want[k]))) for k in want}


def test_shapes_have_an_example_axis(case):
    grads, params = case["grads"], flat_arrays(case["pair"].jax_state.params)
    for key, value in params.items():
        assert grads["jax vmap"][key].shape == (BATCH, *value.shape)
        assert grads["torch vmap"][key].shape == (BATCH, *value.shape)
        assert grads["jax batch"][key].shape == value.shape
    expected = {"mlp": 6, "cnn": 8}[case["model"]]  # kernels and biases of 3 or 4 layers
    assert len(params) == expected


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_vmap_equals_the_loop(case, framework):
    grads = case["grads"]
    errors = _rel_err(grads[f"{framework} vmap"], grads[f"{framework} loop"])
    assert max(errors.values()) <= RTOL, errors


def test_jax_equals_torch_from_the_same_weights(case):
    grads = case["grads"]
    errors = _rel_err(grads["jax vmap"], grads["torch vmap"])
    assert max(errors.values()) <= RTOL, errors


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_mean_of_per_example_grads_is_the_batch_grad(case, framework):
    grads = case["grads"]
    mean = {k: v.mean(axis=0) for k, v in grads[f"{framework} vmap"].items()}
    errors = _rel_err(mean, grads[f"{framework} batch"])
    assert max(errors.values()) <= RTOL, errors


def test_the_comparisons_can_fail(case):
    """Examples differ from each other and from the mean: a broadcast batch gradient, a
    shuffled example order or a dropped example would all fail the tests above."""
    vmap, batch = case["grads"]["jax vmap"], case["grads"]["jax batch"]
    shifted = {k: np.roll(v, 1, axis=0) for k, v in case["grads"]["torch vmap"].items()}
    assert max(_rel_err(vmap, shifted).values()) > 1e-2
    broadcast = {k: np.broadcast_to(v, vmap[k].shape) for k, v in batch.items()}
    assert max(_rel_err(vmap, broadcast).values()) > 1e-2
    assert all(np.all(np.isfinite(v)) for v in vmap.values())


def test_dropout_is_off_so_the_gradients_are_deterministic(case):
    state, batch = case["pair"].jax_state, case["batch"]
    assert case["pair"].config.dropout  # the CNN has dropout layers; inference mode skips them
    again = flat_arrays(jpe.per_example_grads(state, batch))
    assert all(np.array_equal(again[k], v) for k, v in case["grads"]["jax vmap"].items())


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_what_vmap_did_to_the_graph(model):
    """Weight gradients gain an example axis: batched dot_general / bmm, and for the convs a
    grouped convolution with one group per example; the forward just grows its batch."""
    project = get_project("mnist")
    config = parity_config(project, model, dropout=True)
    jax_out = pergrad.jax_graphs(project, config, BATCH, check=False)
    torch_out = pergrad.torch_graphs(project, config, BATCH, check=False)
    layers = {"mlp": (3, 0), "cnn": (2, 2)}[model]  # (dense, conv) layers
    one, many = jax_out["grad"], jax_out["vmap"]
    for op in ("dot_general", "conv_general_dilated"):
        assert one["counts"][op] == many["counts"][op]  # no op is unrolled per example
    assert sum("batch (0,)x(0,)" in h for h in many["heavy"]) == layers[0]
    assert not any("batch (0,)x(0,)" in h for h in one["heavy"])
    assert sum(f"feature_group_count={BATCH}," in h for h in many["heavy"]) == layers[1]
    assert sum(many["counts"].values()) > sum(one["counts"].values())
    one, many = torch_out["grad"], torch_out["vmap"]
    assert one["counts"]["bmm"] == 0 and many["counts"]["bmm"] == layers[0]
    assert sum(f"(groups={BATCH})" in h for h in many["heavy"]) == layers[1]
    assert not any(f"(groups={BATCH})" in h for h in one["heavy"])


def test_pergrad_cli_writes_the_graphs_and_counts(tmp_path, capsys):
    argv = ["pergrad", "mnist", "--variant", "smoke", "--model", "mlp", "--batch-size", "3"]
    assert main([*argv, "--out", str(tmp_path), "--no-progress"]) == 0
    names = {"pergrad.md", "jaxpr_grad.txt", "jaxpr_vmap_grad.txt"}
    assert names | {"torch_grad.txt", "torch_vmap_grad.txt"} == {p.name for p in tmp_path.iterdir()}
    assert "f32[3,784,256]" in (tmp_path / "jaxpr_vmap_grad.txt").read_text()
    assert "aten.bmm" in (tmp_path / "torch_vmap_grad.txt").read_text()
    text = (tmp_path / "pergrad.md").read_text()
    assert "| `dot_general` | 8 | 8 |" in text and "vmap vs Python loop" in text
    check = text.rsplit("JAX ", 1)[1]  # "1.3e-06, torch 4.1e-07."
    assert max(float(x.strip(" .\n")) for x in check.split(", torch ")) < RTOL
    assert capsys.readouterr().out.startswith("# roadmap pergrad mnist (mlp), 3 examples")
