"""The framework-neutral driver's contracts, checked with a numpy stand-in for a framework."""

from __future__ import annotations

import numpy as np
import pytest

from shared_data import training
from shared_data.tasks import Task, classification

NUMPY = training.Framework(
    name="numpy",
    to_device=lambda batch: batch,
    step_rng=lambda seed, step: seed * 1000 + step,
    zero_sums=lambda keys: {k: 0.0 for k in keys},
    add_sums=lambda sums, metrics: {k: sums[k] + float(metrics[k]) for k in sums},
    sums_from_floats=dict,
    block=lambda value: value,
    num_params=lambda state: 0,
    checkpointer=None,
    to_numpy=np.asarray,
)


def _eval_step(state, batch):
    """Sums of a 'model' predicting x * state, masked like the real steps."""
    err = (batch["x"] * state - batch["target"]) ** 2
    mask = batch["mask"]
    return {"loss_sum": np.sum(err * mask), "count": np.sum(mask)}


def test_evaluate_reduces_sums_and_feeds_the_evaluator_every_real_prediction_in_order():
    seen = {}

    def evaluator(predictions, arrays):
        seen["predictions"] = predictions
        return {"n": float(len(predictions))}

    task = Task(
        sums=("loss_sum", "count"),
        means={"loss": ("loss_sum", "count")},
        headline="loss",
        higher_is_better=False,
        evaluator=evaluator,
        evaluator_metrics=("n",),
    )
    x = np.arange(10, dtype=np.float32)
    arrays = {"x": x, "target": 2 * x + 1}
    predict = lambda state, batch: batch["x"] * state  # noqa: E731
    scores = training.evaluate(NUMPY, task, _eval_step, 2.0, arrays, 4, predict)
    # 10 examples in batches of 4: the last batch's two padding rows count nowhere.
    assert scores == {"loss": 1.0, "n": 10.0}
    np.testing.assert_array_equal(seen["predictions"], 2 * x)


def test_a_task_refuses_reductions_of_unknown_sums_and_a_missing_headline():
    with pytest.raises(ValueError, match="not a sum"):
        Task(sums=("a",), means={"m": ("a", "count")}, headline="m", higher_is_better=True)
    with pytest.raises(ValueError, match="headline"):
        Task(sums=("a", "n"), means={"m": ("a", "n")}, headline="x", higher_is_better=True)
    with pytest.raises(ValueError, match="'loss'"):
        Task(sums=("a", "n"), means={"m": ("a", "n")}, headline="m", higher_is_better=True)
    with pytest.raises(ValueError, match="come together"):
        Task(
            sums=("a", "n"),
            means={"loss": ("a", "n")},
            headline="loss",
            higher_is_better=False,
            evaluator_metrics=("r2",),
        )
    task = classification()
    assert task.better(0.9, 0.8) and task.format_of("accuracy") == "pct"
    assert task.describe()["headline"] == "test_accuracy"


def test_train_steps_per_epoch_drops_the_remainder_and_the_validation_split():
    class Config:
        val_size, batch_size = 10, 32

    class Dataset:
        train = {"x": np.zeros(100)}

    assert training.train_steps_per_epoch(Config, Dataset) == 2  # (100 - 10) // 32
