"""Regression (roadmap stage A): linear, logistic and softmax regression, one Dense layer each.

Written first by hand in NumPy (shared_data/byhand/regression.py, the oracle), then in both
frameworks. Each objective is mean loss + (l2 / 2) ||W||^2, the bias unpenalised. Data:
scikit-learn's bundled sets, standardised on the train split (shared_data/tabular.py).

Variants (`get_config(variant)`), measured 2026-11-29 on 2 shared CPU cores (docs/RESULTS.md):

* ``default`` -- SGD with momentum 0.9, lr 0.1 with a cosine decay, batch 32, 40 epochs,
  l2 = 0.01; the dataset is the model's own ("auto"). Torch and JAX agree to 4 digits:
  ``roadmap compare regression`` (linear, diabetes): test MSE 2924.48, R^2 0.5094;
  ``roadmap compare regression --model logistic`` (breast cancer): 99.12% test accuracy;
  ``roadmap compare regression --model softmax`` (digits): 95.82% test accuracy.
  Each command takes about 8 s in all (imports, Orbax checkpoints of every epoch); training
  with evaluation 0.3-0.7 s (torch) and 1.5-2.5 s (JAX). The parameters end within a
  relative distance 6e-3 / 8e-3 / 3e-2 of the exact optimum
  (``python -m shared_data.byhand.regression --model linear|logistic|softmax``, 1-4 s).
* ``smoke`` -- two epochs on 128 synthetic examples, for tests.

``--dataset synthetic`` (any model) draws data with a known answer (shared_data/tabular.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from shared_data.configs.base import (
    ConfigError,
    TrainConfig,
    at_least,
    between,
    field,
    one_of,
    pick_variant,
)
from shared_data.tabular import DATASETS, NATURAL, SERVES, resolve, shape_of
from shared_data.tasks import Task, classification

MODELS = ("linear", "logistic", "softmax")


@dataclasses.dataclass(frozen=True)
class RegressionConfig(TrainConfig):
    """Hyperparameters of one regression run; identical for the oracle and both frameworks."""

    model: str = field("linear", one_of(*MODELS))  # the loss: squared error, sigmoid, softmax
    # auto: the model's natural set (diabetes, breast_cancer, digits); synthetic: known answer
    dataset: str = field("auto", one_of("auto", *DATASETS))
    l2: float = field(1e-2, at_least(0))  # penalty (l2 / 2) ||W||^2 on weights, not the bias
    test_fraction: float = field(0.2, between(0.05, 0.5))  # held-out share, seeded split
    num_examples: int = field(1000, at_least(10))  # synthetic: examples before the split
    num_features: int = field(8, at_least(1))  # synthetic: features
    num_classes: int = field(3, at_least(2))  # synthetic softmax: classes
    noise: float = field(0.5, at_least(0))  # synthetic linear: std of the target noise

    def check(self) -> None:
        """A real dataset must have the kind of target the model fits."""
        super().check()
        name = resolve(self.dataset, self.model)
        if name != "synthetic" and self.model not in SERVES[name]:
            fits = [d for d, kinds in SERVES.items() if self.model in kinds]
            raise ConfigError(
                f"field 'dataset' {name!r} has no {self.model} target; "
                f"--model {self.model} wants --dataset {', '.join([*fits, 'synthetic', 'auto'])}"
            )


def dataset_name(config: RegressionConfig) -> str:
    """The dataset a config loads ("auto" resolved for its model)."""
    return resolve(config.dataset, config.model)


def num_features(config: RegressionConfig) -> int:
    """Input features of the config's dataset."""
    return shape_of(config.dataset, config.model, config.num_features, config.num_classes)[0]


def num_outputs(config: RegressionConfig) -> int:
    """Model outputs: 1 for linear and logistic, the class count for softmax."""
    return shape_of(config.dataset, config.model, config.num_features, config.num_classes)[1]


def batch_fields(config: RegressionConfig) -> dict[str, dict]:
    """{key: InputSpec keyword arguments (shape without the batch axis, dtype...)} of a batch."""
    if config.model == "linear":
        target = {"target": {"shape": (), "dtype": "float32"}}
    else:
        classes = num_outputs(config) if config.model == "softmax" else 2
        target = {"label": {"shape": (), "dtype": "int32", "num_classes": classes}}
    return {"x": {"shape": (num_features(config),), "dtype": "float32"}, **target}


def r2(predictions: np.ndarray, arrays) -> dict[str, float]:
    """Coefficient of determination of the predictions (scikit-learn's r2_score)."""
    from sklearn.metrics import r2_score

    return {"r2": float(r2_score(arrays["target"], predictions))}


def get_task(config: RegressionConfig) -> Task:
    """Linear: MSE (headline, lower is better) and R^2; otherwise classification."""
    if config.model != "linear":
        return classification()
    return Task(
        sums=("loss_sum", "sq_err_sum", "count"),
        means={"loss": ("loss_sum", "count"), "mse": ("sq_err_sum", "count")},
        headline="mse",
        higher_is_better=False,
        evaluator=r2,
        evaluator_metrics=("r2",),
        formats={"loss": "f4", "mse": "f4", "r2": "f4"},
    )


def variants() -> dict[str, RegressionConfig]:
    """Every named config: default and smoke."""
    base = RegressionConfig(
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        schedule="cosine",
        batch_size=32,
        epochs=40,
        log_every=20,
    )
    return {
        "default": base,
        "smoke": dataclasses.replace(
            base,
            dataset="synthetic",
            num_examples=160,
            epochs=2,
            batch_size=16,
            eval_batch_size=32,
            log_every=4,
        ),
    }


def get_config(variant: str = "default") -> RegressionConfig:
    """The config of one variant (see the module docstring)."""
    return pick_variant("regression", variants(), variant)


__all__ = ["MODELS", "NATURAL", "RegressionConfig", "get_config", "get_task", "variants"]
