"""Sentence-level sentiment datasets as padded token arrays: one entry point for both frameworks.

`load_sentiment(config, workdir)` reads the corpus the config names, splits it, learns (or,
on resume, reloads) the run's vocabulary from the training split only, and returns
`{"tokens": int32 [N, max_len], "mask": float32 [N, max_len], "label": int32 [N]}` per split.

* ``rt-polarity`` -- Pang & Lee's 10,662 sentences have no official split: a stated 90/10
  split, drawn from `split_seed` (not the training seed, so runs of several seeds share it):
  9,596 train / 1,066 test; or fold k of K-fold cross-validation (`folds`, `fold`), the
  usual protocol for this corpus (Kim, 2014).
* ``sst2`` -- GLUE's SST-2: train (67,349 phrases and sentences) and dev (872 sentences) as
  the test split; GLUE's test has no labels.
* ``embedded`` -- 160 sentences shipped in the repository (sentiment_quickstart.tsv: written
  for this project, its header says how), for the offline quickstart and the smoke runs.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..batches import iterate_batches
from ..errors import DataError
from .batching import encode_padded, iterate_buckets
from .readers import LabelledText, read_rt_polarity, read_sst2
from .tokenize import TextTokenizer, tokenizer_for_run
from .vectors import load_vectors

DATASETS = ("rt-polarity", "sst2", "embedded")
EMBEDDED_FILE = "sentiment_quickstart.tsv"
EMBEDDED_SOURCE = f"shared_data/text/{EMBEDDED_FILE} (embedded, 160 sentences)"


@dataclass(frozen=True)
class TextDataset:
    """A text classification dataset: padded token arrays per split, and their vocabulary."""

    name: str
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    num_classes: int
    source: str
    tokenizer: TextTokenizer
    bucket_multiple: int = 0  # > 0: length-bucketed training batches, widths multiples of it

    def train_batches(self, arrays, batch_size: int, *, seed, epoch, remainder, **options):
        """One epoch of training batches (the driver's hook): bucketed by length, or plain."""
        if not self.bucket_multiple:
            return iterate_batches(
                arrays, batch_size, seed=seed, epoch=epoch, remainder=remainder, **options
            )
        if remainder != "drop":
            raise ValueError(f"bucketed batches drop the remainder, got remainder={remainder!r}")
        return iterate_buckets(
            arrays, batch_size, seed=seed, epoch=epoch, multiple=self.bucket_multiple, **options
        )

    def mean_length(self, split: str = "train") -> float:
        """Real tokens per example (after truncation): what tokens/s multiply by."""
        return float(getattr(self, split)["mask"].sum(axis=1).mean())


def read_embedded() -> dict[str, LabelledText]:
    """The embedded quickstart sentences, {"train": ..., "test": ...}."""
    text = resources.files("shared_data.text").joinpath(EMBEDDED_FILE).read_text("utf-8")
    rows = csv.DictReader(
        (line for line in text.splitlines() if not line.startswith("#")),
        delimiter="\t",
        quoting=csv.QUOTE_NONE,
    )
    splits: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "test": ([], [])}
    for row in rows:
        splits[row["split"]][0].append(row["sentence"])
        splits[row["split"]][1].append(int(row["label"]))
    return {name: LabelledText(t, y, EMBEDDED_SOURCE) for name, (t, y) in splits.items()}


def split_holdout(
    data: LabelledText, test_fraction: float, seed: int, folds: int = 0, fold: int = 0
) -> dict[str, LabelledText]:
    """A seeded random {"train", "test"} split.

    folds == 0: test_fraction of the examples in test. folds = K > 1: fold k of K-fold
    cross-validation, the k-th of K near-equal slices of the same permutation in test (with
    K = 10, fold 0 is the 10% holdout exactly).
    """
    n = len(data)
    order = np.random.default_rng([seed, 0, 0, 4]).permutation(n)  # stream 4: text splits
    if folds:
        if not 0 <= fold < folds <= n:
            raise DataError(f"fold {fold} of {folds}: wants 0 <= fold < folds <= {n} examples")
        start, stop = fold * n // folds, (fold + 1) * n // folds
        train = np.concatenate([order[:start], order[stop:]])  # the permutation's order
        return {"train": data.select(train), "test": data.select(order[start:stop])}
    n_test = round(n * test_fraction)
    if not 0 < n_test < n:
        raise DataError(f"test_fraction {test_fraction} leaves no train or no test example of {n}")
    return {"train": data.select(order[n_test:]), "test": data.select(order[:n_test])}


def read_sentiment(name: str, data_dir=None, *, test_fraction=0.1, split_seed=0, folds=0, fold=0):
    """{"train", "test"} LabelledText of dataset `name` (one of DATASETS).

    `folds` and `fold` pick a cross-validation fold of rt-polarity (split_holdout); SST-2 has
    its own dev split and the embedded sentences theirs, so they refuse folds.
    """
    if name == "rt-polarity":
        return split_holdout(read_rt_polarity(data_dir), test_fraction, split_seed, folds, fold)
    if folds:
        raise DataError(
            f"dataset {name!r} has a fixed test split; cross-validation (folds) is for rt-polarity"
        )
    if name == "sst2":
        return {"train": read_sst2("train", data_dir), "test": read_sst2("dev", data_dir)}
    if name == "embedded":
        return read_embedded()
    raise DataError(f"unknown sentiment dataset {name!r}; choose one of {', '.join(DATASETS)}")


def encode_split(data: LabelledText, tokenizer: TextTokenizer, max_len: int) -> dict:
    """Padded arrays of one split; a sentence with no token becomes one [UNK]."""
    tokens, mask = encode_padded(tokenizer, data.texts, max_len)
    return {"tokens": tokens, "mask": mask, "label": np.asarray(data.labels, dtype=np.int32)}


def load_sentiment(config, workdir: str | Path | None = None) -> TextDataset:
    """The dataset `config` names, tokenized with the run's vocabulary (see the module doc)."""
    splits = read_sentiment(
        config.dataset,
        config.data_dir,
        test_fraction=config.test_fraction,
        split_seed=config.split_seed,
        folds=config.folds,
        fold=config.fold,
    )
    train, test = splits["train"], splits["test"]
    if config.limit_train is not None:
        train = train.select(range(min(config.limit_train, len(train))))
    if config.limit_test is not None:
        test = test.select(range(min(config.limit_test, len(test))))
    # Learned from the training split only; on resume read back from the run folder.
    extra = load_vectors(config.vectors).words if config.extend_vocab else ()
    tokenizer = tokenizer_for_run(
        workdir,
        train.texts,
        config.tokenizer,
        config.vocab_size,
        min_count=config.min_count,
        extra_words=extra,
    )
    return TextDataset(
        name=config.dataset,
        train=encode_split(train, tokenizer, config.max_len),
        test=encode_split(test, tokenizer, config.max_len),
        num_classes=2,
        source=train.source,
        tokenizer=tokenizer,
        bucket_multiple=config.bucket_multiple,
    )
