"""Smoke runs of both frameworks: they learn, log, checkpoint and resume exactly."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from comparisons.registry import FRAMEWORKS, get_project
from jaxpath.common.loop import step_rng
from shared_data import training
from shared_data.configs.base import ConfigError
from shared_data.runlog import read_jsonl

PROJECT = get_project("mnist")


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_smoke_run_learns_and_writes_its_outputs(framework, tmp_path):
    config = PROJECT.config("smoke")
    summary = PROJECT.module(framework).train_and_evaluate(config, tmp_path, progress=False)
    history = summary["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[-1]["test_accuracy"] > 0.5  # ten classes: chance is 0.1
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert summary["train_examples_per_s"] > 0 and summary["first_step_s"] > 0
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert {r["split"] for r in rows} == {"train", "train_epoch", "test"}
    assert any(
        p.name.startswith("events.out.tfevents") for p in (tmp_path / "tensorboard").iterdir()
    )
    assert any((tmp_path / "checkpoints").iterdir())
    assert (tmp_path / "summary.json").exists() and (tmp_path / "config.json").exists()


def _resume_config(framework: str):
    # Slow enough steps (the 1.2M-parameter CNN) that a kill can land mid-epoch 2.
    return dataclasses.replace(
        PROJECT.config("smoke"),
        epochs=3,
        batch_size=16,
        limit_train=512,
        checkpoint_every=4,
        log_every=8,
    )


def _kill_mid_epoch_two(framework: str, workdir: Path, steps_per_epoch: int) -> None:
    """Start `roadmap run`, SIGKILL it once a checkpoint inside epoch 2 exists."""
    cmd = [
        sys.executable,
        "-m",
        "comparisons.cli",
        # The same XLA flags and allocator as this test process, which runs the reference and
        # the resumed half (tests/conftest.py: roadmap's fast XLA flags, the system malloc):
        # other flags pick other conv kernels, whose rounding differs.
        "--runtime",
        "stock",
        "--xla-flags",
        "run",
        "mnist",
        "--framework",
        framework,
        "--variant",
        "smoke",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--workdir",
        str(workdir),
        "--run-id",
        "r",
        "--no-progress",
        "--set",
        "limit_train=512",
        "--set",
        "checkpoint_every=2",
        "--set",
        "log_every=8",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    ckpt_dir = workdir / "mnist" / framework / "r" / "checkpoints"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        names = [p.name for p in ckpt_dir.iterdir()] if ckpt_dir.exists() else []
        # Finalised checkpoints only: Orbax's "<step>" folders, torch's "ckpt_<step>.pt".
        steps = [
            int(n.removeprefix("ckpt_").removesuffix(".pt"))
            for n in names
            if n.isdigit() or (n.startswith("ckpt_") and n.endswith(".pt"))
        ]
        if any(steps_per_epoch < s < 2 * steps_per_epoch for s in steps):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (workdir / "mnist" / framework / "r" / "summary.json").exists()


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(framework, tmp_path):
    config = _resume_config(framework)
    train = PROJECT.module(framework)
    reference = train.train_and_evaluate(config, tmp_path / "reference", progress=False)
    _kill_mid_epoch_two(framework, tmp_path, steps_per_epoch=512 // 16)
    resumed = train.train_and_evaluate(
        config, tmp_path / "mnist" / framework / "r", resume=True, progress=False
    )
    assert resumed["resumed"] and resumed["steps"] == reference["steps"] == 96
    tolerance = 0.0 if framework == "jax" else 1e-6  # JAX on CPU is bitwise deterministic
    for got, want in zip(resumed["history"], reference["history"], strict=True):
        for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            np.testing.assert_allclose(got[key], want[key], rtol=0, atol=tolerance, err_msg=key)
    rows = read_jsonl(tmp_path / "mnist" / framework / "r" / "metrics.jsonl")
    steps = [(r["split"], r["step"]) for r in rows]
    assert len(steps) == len(set(steps)), "replayed steps must not be logged twice"


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_a_new_run_refuses_an_old_runs_folder(framework, tmp_path):
    config = dataclasses.replace(PROJECT.config("smoke"), epochs=1)
    train = PROJECT.module(framework)
    train.train_and_evaluate(config, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="already holds a run.*--resume"):
        train.train_and_evaluate(config, tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"different config \(lr: 0.001 -> 0.5\)"):
        train.train_and_evaluate(
            dataclasses.replace(config, lr=0.5), tmp_path, resume=True, progress=False
        )


def test_jax_train_step_compiles_once():
    config = PROJECT.config("smoke")
    train = PROJECT.module("jax")
    state = train.create_state(config, 10)
    batch = train.to_device(PROJECT.example_batch(8))
    before = train.train_step._cache_size()
    for step in range(3):
        state, _ = train.train_step(state, batch, step_rng(config.seed, step))
    assert train.train_step._cache_size() - before == 1


def _truncate_newest_checkpoint(framework: str, checkpoints: Path) -> Path:
    """Damage the newest checkpoint the way a full disk or a torn copy would; its path."""
    if framework == "torch":
        newest = max(checkpoints.glob("ckpt_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
        data = newest.read_bytes()
        newest.write_bytes(data[: len(data) // 2])
        return newest
    newest = max((p for p in checkpoints.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    for chunk in (newest / "state").rglob("d/*"):
        data = chunk.read_bytes()
        chunk.write_bytes(data[: len(data) // 2])
    return newest


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_resume_falls_back_past_an_unreadable_checkpoint(framework, tmp_path):
    config = dataclasses.replace(PROJECT.config("smoke"), model="mlp", epochs=2)
    train = PROJECT.module(framework)
    reference = train.train_and_evaluate(config, tmp_path / "reference", progress=False)
    train.train_and_evaluate(config, tmp_path / "r", progress=False)
    bad = _truncate_newest_checkpoint(framework, tmp_path / "r" / "checkpoints")
    with pytest.warns(RuntimeWarning, match=f"step {reference['steps']} is unreadable.*{bad.name}"):
        resumed = train.train_and_evaluate(config, tmp_path / "r", resume=True, progress=False)
    # The bad checkpoint is kept aside, not deleted, and epoch 2 ran again from epoch 1's
    # (saving a fresh checkpoint under the old name).
    assert bad.with_name(bad.name + ".unreadable").exists()
    assert resumed["steps"] == reference["steps"]
    tolerance = 0.0 if framework == "jax" else 1e-6
    for key in ("train_loss", "test_loss", "test_accuracy"):
        got, want = resumed["history"][-1][key], reference["history"][-1][key]
        np.testing.assert_allclose(got, want, rtol=0, atol=tolerance, err_msg=key)


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_resume_refuses_an_empty_folder_and_keeps_a_finished_runs_summary(framework, tmp_path):
    config = dataclasses.replace(PROJECT.config("smoke"), model="mlp", epochs=1)
    train = PROJECT.module(framework)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train.train_and_evaluate(config, tmp_path / "new", resume=True, progress=False)
    done = train.train_and_evaluate(config, tmp_path / "r", progress=False)
    again = train.train_and_evaluate(config, tmp_path / "r", resume=True, progress=False)
    assert again == json.loads((tmp_path / "r" / "summary.json").read_text())
    assert again["train_examples_per_s"] == done["train_examples_per_s"]


def test_checkpoints_that_all_fail_to_restore_are_left_in_place(tmp_path):
    config = dataclasses.replace(PROJECT.config("smoke"), model="mlp", epochs=2)
    train = PROJECT.module("torch")
    train.train_and_evaluate(config, tmp_path, progress=False)
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    other_model = dataclasses.replace(config, hidden=(64,))  # same run, another network
    state = train.create_state(other_model, 1)
    from torchpath.common.loop import FRAMEWORK

    checkpointer = FRAMEWORK.checkpointer(tmp_path / "checkpoints")
    with pytest.raises(ConfigError, match="restores into this model"):
        training.restore_readable(FRAMEWORK, checkpointer, state)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before


def test_jax_state_keeps_and_checkpoints_batchnorm_statistics(tmp_path):
    import jax.numpy as jnp
    from flax import linen as nn

    from jaxpath.common.checkpoint import Checkpointer
    from jaxpath.common.state import new_train_state

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.BatchNorm(use_running_average=True)(nn.Dense(3)(x))

    config = PROJECT.config("smoke")
    state = new_train_state(Net(), config, 10, None, (jnp.zeros((2, 4)),))
    assert state.batch_stats["BatchNorm_0"]["var"].shape == (3,)
    ported = {
        "params": state.params,
        "batch_stats": {"BatchNorm_0": {"mean": jnp.ones(3), "var": jnp.full(3, 2.0)}},
    }
    state = new_train_state(Net(), config, 10, ported, (jnp.zeros((2, 4)),))
    checkpointer = Checkpointer(tmp_path / "checkpoints")
    checkpointer.save(1, state, {"history": []})
    fresh = new_train_state(Net(), config, 10, None, (jnp.zeros((2, 4)),))
    restored, _ = checkpointer.restore(fresh)
    checkpointer.close()
    np.testing.assert_array_equal(restored.batch_stats["BatchNorm_0"]["var"], np.full(3, 2.0))
