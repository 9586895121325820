"""A finished run loads back for inference: its config, and the weights of its checkpoint."""

from __future__ import annotations

import importlib

import pytest

from comparisons.registry import FRAMEWORKS, get_project
from comparisons.runfolders import load_trained, resolve_run
from shared_data.configs.base import ConfigError
from shared_data.datasets import load_for_config
from shared_data.training import evaluate

PROJECT = get_project("mnist")


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_a_finished_run_reloads_and_scores_what_it_reported(framework, tmp_path):
    config = PROJECT.config("smoke")
    train = PROJECT.module(framework)
    path = tmp_path / "mnist" / framework / "r1"
    summary = train.train_and_evaluate(config, path, progress=False)
    assert resolve_run(tmp_path, "mnist", framework) == path
    loaded_config, state, step = load_trained(PROJECT, framework, path)
    assert loaded_config.model == config.model and step == summary["steps"]
    loop = importlib.import_module(f"{FRAMEWORKS[framework]}.common.loop")
    task = PROJECT.task(config)
    scores = evaluate(
        loop.FRAMEWORK, task, train.eval_step, state, load_for_config(config).test, 64
    )
    last = summary["history"][-1]
    assert scores["accuracy"] == pytest.approx(last["test_accuracy"], abs=1e-6)
    assert scores["loss"] == pytest.approx(last["test_loss"], rel=1e-5)


def test_no_run_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="roadmap run mnist --framework jax"):
        resolve_run(tmp_path, "mnist", "jax")
