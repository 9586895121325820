"""Tabular datasets for the regression project: scikit-learn's bundled sets and synthetic data.

Every dataset is split deterministically from the seed (stratified for class labels), then
its features are standardised with the statistics of the TRAIN split only (the test split
must not leak into them). Batches are

* linear:  {"x": float32 [N, d], "target": float32 [N]}
* logistic / softmax: {"x": float32 [N, d], "label": int32 [N]}

The float target is called "target", not "label": torchpath's `to_device` turns every
"label" into int64 class indices, which would truncate a float regression target.

The synthetic sets have a known answer (`TabularDataset.truth`, in the standardised
coordinates the models see): y = x w* + b* + noise, labels drawn from sigmoid(x w* + b*),
or from softmax(x W* + b*).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DataError

DATASETS = ("diabetes", "breast_cancer", "digits", "synthetic")
KINDS = ("linear", "logistic", "softmax")
# Which kinds of target each real dataset can serve (synthetic serves all three).
SERVES = {
    "diabetes": ("linear",),
    "breast_cancer": ("logistic", "softmax"),
    "digits": ("softmax",),
}
FEATURES = {"diabetes": 10, "breast_cancer": 30, "digits": 64}
CLASSES = {"diabetes": None, "breast_cancer": 2, "digits": 10}
SOURCES = {
    "diabetes": "scikit-learn diabetes (embedded, 442 patients, 10 features)",
    "breast_cancer": "scikit-learn breast cancer Wisconsin (embedded, 569 tumours, 30 features)",
    "digits": "scikit-learn digits (embedded, 1,797 8x8 images as 64 features)",
}
# The dataset "auto" stands for: each model's natural real dataset.
NATURAL = {"linear": "diabetes", "logistic": "breast_cancer", "softmax": "digits"}
# Seed-key stream tags, distinct from batches.py (1, 2), digits.py (3) and synthetic.py (4-6).
_SPLIT_STREAM, _SYNTH_STREAM = 7, 8


@dataclass(frozen=True)
class TabularDataset:
    """Standardised features and targets per split, with what produced them."""

    name: str
    kind: str  # linear (float "target"), logistic or softmax (int "label")
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    num_features: int
    num_classes: int | None  # None for a float target
    source: str
    mean: np.ndarray  # per-feature mean of the raw train split (float64)
    std: np.ndarray  # per-feature std of the raw train split (1 where a feature is constant)
    truth: dict[str, np.ndarray] | None = None  # synthetic: {"kernel": [d, k], "bias": [k]}

    @property
    def target_key(self) -> str:
        """ "target" for a float target, "label" for class labels."""
        return target_key(self.kind)


def target_key(kind: str) -> str:
    """The batch key of the target of a `kind` model."""
    return "target" if kind == "linear" else "label"


def _raw_sklearn(name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn import datasets
    except ImportError as exc:
        raise DataError(
            f"the {name!r} dataset ships with scikit-learn: `pip install scikit-learn`, "
            "or use --dataset synthetic"
        ) from exc
    loader = {
        "diabetes": lambda: datasets.load_diabetes(scaled=False),
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
    }[name]
    bunch = loader()
    return np.asarray(bunch.data, np.float64), np.asarray(bunch.target)


def synthetic(
    kind: str,
    num_examples: int,
    num_features: int,
    num_classes: int,
    noise: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(x [n, d] raw, y [n], truth {"kernel": [d, k], "bias": [k]}): a known generating answer."""
    rng = np.random.default_rng([seed, 0, 0, _SYNTH_STREAM])
    # Shifted, unequally scaled features, so standardisation has work to do.
    loc = rng.uniform(-2.0, 2.0, num_features)
    scale = rng.uniform(0.5, 3.0, num_features)
    z = rng.standard_normal((num_examples, num_features))
    x = loc + scale * z
    outputs = num_classes if kind == "softmax" else 1
    # Weights of unit-variance features around 3 / sqrt(d): scores of std ~3, learnable
    # but not separable, so the classification optima are finite even without a penalty.
    w_z = rng.standard_normal((num_features, outputs)) * (3.0 / np.sqrt(num_features))
    w = w_z / scale[:, None]
    b = rng.standard_normal(outputs)
    scores = x @ w + b
    if kind == "linear":
        y = scores[:, 0] + noise * rng.standard_normal(num_examples)
    elif kind == "logistic":
        y = (rng.random(num_examples) < 1.0 / (1.0 + np.exp(-scores[:, 0]))).astype(np.int64)
    else:  # Gumbel-max draws labels from softmax(scores) exactly.
        y = np.argmax(scores + rng.gumbel(size=scores.shape), axis=1)
    return x, y, {"kernel": w, "bias": b}


