"""VAE: pinned sizes, parity from ported weights with shared noise, named-stream noise,
binarisation, the fixed test split, the pictures and the sampling/KL in the IR."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from PIL import Image

from comparisons.registry import get_project
from comparisons.weights import torch_to_flax
from jaxpath.common.loop import step_rng
from shared_data.batches import iterate_batches
from shared_data.binarize import binarize, binarize_batch, fixed_test_split, load_binarized

PROJECT = get_project("vae")
VAE_PARAMS = 652_824  # pytorch/examples' VAE: 784-400-(20, 20) and 20-400-784


def _pair(**changes):
    config = dataclasses.replace(PROJECT.config("smoke"), **changes)
    jax_train, torch_train = PROJECT.module("jax"), PROJECT.module("torch")
    torch_state = torch_train.create_state(config, 10)
    template = {"params": jax_train.create_state(config, 10).params}
    variables = torch_to_flax(torch_state.model.state_dict(), template)
    return (
        config,
        jax_train,
        jax_train.create_state(config, 10, variables),
        torch_train,
        torch_state,
    )


def _max_diff(jax_params, torch_state) -> float:
    stepped = torch_to_flax(torch_state.model.state_dict(), {"params": jax_params})["params"]
    diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - b))), jax_params, stepped)
    return max(jax.tree.leaves(diffs))


def test_parameter_counts_and_shapes():
    _, jax_train, jax_state, torch_train, torch_state = _pair()
    jax_count = sum(x.size for x in jax.tree.leaves(jax_state.params))
    torch_count = sum(p.numel() for p in torch_state.model.parameters())
    assert jax_count == torch_count == VAE_PARAMS
    assert set(jax_state.params) == {"fc1", "fc21", "fc22", "fc3", "fc4"}
    batch = PROJECT.example_batch(4, seed=1)
    assert np.asarray(jax_train.predict(jax_state, jax_train.to_device(batch))).shape == (4, 784)
    assert torch_train.predict(torch_state, torch_train.to_device(batch)).shape == (4, 784)


def test_same_noise_same_loss_and_one_adam_step():
    config, jax_train, jax_state, torch_train, torch_state = _pair()
    batch = PROJECT.example_batch(32, seed=4, noise=True)
    jax_loss, jax_terms = jax_train.loss_fn(
        jax_state.params, jax_state, jax_train.to_device(batch), step_rng(config.seed, 0)
    )
    torch_loss, torch_terms = torch_train.loss_fn(torch_state, torch_train.to_device(batch))
    np.testing.assert_allclose(float(jax_loss), float(torch_loss.detach()), rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(jax_terms), torch_terms.detach().numpy(), rtol=1e-5, atol=1e-4
    )
    before = jax_state.params
    jax_state, jax_sums = jax_train.train_step(
        jax_state, jax_train.to_device(batch), step_rng(config.seed, 0)
    )
    torch_state, torch_sums = torch_train.train_step(torch_state, torch_train.to_device(batch), 0)
    for key in ("loss_sum", "recon_sum", "kl_sum", "count"):
        np.testing.assert_allclose(float(jax_sums[key]), float(torch_sums[key]), rtol=1e-5)
    assert _max_diff(jax_state.params, torch_state) <= 1e-4
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), jax_state.params, before)
    assert max(jax.tree.leaves(moved)) > 1e-4  # the step really moved the weights


def test_fixed_test_split_gives_the_same_test_loss():
    config, jax_train, jax_state, torch_train, torch_state = _pair()
    test = load_binarized(config).test
    assert test["noise"].shape == (64, config.latents)
    batch = {k: v[:32] for k, v in test.items()}
    jax_sums = jax_train.eval_step(jax_state, jax_train.to_device(batch))
    torch_sums = torch_train.eval_step(torch_state, torch_train.to_device(batch))
    jax_loss, torch_loss = float(jax_sums["loss_sum"]), float(torch_sums["loss_sum"])
    np.testing.assert_allclose(jax_loss, torch_loss, rtol=1e-5)
    again = jax_train.eval_step(jax_state, jax_train.to_device(batch))
    assert float(again["loss_sum"]) == jax_loss


def test_noise_stream_changes_with_step_and_repeats():
    config, jax_train, jax_state, torch_train, _ = _pair()
    batch = PROJECT.example_batch(16, seed=5)  # no "noise" field: the step samples its own

    def jax_loss(step):
        loss, _ = jax_train.loss_fn(
            jax_state.params, jax_state, jax_train.to_device(batch), step_rng(config.seed, step)
        )
        return float(loss)

    def torch_loss(step):
        state = torch_train.create_state(config, 10)
        _, sums = torch_train.train_step(state, torch_train.to_device(batch), step)
        return float(sums["loss_sum"])

    for loss in (jax_loss, torch_loss):
        assert loss(0) == loss(0)
        assert loss(0) != loss(1)


def test_binarisation_is_deterministic():
    grey = np.random.default_rng(0).random((64, 28, 28, 1)).astype(np.float32)
    a = binarize(grey, np.random.default_rng(7))
    assert np.array_equal(a, binarize(grey, np.random.default_rng(7)))
    assert set(np.unique(a)) <= {0.0, 1.0} and a.dtype == np.float32
    assert abs(a.mean() - grey.mean()) < 0.01  # each pixel is on with its grey level
    split = {"image": grey, "label": np.zeros(64, np.int32)}
    first, second = fixed_test_split(split, 20), fixed_test_split(split, 20)
    for key in ("image", "noise"):
        assert np.array_equal(first[key], second[key])
    # Training batches: the same for the same (seed, epoch, batch), also on resume.
    batches = dict(seed=3, epoch=1, augment=binarize_batch)
    full = list(iterate_batches(split, 16, **batches))
    resumed = list(iterate_batches(split, 16, start_batch=2, **batches))
    assert np.array_equal(full[2]["image"], resumed[0]["image"])
    other_epoch = next(iterate_batches(split, 16, seed=3, epoch=2, augment=binarize_batch))
    assert not np.array_equal(full[0]["image"], other_epoch["image"])


def test_runs_write_pictures(tmp_path):
    config = dataclasses.replace(PROJECT.config("smoke"), epochs=1)
    names = {}
    for fw in ("jax", "torch"):
        summary = PROJECT.module(fw).train_and_evaluate(config, tmp_path / fw, progress=False)
        assert summary["num_params"] == VAE_PARAMS
        assert np.isfinite(summary["history"][-1]["test_loss"])
        images = tmp_path / fw / "images"
        names[fw] = sorted(p.name for p in images.glob("*.png"))
        assert Image.open(images / "samples_epoch1.png").size == (242, 242)  # 8x8 tiles
        assert Image.open(images / "reconstructions_epoch1.png").size == (242, 62)  # 2x8
    assert names["jax"] == names["torch"] == ["reconstructions_epoch1.png", "samples_epoch1.png"]


def test_train_step_ir_shows_sampling_and_kl(tmp_path):
    from comparisons.ir import dump_ir

    summary = dump_ir(
        "vae",
        PROJECT.config("smoke"),
        tmp_path,
        what=("train_step",),
        progress=False,
        inductor=False,
        torchscript=False,
    )
    for fw in ("jax", "torch"):
        step = summary["frameworks"][fw]["train_step"]
        assert step["op_categories"]["random"] > 0, fw
        assert step["ops"].get("exp", 0) > 0 and step["ops"].get("log1p", 0) > 0, fw
    hlo = (tmp_path / "jax" / "train_step.opt.hlo.txt").read_text()
    assert "/reparameterize/" in hlo and "(kl)/" in hlo  # jax.named_scope in the op metadata


def test_a_validation_split_is_scored_like_the_test_split(tmp_path):
    # Held out of the grey-level training data, it is binarised once and given fixed noise
    # (Task.prepare_eval), so val and test losses are the same kind of number.
    config = dataclasses.replace(get_project("vae").config("smoke"), val_size=64, epochs=1)
    task = get_project("vae").task(config)
    grey = {"image": np.full((4, 28, 28, 1), 0.5, np.float32), "label": np.zeros(4, np.int32)}
    val = task.prepare_eval(grey)
    assert set(np.unique(val["image"])) <= {0.0, 1.0} and val["noise"].shape == (4, 20)
    summary = get_project("vae").module("jax").train_and_evaluate(config, tmp_path, progress=False)
    assert np.isfinite(summary["history"][-1]["val_loss"])
