"""Weight porting torch <-> Flax: round trips, shape checks, flatten order."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
import torch

from comparisons.registry import get_project
from comparisons.weights import PortingError, flax_to_torch, torch_to_flax

MODELS = ("mlp", "cnn", "fastcnn")


def _states(model: str):
    project = get_project("mnist")
    config = dataclasses.replace(project.config("smoke"), model=model)
    torch_state = project.module("torch").create_state(config, 1)
    jax_state = project.module("jax").create_state(config, 1)
    return torch_state.model, {"params": jax_state.params}


@pytest.mark.parametrize("model", MODELS)
def test_round_trip_is_exact(model):
    torch_model, template = _states(model)
    state_dict = torch_model.state_dict()
    flax_vars = torch_to_flax(state_dict, template, torch_model.flattened_inputs)
    back = flax_to_torch(flax_vars, state_dict, torch_model.flattened_inputs)
    assert set(back) == set(state_dict)
    for key, value in state_dict.items():
        np.testing.assert_array_equal(back[key].numpy(), value.numpy(), err_msg=key)


@pytest.mark.parametrize("model", MODELS)
def test_module_and_state_dict_paths_agree(model):
    torch_model, template = _states(model)
    by_rule = torch_to_flax(torch_model, template)  # reads torch_model.flattened_inputs itself
    by_name = torch_to_flax(torch_model.state_dict(), template, torch_model.flattened_inputs)
    jax.tree.map(np.testing.assert_array_equal, by_rule, by_name)
    back = flax_to_torch(by_rule, torch_model)
    for key, value in torch_model.state_dict().items():
        np.testing.assert_array_equal(back[key].numpy(), value.numpy(), err_msg=key)


def test_conv_and_linear_layouts():
    torch_model, template = _states("cnn")
    flax_vars = torch_to_flax(torch_model.state_dict(), template, torch_model.flattened_inputs)
    w = torch_model.conv2.weight.detach().numpy()  # [O, I, kh, kw]
    np.testing.assert_array_equal(flax_vars["params"]["conv2"]["kernel"], w.transpose(2, 3, 1, 0))
    fc2 = torch_model.fc2.weight.detach().numpy()
    np.testing.assert_array_equal(flax_vars["params"]["fc2"]["kernel"], fc2.T)
    # fc1's row for torch feature (c=5, h=3, w=7) sits at Flax row (h=3, w=7, c=5).
    fc1 = torch_model.fc1.weight.detach().numpy().T
    np.testing.assert_array_equal(
        flax_vars["params"]["fc1"]["kernel"][(3 * 12 + 7) * 64 + 5], fc1[5 * 144 + 3 * 12 + 7]
    )


def test_shape_mismatch_names_the_parameter():
    torch_model, template = _states("mlp")
    template = jax.tree.map(lambda x: x, template)
    template["params"]["fc1"]["kernel"] = np.zeros((784, 7), np.float32)
    with pytest.raises(PortingError, match=r"fc1\.weight.*\(784, 256\) vs \(784, 7\)"):
        torch_to_flax(torch_model.state_dict(), template)


def test_missing_and_extra_parameters_raise():
    torch_model, template = _states("mlp")
    state_dict = dict(torch_model.state_dict())
    del state_dict["head.bias"]
    with pytest.raises(PortingError, match="head/bias"):
        torch_to_flax(state_dict, template)
    state_dict = dict(torch_model.state_dict())
    state_dict["extra.weight"] = torch.zeros(3, 3)
    with pytest.raises(PortingError, match="extra"):
        torch_to_flax(state_dict, template)


def test_batchnorm_rules():
    bn = torch.nn.BatchNorm1d(4)
    bn.running_mean += 1.5
    template = {
        "params": {"bn": {"scale": np.zeros(4), "bias": np.zeros(4)}},
        "batch_stats": {"bn": {"mean": np.zeros(4), "var": np.zeros(4)}},
    }
    state_dict = {f"bn.{k}": v for k, v in bn.state_dict().items()}
    flax_vars = torch_to_flax(state_dict, template)
    np.testing.assert_array_equal(flax_vars["batch_stats"]["bn"]["mean"], np.full(4, 1.5))
    back = flax_to_torch(flax_vars, state_dict)
    assert set(back) == set(state_dict)
