"""Token ids to fixed-shape arrays: padding, masks and length bucketing, in numpy.

Text batches are `{"tokens": int32 [B, T], "mask": float32 [B, T], ...}` with each sequence
left-aligned: mask[b, t] is 1 on the first length_b positions and 0 on the padding after
them. Both frameworks read these same arrays. `iterate_batches` (shared_data/batches.py)
zeroes the whole mask row of the rows it adds to pad an evaluation batch.

Length bucketing groups sequences of similar length so a batch carries little padding:
`bucket_batches` shuffles, sorts each pool of batches by length, and shuffles the batches
it cut, all keyed by (seed, epoch) like the plain epoch order, so every framework and a
resumed run see the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from ..batches import _AUGMENT_STREAM, Augment, epoch_permutation, num_examples
from .tokenize import PAD_ID, UNK_ID

Batch = dict[str, np.ndarray]


def pad_sequences(
    sequences: Sequence[Sequence[int]], max_len: int | None = None, pad_id: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(tokens int32 [N, T], mask float32 [N, T]): each sequence cut to T = max_len and padded.

    Without max_len, T is the longest sequence's length.
    """
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    width = int(lengths.max(initial=0)) if max_len is None else max_len
    if width < 1:
        raise ValueError(f"max_len must be >= 1, got {width}")
    tokens = np.full((len(sequences), width), pad_id, dtype=np.int32)
    for row, sequence in enumerate(sequences):
        kept = sequence[:width]
        tokens[row, : len(kept)] = kept
    mask = (np.arange(width)[None, :] < np.minimum(lengths, width)[:, None]).astype(np.float32)
    return tokens, mask


def sequence_lengths(mask: np.ndarray) -> np.ndarray:
    """Real tokens per row of a left-aligned mask (int32 [N])."""
    return np.asarray(mask).sum(axis=-1).astype(np.int32)


def bucket_batches(
    lengths: np.ndarray,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    pool_batches: int = 50,
) -> list[np.ndarray]:
    """Row indices of one epoch's batches, each of rows of similar length (last partial dropped).

    The epoch's permutation (the same as unbucketed batching) is cut into pools of
    `pool_batches` batches; each pool is sorted by length (stable, so ties keep the shuffled
    order) and cut into batches; the batches are then shuffled, keyed by (seed, epoch).
    """
    if batch_size < 1 or pool_batches < 1:
        raise ValueError(f"batch_size and pool_batches must be >= 1: {batch_size}, {pool_batches}")
    lengths = np.asarray(lengths)
    order = epoch_permutation(len(lengths), seed, epoch)
    pool = batch_size * pool_batches
    batches = []
    for start in range(0, len(order), pool):
        rows = order[start : start + pool]
        rows = rows[np.argsort(lengths[rows], kind="stable")]
        batches.extend(
            rows[b : b + batch_size] for b in range(0, len(rows) - batch_size + 1, batch_size)
        )
    # A third stream of the (seed, epoch) key, apart from the permutation's.
    shuffle = np.random.default_rng([seed, epoch, 3]).permutation(len(batches))
    return [batches[i] for i in shuffle]


def iterate_buckets(
    arrays: Mapping[str, np.ndarray],
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    start_batch: int = 0,
    augment: Augment | None = None,
    pool_batches: int = 50,
    multiple: int = 8,
) -> Iterator[Batch]:
    """Bucketed batches of `arrays`, their [B, T] fields cut to the batch's longest row.

    The width is rounded up to a multiple of `multiple` (and at most T), so a compiled step
    sees at most ceil(T / multiple) shapes rather than one per batch. An epoch holds as many
    batches as unbucketed batching with the remainder dropped; `start_batch` skips the first
    ones (resume) and `augment` is called as `iterate_batches` calls it, so both frameworks
    and a resumed run see the same batches.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    num_examples(arrays)
    mask = arrays["mask"]
    width = mask.shape[1]
    lengths = sequence_lengths(mask)
    batches = bucket_batches(lengths, batch_size, seed=seed, epoch=epoch, pool_batches=pool_batches)
    for b in range(start_batch, len(batches)):
        rows = batches[b]
        cut = min(width, -(-max(int(lengths[rows].max(initial=1)), 1) // multiple) * multiple)
        batch = {key: value[rows] for key, value in arrays.items()}
        batch = {
            key: value[:, :cut] if value.ndim == 2 and value.shape[1] == width else value
            for key, value in batch.items()
        }
        if augment is not None:
            # The stream iterate_batches gives batch b: one key per (seed, epoch, batch).
            rng = np.random.default_rng([seed, epoch, b, _AUGMENT_STREAM])
            batch = augment(batch, rng, epoch=epoch, index=rows.astype(np.int64, copy=False))
        yield batch


def bucket_widths(max_len: int, multiple: int = 8) -> tuple[int, ...]:
    """Every width `iterate_buckets` can cut a batch to: the shapes a compiled step sees."""
    return tuple(sorted({min(max_len, w) for w in range(multiple, max_len + multiple, multiple)}))


def encode_padded(tokenizer, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, mask) of raw texts as a model reads them: the run's ids, cut and padded.

    A text with no token becomes one [UNK], so every row has a real position; a BERT
    vocabulary frames each text as [CLS] ... [SEP] (`TextTokenizer.model_inputs`). Training,
    export and serving all encode text through this function.
    """
    return pad_sequences(tokenizer.model_inputs(texts, max_len), max_len, pad_id=PAD_ID)


def word_dropout(batch: Batch, rng: np.random.Generator, rate: float, **where) -> Batch:
    """Replace each real token by [UNK] with probability `rate` (training augmentation).

    Called as the driver calls an augmentation; `where` (epoch, index) is not needed. [UNK]
    is id 1 of the trained vocabularies (sentiment's config refuses word dropout over BERT's).
    """
    drop = (rng.random(batch["tokens"].shape) < rate) & (batch["mask"] > 0)
    return {**batch, "tokens": np.where(drop, np.int32(UNK_ID), batch["tokens"])}
