"""Registry-wide checks: names, configs, parameter counts, shapes, no NaNs."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from comparisons import registry
from comparisons.cli import main
from comparisons.parity import leaves
from comparisons.registry import Project, get_project, list_projects, register
from shared_data.configs.base import ConfigError, bad_value, from_dict, override, to_dict

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
    assert {"default", "smoke"} <= set(project.variants)
    for variant in project.variants:
        config = project.config(variant)
        assert from_dict(type(config), to_dict(config)) == config
        task = project.task(config)
        assert task.headline in task.metric_names


@pytest.mark.parametrize("project", list_projects(), ids=lambda p: p.name)
def test_models_are_the_same_names_in_both_trees(project):
    for fw in registry.FRAMEWORKS:
        assert tuple(project.module(fw, "model").MODELS) == project.models, fw


@pytest.mark.parametrize(
    "project,model",
    [(p, m) for p in list_projects() for m in p.models],
    ids=lambda v: getattr(v, "name", v),
)
def test_every_model_same_parameter_count_finite_outputs(project, model):
    config = dataclasses.replace(project.config("smoke"), model=model)
    batch = project.example_batch(4, config=config)
    counts = {}
    for fw in registry.FRAMEWORKS:
        train = project.module(fw)
        state = train.create_state(config, 1)
        counts[fw] = summary_params(state)
        for out in leaves(train.predict(state, train.to_device(batch))):
            assert out.shape[0] == 4 and np.all(np.isfinite(out)), fw
    assert counts["jax"] == counts["torch"] > 0


def _field_cases():
    for project in list_projects():
        cls = type(project.config("smoke"))
        for f in dataclasses.fields(cls):
            yield pytest.param(
                project, f.name, bad_value(cls, f.name), id=f"{project.name}.{f.name}"
            )


@pytest.mark.parametrize("project,field,bad", list(_field_cases()))
def test_every_config_field_refuses_a_bad_value_in_one_line(project, field, bad, tmp_path, capsys):
    argv = ["run", project.name, "--framework", "jax", "--variant", "smoke"]
    argv += ["--set", f"{field}={bad}", "--workdir", str(tmp_path), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("roadmap run: error: "), err
    assert repr(field) in err, err
    assert not list(tmp_path.rglob("*")), "nothing may be built before the config is checked"


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


@pytest.mark.parametrize("project", list_projects(), ids=lambda p: p.name)
def test_predict_reads_only_the_model_inputs(project):
    config = project.config("smoke")
    batch = project.example_batch(3, config=config)
    inputs = {k: v for k, v in batch.items() if k in project.model_inputs}
    assert set(project.model_inputs) <= set(batch)
    for fw in registry.FRAMEWORKS:
        train = project.module(fw)
        out = leaves(train.predict(train.create_state(config, 1), train.to_device(inputs)))
        assert out and all(o.shape[0] == 3 for o in out), fw