def _split(y: np.ndarray, classes: bool, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the test rows: a seeded permutation, stratified for class labels."""
    rng = np.random.default_rng([seed, 0, 0, _SPLIT_STREAM])
    is_test = np.zeros(len(y), dtype=bool)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if classes else [np.arange(len(y))]
    for members in groups:
        members = rng.permutation(members)
        is_test[members[: int(round(len(members) * test_fraction))]] = True
    if is_test.all() or not is_test.any():
        raise DataError(
            f"field 'test_fraction' {test_fraction} leaves an empty split of {len(y)} examples"
        )
    return is_test


def standardize_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per feature; constant features (digits' blank corners) get std 1."""
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    return mean, np.where(std > 1e-12, std, 1.0)


def _check(name: str, kind: str, test_fraction: float, sizes: dict[str, int | None]) -> str:
    key = str(name).strip().lower()
    if key not in DATASETS:
        raise DataError(f"field 'dataset' wants one of {', '.join(DATASETS)}, got {name!r}")
    if kind not in KINDS:
        raise DataError(f"field 'model' wants one of {', '.join(KINDS)}, got {kind!r}")
    if key != "synthetic" and kind not in SERVES[key]:
        raise DataError(
            f"dataset {key!r} has no {kind} target; it serves {', '.join(SERVES[key])} "
            "(or use --dataset synthetic)"
        )
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"field 'test_fraction' wants a number in (0, 1), got {test_fraction}")
    for field, value in sizes.items():
        if value is not None and value < 1:
            raise DataError(f"field {field!r} wants a positive integer, got {value}")
    return key


def load_tabular(
    name: str,
    kind: str,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    limit_train: int | None = None,
    limit_test: int | None = None,
    num_examples: int = 1000,
    num_features: int = 8,
    num_classes: int = 3,
    noise: float = 0.5,
) -> TabularDataset:
    """Load dataset `name` for a `kind` model, split from `seed`, standardised on train."""
    key = _check(
        name,
        kind,
        test_fraction,
        {
            "limit_train": limit_train,
            "limit_test": limit_test,
            "num_examples": num_examples,
            "num_features": num_features,
        },
    )
    truth = None
    if key == "synthetic":
        if kind == "softmax" and num_classes < 2:
            raise DataError(f"field 'num_classes' wants at least 2, got {num_classes}")
        x, y, truth = synthetic(kind, num_examples, num_features, num_classes, noise, seed)
        classes = num_classes if kind == "softmax" else (2 if kind == "logistic" else None)
        source = f"synthetic {kind} ({num_examples} examples, {num_features} features, seed {seed})"
    else:
        x, y = _raw_sklearn(key)
        classes, source = CLASSES[key], SOURCES[key]
    is_test = _split(y, kind != "linear", test_fraction, seed)
    # Boolean masks keep the original order inside each split; shuffling is the batcher's job.
    x_train, y_train = x[~is_test][:limit_train], y[~is_test][:limit_train]
    x_test, y_test = x[is_test][:limit_test], y[is_test][:limit_test]
    mean, std = standardize_stats(x_train)
    if truth is not None:
        # x w + b == ((x - mean) / std) (std w) + (b + mean w): the same function, new coordinates.
        w, b = truth["kernel"], truth["bias"]
        truth = {"kernel": w * std[:, None], "bias": b + mean @ w}
    ykey = target_key(kind)
    ydtype = np.float32 if kind == "linear" else np.int32

    def split(xs: np.ndarray, ys: np.ndarray) -> dict[str, np.ndarray]:
        return {"x": ((xs - mean) / std).astype(np.float32), ykey: ys.astype(ydtype)}

    return TabularDataset(
        name=key,
        kind=kind,
        train=split(x_train, y_train),
        test=split(x_test, y_test),
        num_features=x.shape[1],
        num_classes=classes,
        source=source,
        mean=mean,
        std=std,
        truth=truth,
    )


def resolve(name: str, kind: str) -> str:
    """The dataset a config means: `name`, or the model's natural one when it is "auto"."""
    return NATURAL.get(kind, "synthetic") if name == "auto" else name


def shape_of(name: str, kind: str, num_features: int, num_classes: int) -> tuple[int, int]:
    """(features, model outputs) of dataset `name` for a `kind` model, without loading it."""
    key = resolve(name, kind)
    features = num_features if key == "synthetic" else FEATURES[key]
    if kind != "softmax":
        return features, 1
    return features, num_classes if key == "synthetic" else CLASSES[key]


def load_for_config(config) -> TabularDataset:
    """The dataset a regression config names (model, dataset, seed, limits, synthetic sizes)."""
    return load_tabular(
        resolve(config.dataset, config.model),
        config.model,
        seed=config.seed,
        test_fraction=config.test_fraction,
        limit_train=config.limit_train,
        limit_test=config.limit_test,
        num_examples=config.num_examples,
        num_features=config.num_features,
        num_classes=config.num_classes,
        noise=config.noise,
    )
