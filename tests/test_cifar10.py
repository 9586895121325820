"""CIFAR-10's own pieces: Lookahead, test-time augmentation, whitening, bf16 and exact resume.

The registry-wide tests already cover the rest (tests/test_parity.py: eval- and train-mode
outputs, one step's loss, parameters and BatchNorm running statistics of every model).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from comparisons.parity import make_pair, params_diff, parity_config, step_both
from comparisons.registry import FRAMEWORKS, get_project
from shared_data.runlog import read_jsonl
from shared_data.whitening import patch_whitening

PROJECT = get_project("cifar10")


def _batch(config, size=16, seed=0):
    return PROJECT.example_batch(size, seed=seed, config=config)


def test_lookahead_and_tta_agree_across_frameworks():
    # Lookahead every 2 steps (params and BatchNorm statistics averaged, then copied back)
    # over the 4 steps of the run, the last of which copies the average: same in both.
    config = parity_config(PROJECT, "speedrun", lookahead_every=2, tta="mirror_translate")
    config = dataclasses.replace(config, epochs=1)
    pair = make_pair(PROJECT, config, steps_per_epoch=4)
    assert pair.jax_state.options.total_steps == 4
    before = {k: np.asarray(v) for k, v in pair.jax_state.ema["params"]["head"].items()}
    for step in range(4):
        step_both(pair, _batch(config, seed=step), step)
    assert max(params_diff(pair).values()) <= 1e-4
    # After the last step the weights are the average, which moved away from the init.
    ema = pair.jax_state.ema["params"]["head"]["kernel"]
    np.testing.assert_array_equal(np.asarray(ema), pair.jax_state.params["head"]["kernel"])
    assert np.abs(np.asarray(ema) - before["kernel"]).max() > 1e-4
    torch_ema = pair.torch_state.ema["head.weight"].numpy()
    np.testing.assert_allclose(torch_ema.T, np.asarray(ema), atol=1e-4)

    batch = _batch(config, seed=9)
    jax_tta = pair.jax_train.predict_tta(pair.jax_state, pair.jax_train.to_device(batch))
    torch_tta = pair.torch_train.predict_tta(pair.torch_state, pair.torch_train.to_device(batch))
    np.testing.assert_allclose(np.asarray(jax_tta), torch_tta.numpy(), atol=1e-5)
    plain = pair.jax_train.predict(pair.jax_state, pair.jax_train.to_device(batch))
    assert np.abs(np.asarray(plain) - np.asarray(jax_tta)).max() > 1e-4  # TTA did something


def test_tta_of_a_mirror_symmetric_image_is_the_plain_prediction():
    # A left-right symmetric image with constant rows at the borders: mirroring changes
    # nothing, so "mirror" TTA must equal the plain logits exactly up to float rounding.
    config = dataclasses.replace(parity_config(PROJECT, "speedrun"), tta="mirror")
    for framework in sorted(FRAMEWORKS):
        train = PROJECT.module(framework)
        state = train.create_state(config, 4)
        half = np.random.default_rng(0).standard_normal((2, 32, 16, 3)).astype(np.float32)
        image = np.concatenate([half, half[:, :, ::-1]], axis=2)
        batch = train.to_device({"image": image, "label": np.zeros(2, np.int32)})
        plain, tta = train.predict(state, batch), train.predict_tta(state, batch)
        plain, tta = (x.numpy() if hasattr(x, "numpy") else np.asarray(x) for x in (plain, tta))
        np.testing.assert_allclose(tta, plain, atol=1e-5)


def test_patch_whitening_whitens_and_both_frameworks_use_it_alike():
    rng = np.random.default_rng(0)
    # Correlated channels and neighbouring pixels, like natural images.
    base = rng.standard_normal((64, 33, 33, 1)).astype(np.float32)
    smooth = base[:, :-1, :-1] + base[:, 1:, 1:] + 0.5 * base[:, 1:, :-1]
    images = np.concatenate([smooth, 0.8 * smooth + 0.2, smooth * -0.5], axis=-1)
    images = images + 0.1 * rng.standard_normal(images.shape).astype(np.float32)
    kernel, bias = patch_whitening(images, eps=0.0)
    assert kernel.shape == (2, 2, 3, 24) and not bias.any()
    np.testing.assert_array_equal(kernel[..., 12:], -kernel[..., :12])
    windows = np.lib.stride_tricks.sliding_window_view(images, (2, 2), axis=(1, 2))
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12).astype(np.float64)
    outputs = patches @ kernel[..., :12].reshape(12, 12)
    np.testing.assert_allclose(outputs.T @ outputs / len(outputs), np.eye(12), atol=1e-3)

    config = parity_config(PROJECT, "speedrun")
    pair = make_pair(PROJECT, config)
    pair.jax_state = pair.jax_train.set_whitening(pair.jax_state, kernel, bias)
    pair.torch_state = pair.torch_train.set_whitening(pair.torch_state, kernel, bias)
    batch = _batch(config)
    jax_out = pair.jax_train.predict(pair.jax_state, pair.jax_train.to_device(batch))
    torch_out = pair.torch_train.predict(pair.torch_state, pair.torch_train.to_device(batch))
    np.testing.assert_allclose(np.asarray(jax_out), torch_out.numpy(), atol=1e-4)


def test_speedrun_convs_start_as_identities_in_both_frameworks():
    config = parity_config(PROJECT, "speedrun")
    jax_state = PROJECT.module("jax").create_state(config, 4)
    torch_state = PROJECT.module("torch").create_state(config, 4)
    kernel = np.asarray(jax_state.params["group2"]["conv2"]["kernel"])  # HWIO, 16 -> 16
    weight = torch_state.model.group2.conv2.weight.detach().numpy()  # OIHW
    cin = kernel.shape[2]
    for i in range(cin):
        expected = np.zeros((3, 3, cin), np.float32)
        expected[1, 1, i] = 1.0
        np.testing.assert_array_equal(kernel[..., i], expected)
        np.testing.assert_array_equal(weight[i].transpose(1, 2, 0), expected)


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_bf16_keeps_float32_weights_and_close_losses(framework):
    train = PROJECT.module(framework)
    losses = {}
    for precision in ("fp32", "bf16"):
        config = dataclasses.replace(parity_config(PROJECT, "speedrun"), precision=precision)
        state = train.create_state(config, 4)
        if framework == "jax":
            from jaxpath.common.loop import step_rng

            state, sums = train.train_step(state, train.to_device(_batch(config)), step_rng(1, 0))
            dtypes = {str(x.dtype) for x in __import__("jax").tree.leaves(state.params)}
        else:
            state, sums = train.train_step(state, train.to_device(_batch(config)), 0)
            dtypes = {str(p.dtype).removeprefix("torch.") for p in state.model.parameters()}
        assert dtypes == {"float32"}, dtypes  # master weights stay float32
        losses[precision] = float(sums["loss_sum"])
    assert np.isfinite(losses["bf16"])
    assert losses["bf16"] != losses["fp32"]  # bf16 really computed something else
    np.testing.assert_allclose(losses["bf16"], losses["fp32"], rtol=2e-2)


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_stop_mid_epoch_then_resume_matches_uninterrupted(framework, tmp_path):
    # The smoke recipe has everything resume must restore: optimizer momentum, the triangle
    # schedule's position, BatchNorm statistics, the Lookahead average (updated at step 5,
    # where the first half stops), the whitening bias's early stop and the alternating flip.
    config = dataclasses.replace(PROJECT.config("smoke"), checkpoint_every=1)
    train = PROJECT.module(framework)
    reference = train.train_and_evaluate(config, tmp_path / "reference", progress=False)
    first = dataclasses.replace(config, max_steps=5)
    half = train.train_and_evaluate(first, tmp_path / "resumed", progress=False)
    assert half["steps"] == 5
    resumed = train.train_and_evaluate(config, tmp_path / "resumed", resume=True, progress=False)
    assert resumed["resumed"] and resumed["steps"] == reference["steps"] == 8
    tolerance = 0.0 if framework == "jax" else 1e-6  # JAX on CPU is bitwise deterministic
    for got, want in zip(resumed["history"], reference["history"], strict=True):
        for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            np.testing.assert_allclose(got[key], want[key], rtol=0, atol=tolerance, err_msg=key)
    rows = read_jsonl(tmp_path / "resumed" / "metrics.jsonl")
    train_rows = [r for r in rows if r["split"] == "train"]
    assert train_rows and all("lr" in r and r["examples_per_s"] > 0 for r in train_rows)


# The shortcut's workaround (torchpath/cifar10/model.py, ConvBN): on AVX2-only CPUs, torch
# 2.14.1's oneDNN corrupted the heap in the weight gradient of this exact conv. A fresh
# process with one thread, as the test workers use, so a crash fails this test alone.
_SHORTCUT_SCRIPT = """
import torch
from torchpath.cifar10.model import ConvBN
torch.set_num_threads(1)
torch.manual_seed(0)
block = ConvBN(4, 8, kernel=1, stride=2)
assert block.nchw_input
for _ in range(20):
    x = torch.rand(8, 4, 32, 32).contiguous(memory_format=torch.channels_last)
    block.zero_grad()
    block(x).square().sum().backward()
# The weight gradient, by hand: the BatchNorm's input gradient times the strided input.
x = torch.rand(8, 4, 32, 32).contiguous(memory_format=torch.channels_last)
block.zero_grad()
conv_out = block.conv(x.contiguous()).detach().requires_grad_()
block.bn(conv_out).square().sum().backward()
expected = torch.einsum("nchw,nohw->oc", x[:, :, ::2, ::2], conv_out.grad)
block.zero_grad()
block(x).square().sum().backward()
diff = (block.conv.weight.grad[:, :, 0, 0] - expected).abs().max().item()
assert diff <= 1e-3 * expected.abs().max().item(), diff
print("ok")
"""


def test_strided_1x1_shortcut_with_few_channels_survives_channels_last_backward():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _SHORTCUT_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", (
        f"rc={done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    )
