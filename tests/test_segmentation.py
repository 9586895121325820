"""Segmentation: the mIoU evaluator, the loss terms, and activation checkpointing (remat).

Parity of the two U-Nets (outputs, loss, one step) comes from the registry-wide tests.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
import torch

from comparisons.registry import get_project
from shared_data.configs.segmentation import confusion_matrix, get_config, mean_iou

PROJECT = get_project("segmentation")


def _config(**changes):
    return dataclasses.replace(get_config("smoke"), **changes)


def test_mean_iou_by_hand():
    labels = np.array([[[0, 0, 1, 1], [0, 2, 2, 1]]])  # one 2x4 image
    predicted = np.array([[[0, 1, 1, 1], [0, 2, 0, 1]]])
    confusion = confusion_matrix(predicted, labels, 3)
    np.testing.assert_array_equal(confusion, [[2, 1, 0], [0, 3, 0], [1, 0, 1]])
    logits = np.eye(3)[predicted]  # one-hot "logits" whose argmax is `predicted`
    scores = mean_iou(logits, {"label": labels})
    # IoU: background 2/4, class 1 3/4, class 2 1/2; a class absent from both maps is skipped.
    assert scores["miou"] == pytest.approx((2 / 4 + 3 / 4 + 1 / 2) / 3)
    assert scores["objects_miou"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert mean_iou(np.eye(5)[labels], {"label": labels})["miou"] == 1.0


@pytest.mark.parametrize("framework", ["jax", "torch"])
def test_terms_of_a_confident_correct_prediction(framework):
    labels = np.random.default_rng(0).integers(0, 11, (2, 8, 8))
    logits = 50.0 * np.eye(11, dtype=np.float32)[labels]  # NHWC
    model = PROJECT.module(framework, "model")
    if framework == "jax":
        terms = np.asarray(model.segmentation_terms(logits, labels, 1.0))
    else:
        nchw = torch.from_numpy(logits).permute(0, 3, 1, 2)
        terms = model.segmentation_terms(nchw, torch.from_numpy(labels), 1.0).numpy()
    np.testing.assert_allclose(terms[1], 0.0, atol=1e-6)  # cross-entropy
    np.testing.assert_allclose(terms[2], 1.0, atol=1e-6)  # soft Dice
    np.testing.assert_allclose(terms[0], 0.0, atol=1e-5)  # CE + (1 - Dice)


def test_background_weight_is_torch_cross_entropy_weight_in_both_frameworks():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 11, (2, 6, 6))
    labels[:, :4] = 0  # mostly background, as in the scenes
    logits = rng.normal(size=(2, 6, 6, 11)).astype(np.float32)  # NHWC
    nchw = torch.from_numpy(logits).permute(0, 3, 1, 2)
    weight = torch.tensor([0.1] + [1.0] * 10)
    expected = [
        torch.nn.functional.cross_entropy(
            nchw[i : i + 1], torch.from_numpy(labels[i : i + 1]), weight=weight
        )
        for i in range(2)
    ]
    from jaxpath.segmentation import model as jax_model
    from torchpath.segmentation import model as torch_model

    jax_terms = np.asarray(jax_model.segmentation_terms(logits, labels, 1.0, 0.1))
    torch_terms = torch_model.segmentation_terms(nchw, torch.from_numpy(labels), 1.0, 0.1)
    np.testing.assert_allclose(torch_terms[1].numpy(), [float(e) for e in expected], rtol=1e-6)
    np.testing.assert_allclose(jax_terms, torch_terms.numpy(), rtol=1e-5, atol=1e-6)
    unweighted = torch_model.segmentation_terms(nchw, torch.from_numpy(labels), 1.0)
    assert not np.allclose(unweighted[1].numpy(), torch_terms[1].numpy())  # the weight acts


def test_jax_remat_same_loss_and_gradients():
    from jaxpath.segmentation import model, train

    state = train.create_state(_config(), 10)
    batch = train.to_device(PROJECT.example_batch(4, seed=1, config=_config()))
    grad_fn = jax.jit(jax.value_and_grad(train.loss_fn, has_aux=True))
    results = []
    for remat in ("none", "blocks"):  # the same parameters, applied by the two models
        apply_fn = model.create_model(_config(remat=remat)).apply
        (loss, _), grads = grad_fn(state.params, state.replace(apply_fn=apply_fn), batch, None)
        results.append((float(loss), jax.tree.leaves(grads)))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_torch_checkpoint_same_loss_and_gradients():
    from torchpath.segmentation import train

    plain, remat = _config(), _config(remat="blocks")
    batch = train.to_device(PROJECT.example_batch(4, seed=1, config=plain))
    results = []
    for config in (plain, remat):
        state = train.create_state(config, 10)  # same seed: same initial weights
        loss, _ = train.loss_fn(state, batch)
        loss.backward()
        results.append((float(loss), [p.grad.clone() for p in state.model.parameters()]))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_jax_remat_recomputes_every_block():
    # Each rematerialised block's recomputation sits behind an optimization barrier, which
    # keeps XLA from merging it with the forward pass (CSE). Whether the compiled step then
    # needs less memory is XLA's scheduling (docs/BENCHMARKS.md measures it).
    from jaxpath.segmentation import train

    config = _config(remat="blocks")
    state = train.create_state(config, 10)
    batch = train.to_device(PROJECT.example_batch(2, config=config))
    for remat, barriers in (("none", 0), ("blocks", 2 * len(config.widths) - 1)):
        state = train.create_state(_config(remat=remat), 10)
        text = train.train_step.lower(state, batch, jax.random.key(0)).as_text()
        assert text.count("stablehlo.optimization_barrier") == barriers


def test_torch_checkpoint_saves_fewer_bytes_for_backward():
    from torchpath.segmentation import train

    saved = {}
    for remat in ("none", "blocks"):
        config = _config(remat=remat, canvas=64, widths=(8, 16))
        state = train.create_state(config, 10)
        batch = train.to_device(PROJECT.example_batch(8, config=config))
        total = []

        def pack(tensor, total=total):
            total.append(tensor.numel() * tensor.element_size())
            return tensor

        # Counts what autograd keeps for the backward pass (outside checkpointed blocks).
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            train.loss_fn(state, batch)
        saved[remat] = sum(total)
    assert saved["blocks"] < 0.6 * saved["none"], saved
