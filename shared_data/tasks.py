"""What a project measures, declared once for both frameworks and every tool.

A `Task` names the sums a step returns (summed over batches, so padded batches add up
exactly), how they reduce to metrics (a ratio of two sums), the headline metric and its
direction, the training augmentation (a numpy function from shared_data) and, for metrics
that are not sums (R^2, BLEU, mAP), a host-side evaluator over the model's predictions.
The driver (shared_data/training.py), `roadmap compare` and the report read nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

Batch = dict[str, np.ndarray]
# (predictions of every real example in order, the split's arrays) -> {metric: value}
Evaluator = Callable[[np.ndarray, Mapping[str, np.ndarray]], dict[str, float]]


@dataclasses.dataclass(frozen=True)
class Task:
    """The metrics of one project: sums, their reductions, the headline and its direction."""

    sums: tuple[str, ...]  # keys every train/eval step returns, summed over batches
    means: Mapping[str, tuple[str, str]]  # metric -> (numerator sum, denominator sum)
    headline: str  # the metric a run is judged by, e.g. "accuracy" (reported as test_<name>)
    higher_is_better: bool
    # training only: (batch, rng, *, epoch, index) -> batch (shared_data.batches.iterate_batches)
    augment: Callable[..., Batch] | None = None
    evaluator: Evaluator | None = None  # host-side metrics from predictions
    evaluator_metrics: tuple[str, ...] = ()  # the names the evaluator returns
    # A validation split held out of the training data, made like the test split the loader
    # prepared (the VAE: binarised once, with fixed noise); None: used as it is.
    prepare_eval: Callable[[Batch], Batch] | None = None
    formats: Mapping[str, str] = dataclasses.field(default_factory=dict)  # metric -> pct|f4

    def __post_init__(self):
        for name, (num, den) in self.means.items():
            for key in (num, den):
                if key not in self.sums:
                    raise ValueError(f"metric {name!r} reduces {key!r}, which is not a sum")
        if self.headline not in self.metric_names:
            raise ValueError(f"headline {self.headline!r} is none of {self.metric_names}")
        if "loss" not in self.means:  # every table shows the training loss
            raise ValueError("a task reduces a 'loss' metric (the mean training objective)")
        if bool(self.evaluator) != bool(self.evaluator_metrics):
            raise ValueError("evaluator and evaluator_metrics come together (names it returns)")

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Every metric a split reports: the reduced sums, then the evaluator's."""
        return (*self.means, *self.evaluator_metrics)

    def reduce(self, sums: Mapping[str, Any]) -> dict[str, float]:
        """Metrics from summed values (an empty denominator counts as one)."""
        return {
            name: float(sums[num]) / max(float(sums[den]), 1.0)
            for name, (num, den) in self.means.items()
        }

    def format_of(self, metric: str) -> str:
        """How tables print `metric` ("pct" for fractions shown in percent, else "f4")."""
        return self.formats.get(metric, "pct" if metric == "accuracy" else "f4")

    def better(self, a: float, b: float) -> bool:
        """True when headline value `a` is better than `b`."""
        return a > b if self.higher_is_better else a < b

    def describe(self) -> dict[str, Any]:
        """Plain-JSON summary, written into every run's summary."""
        return {
            "metrics": list(self.metric_names),
            "headline": f"test_{self.headline}",
            "higher_is_better": self.higher_is_better,
            "formats": {m: self.format_of(m) for m in self.metric_names},
        }


def classification(augment=None, evaluator=None, evaluator_metrics=()) -> Task:
    """Softmax classification: mean cross-entropy and accuracy; headline accuracy."""
    return Task(
        sums=("loss_sum", "correct", "count"),
        means={"loss": ("loss_sum", "count"), "accuracy": ("correct", "count")},
        headline="accuracy",
        higher_is_better=True,
        augment=augment,
        evaluator=evaluator,
        evaluator_metrics=evaluator_metrics,
    )
