"""`roadmap evaluate`: a finished run's checkpoint scored again, under changed settings."""

from __future__ import annotations

import json

import pytest

from comparisons.cli import main
from comparisons.evaluate import eval_config, evaluate_run
from comparisons.registry import get_project
from shared_data.configs.base import ConfigError, override
from shared_data.runlog import SUMMARY_FILE


def _train(project: str, framework: str, path):
    spec = get_project(project)
    config = override(spec.config("smoke"), {"max_steps": 3})
    return spec.module(framework).train_and_evaluate(config, path, progress=False)


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_evaluating_as_trained_repeats_the_runs_last_scores_and_leaves_it_alone(
    framework, tmp_path
):
    path = tmp_path / "runs" / "mnist" / framework / "r1"
    summary = _train("mnist", framework, path)
    before = {p.name: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}
    code = main(
        ["evaluate", "mnist", "--framework", framework, "--workdir", str(tmp_path / "runs"),
         "--no-progress"]
    )  # fmt: skip
    assert code == 0
    result = json.loads((path / "evals" / "as-trained.json").read_text())
    last = summary["history"][-1]
    assert result["step"] == summary["steps"]
    assert result["test"]["accuracy"] == pytest.approx(last["test_accuracy"], abs=1e-6)
    assert result["test"]["loss"] == pytest.approx(last["test_loss"], rel=1e-5)
    after = {p.name: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if k in before} == before  # nothing rewritten
    assert json.loads((path / SUMMARY_FILE).read_text())["steps"] == summary["steps"]


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_seq2seq_beam_search_and_the_bleu_interval_from_a_finished_run(framework, tmp_path):
    path = tmp_path / "seq2seq" / framework / "r1"
    _train("seq2seq", framework, path)
    project = get_project("seq2seq")
    greedy = evaluate_run(project, framework, path, eval_config(project, path, [], None), False)
    config = eval_config(project, path, ["decode=beam", "bleu_bootstrap=50"], None)
    beam = evaluate_run(project, framework, path, config, progress=False)
    # The teacher-forced metrics do not depend on the decoder; BLEU gets its interval.
    assert beam["test"]["loss"] == pytest.approx(greedy["test"]["loss"], rel=1e-6)
    assert "bleu_ci95" in beam["test"] and "bleu_ci95" not in greedy["test"]
    assert beam["test"]["bleu_ci95"] >= 0.0


def test_a_field_that_changes_the_model_names_the_checkpoint_that_does_not_restore(tmp_path):
    path = tmp_path / "mnist" / "torch" / "r1"
    _train("mnist", "torch", path)
    project = get_project("mnist")
    config = eval_config(project, path, ["model=mlp"], None)
    with pytest.raises(ConfigError, match="restores into this model"):
        evaluate_run(project, "torch", path, config, progress=False)


def test_a_run_without_checkpoints_or_a_bad_field_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "runs" / "mnist" / "torch" / "r1"
    _train("mnist", "torch", path)
    argv = ["evaluate", "mnist", "--framework", "torch", "--workdir", str(tmp_path / "runs")]
    assert main([*argv, "--set", "no_such_field=1"]) == 2
    assert "no_such_field" in capsys.readouterr().err
    assert main([*argv, "--device", "cuda"]) == 2
    assert "on the CPU" in capsys.readouterr().out
    for checkpoint in (path / "checkpoints").iterdir():
        checkpoint.rename(tmp_path / checkpoint.name)  # a run whose checkpoints were moved
    assert main(argv) == 2
    assert "holds no checkpoint to evaluate" in capsys.readouterr().err
