"""Real-MNIST runs of mnist and vae (minutes each): `pytest -m slow` with ROADMAP_DATA_DIR set."""

from __future__ import annotations

import dataclasses

import pytest

from comparisons.compare import compare
from comparisons.registry import get_project
from shared_data.errors import DataError
from shared_data.mnist import load_mnist

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _needs_mnist():
    try:
        load_mnist(verify=False)
    except DataError as err:
        pytest.skip(f"real MNIST not available: {err}")


def test_one_cnn_epoch_reaches_98_5_in_both_frameworks(tmp_path):
    config = dataclasses.replace(get_project("mnist").config("default"), epochs=1)
    result = compare("mnist", config, tmp_path, "slow", progress=False)
    assert result["initial_outputs_max_abs_diff"] <= 1e-5
    for framework, summary in result["runs"].items():
        assert summary["history"][-1]["test_accuracy"] >= 0.985, framework


def test_fast_recipe_reaches_99_in_both_frameworks(tmp_path):
    config = get_project("mnist").config("fast")
    result = compare("mnist", config, tmp_path, "fast", progress=False)
    for framework, summary in result["runs"].items():
        assert summary["history"][-1]["test_accuracy"] >= 0.990, framework


def test_vae_ten_epochs_reach_the_flax_reference_in_both_frameworks(tmp_path):
    # docs/RESULTS.md: 102.33 (torch) / 102.15 (JAX) nats; the Flax example reports ~104.
    config = get_project("vae").config("mnist")
    result = compare("vae", config, tmp_path, "vae", progress=False)
    losses = {fw: s["history"][-1]["test_loss"] for fw, s in result["runs"].items()}
    assert all(loss <= 104.0 for loss in losses.values()), losses
    assert abs(losses["jax"] - losses["torch"]) <= 1.0, losses  # within noise of each other
