"""Registry-wide checks: names, configs, parameter counts, shapes, no NaNs."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from comparisons import registry
from comparisons.registry import Project, get_project, list_projects, register
from shared_data.configs.base import ConfigError, from_dict, override, to_dict

# Pinned facts (STYLE.md): a change here is a change of model, never an accident.
MNIST_PARAMS = {"mlp": 235_146, "cnn": 1_199_882, "fastcnn": 421_642}


def test_unknown_project_raises_with_known_names():
    with pytest.raises(KeyError, match="known: .*mnist"):
        get_project("nope")


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="registered twice"):
        register(get_project("mnist"))
    assert isinstance(get_project("mnist"), Project)


def test_unknown_framework_and_variant_raise():
    with pytest.raises(KeyError, match="known: jax, torch"):
        get_project("mnist").module("tensorflow")
    with pytest.raises(KeyError, match="unknown mnist variant"):
        get_project("mnist").config("huge")


@pytest.mark.parametrize("project", list_projects(), ids=lambda p: p.name)
def test_every_variant_builds_and_round_trips(project):
    for variant in ("default", "fast", "digits", "smoke"):
        config = project.config(variant)
        assert from_dict(type(config), to_dict(config)) == config


@pytest.mark.parametrize("model", sorted(MNIST_PARAMS))
def test_mnist_parameter_counts_shapes_and_finiteness(model):
    project = get_project("mnist")
    config = dataclasses.replace(project.config("smoke"), model=model)
    batch = project.example_batch(4)
    counts, outputs = {}, {}
    for fw in registry.FRAMEWORKS:
        train = project.module(fw)
        state = train.create_state(config, 1)
        counts[fw] = summary_params(state)
        outputs[fw] = np.asarray(train.predict(state, train.to_device(batch)))
    assert counts == {"jax": MNIST_PARAMS[model], "torch": MNIST_PARAMS[model]}
    for logits in outputs.values():
        assert logits.shape == (4, 10)
        assert np.all(np.isfinite(logits))


def summary_params(state) -> int:
    """Parameter count of either framework's state, the way each loop reports it."""
    if hasattr(state, "params"):
        return int(sum(np.size(p) for p in jax.tree.leaves(state.params)))
    return int(sum(p.numel() for p in state.model.parameters()))


def test_overrides_parse_by_type_and_reject_unknown_fields():
    config = get_project("mnist").config()
    changed = override(
        config,
        ["epochs=3", "lr=0.5", "dropout=false", "data_dir=none", "hidden=512,256", "model=mlp"],
    )
    assert (changed.epochs, changed.lr, changed.dropout) == (3, 0.5, False)
    assert changed.data_dir is None and changed.hidden == (512, 256) and changed.model == "mlp"
    with pytest.raises(ConfigError, match="unknown config field 'epoch'.*epochs"):
        override(config, ["epoch=3"])
    with pytest.raises(ConfigError, match="wants int"):
        override(config, ["epochs=three"])
    with pytest.raises(ConfigError, match="key=value"):
        override(config, ["epochs"])
