"""The MNIST CNN in Flax NNX against Flax Linen, `--set style=nnx` end to end, `roadmap styles`.

Parity is checked with dropout off: NNX and Linen compute the same function, but derive the
two dropout layers' keys from the step's key differently, so with dropout on their masks
differ (jaxpath/mnist/nnx_model.py); with dropout on, a step is still a function of its key.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from comparisons.cli import main
from comparisons.registry import get_project
from jaxpath.mnist import nnx_model, nnx_train
from jaxpath.mnist import train as linen_train
from shared_data.configs.base import ConfigError, override
from shared_data.runlog import read_jsonl

PROJECT = get_project("mnist")
CNN_PARAMS = 1_199_882  # pytorch/examples' MNIST net, in every style


def _batch(n: int = 8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, 28, 28, 1)).astype(np.float32)
    labels = rng.integers(0, 10, n).astype(np.int32)
    return linen_train.to_device({"image": images, "label": labels})


def _pair(**changes):
    """A Linen state and an NNX state holding the Linen state's initial weights."""
    config = dataclasses.replace(PROJECT.config("smoke"), dropout=False, **changes)
    linen = linen_train.create_state(config, 10)
    return config, linen, nnx_train.create_state(config, 10, {"params": linen.params})


def _max_diff(a, b) -> float:
    return max(jax.tree.leaves(jax.tree.map(lambda x, y: float(np.abs(x - y).max()), a, b)))


def test_nnx_forward_equals_linen_forward_from_the_same_weights():
    _, linen, nnx_state = _pair()
    batch = _batch()
    assert nnx_train.linen_params(nnx_state.model).keys() == linen.params.keys()
    assert _max_diff(nnx_train.linen_params(nnx_state.model), linen.params) == 0.0
    want = linen_train.predict(linen, batch)
    got = nnx_train.predict(nnx_state, batch)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert sum(x.size for x in jax.tree.leaves(nnx_state.params)) == CNN_PARAMS
    # Its own seeded init draws from torch's distributions too: same bounds, other values.
    own = nnx_model.create_model(PROJECT.config("smoke"))
    bound = 1 / np.sqrt(12 * 12 * 64)
    fc1 = np.asarray(own.fc1.kernel[...])
    assert np.abs(fc1).max() <= bound and np.abs(fc1).max() > 0.99 * bound


def test_the_converter_refuses_params_of_another_shape():
    _, linen, nnx_state = _pair()
    eleven = {"kernel": np.zeros((128, 11), np.float32), "bias": np.zeros(11, np.float32)}
    with pytest.raises(ValueError, match="shape"):
        nnx_model.load_linen_params(nnx_state.model, {**linen.params, "fc2": eleven})
    with pytest.raises(ValueError, match="NNX model"):
        nnx_model.load_linen_params(nnx_state.model, {"conv1": linen.params["conv1"]})


def test_train_steps_match_linen_exactly_with_dropout_off():
    _, linen, nnx_state = _pair()
    for step in range(2):  # the second step reads the optimizer state the first one wrote
        batch, key = _batch(seed=step), jax.random.key(step)
        linen, want = linen_train.train_step(linen, batch, key)
        nnx_state, got = nnx_train.train_step(nnx_state, batch, key)
        assert {k: float(v) for k, v in got.items()} == {k: float(v) for k, v in want.items()}
        assert _max_diff(nnx_state.params, linen.params) < 1e-6, step
    assert int(nnx_state.step) == int(linen.step) == 2


def test_with_dropout_on_a_step_is_a_function_of_its_key():
    config = PROJECT.config("smoke")
    assert config.dropout
    model = nnx_model.create_model(config)
    images = _batch()["image"]
    first = model(images, train=True, rng=jax.random.key(1))
    np.testing.assert_array_equal(model(images, train=True, rng=jax.random.key(1)), first)
    assert not np.allclose(model(images, train=True, rng=jax.random.key(2)), first)
    np.testing.assert_array_equal(model(images), model(images))  # inference: no dropout


def _run(tmp_path, *extra: str) -> int:
    argv = ["run", "mnist", "--framework", "jax", "--variant", "smoke", "--set", "style=nnx"]
    argv += ["--set", "limit_train=128", "--workdir", str(tmp_path), "--run-id", "r"]
    return main([*argv, "--no-progress", *extra])


def test_style_nnx_runs_end_to_end_through_the_cli_and_resumes_exactly(
    tmp_path, monkeypatch, capsys
):
    steps = []  # the NNX step, not Linen's, must be the one the driver calls
    step = nnx_train.train_step
    monkeypatch.setattr(nnx_train, "train_step", lambda *a: steps.append(1) or step(*a))
    config = override(PROJECT.config("smoke"), {"style": "nnx", "limit_train": 128})
    reference = linen_train.train_and_evaluate(config, tmp_path / "reference", progress=False)
    assert _run(tmp_path, "--set", "max_steps=6", "--set", "checkpoint_every=2") == 0
    assert "JAX (Flax NNX, nnx.jit): mnist ->" in capsys.readouterr().out
    run = tmp_path / "mnist" / "jax" / "r"
    assert json.loads((run / "config.json").read_text())["style"] == "nnx"
    assert sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    assert _run(tmp_path, "--resume") == 0
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["resumed"] and resumed["steps"] == reference["steps"] == 8
    assert len(steps) == 8 + 6 + 2  # reference, the run stopped at 6, its resumed 2
    assert resumed["num_params"] == reference["num_params"] == CNN_PARAMS
    for got, want in zip(resumed["history"], reference["history"], strict=True):
        for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            assert got[key] == want[key], key  # JAX on the CPU is bitwise deterministic
    rows = read_jsonl(run / "metrics.jsonl")
    assert {r["split"] for r in rows} == {"train", "train_epoch", "test"}
    assert reference["history"][-1]["train_loss"] < reference["history"][0]["train_loss"]


def test_torch_and_models_without_an_nnx_twin_refuse_style_nnx(tmp_path, capsys):
    argv = ["run", "mnist", "--framework", "torch", "--variant", "smoke", "--set", "style=nnx"]
    assert main([*argv, "--workdir", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "field 'style'" in err and "torch" in err, err
    assert not (tmp_path / "mnist" / "torch").exists() or not any(tmp_path.rglob("*.jsonl"))
    with pytest.raises(ConfigError, match="field 'style'.*cnn"):
        override(PROJECT.config("smoke"), {"style": "nnx", "model": "mlp"})


def test_styles_tool_times_the_three_styles(tmp_path, capsys):
    out = tmp_path / "styles"
    assert main(["styles", "--steps", "2", "--batch-size", "8", "--out", str(out)]) == 0
    result = json.loads((out / "styles.json").read_text())
    names = [row["style"] for row in result["rows"]]
    assert any("Linen" in n for n in names) and any("NNX" in n for n in names)
    assert any("PyTorch" in n for n in names) and result["steps"] == 2
    for row in result["rows"]:
        assert row["first_call_s"] > 0 and row["step_ms"] > 0, row
    assert result["versions"]["flax"] and result["machine"]["cpu_count"]
    assert "| Flax NNX, nnx.jit |" in capsys.readouterr().out
    assert (out / "styles.md").read_text().startswith("MNIST CNN train step")
