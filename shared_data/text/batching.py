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

from ..batches import epoch_permutation, num_examples

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
    pool_batches: int = 50,
    multiple: int = 8,
) -> Iterator[Batch]:
    """Bucketed batches of `arrays`, their [B, T] fields cut to the batch's longest row.

    The width is rounded up to a multiple of `multiple`, so a compiled step sees a handful of
    shapes rather than one per batch.
    """
    num_examples(arrays)
    mask = arrays["mask"]
    width = mask.shape[1]
    for rows in bucket_batches(
        sequence_lengths(mask), batch_size, seed=seed, epoch=epoch, pool_batches=pool_batches
    ):
        longest = int(sequence_lengths(mask[rows]).max(initial=1))
        cut = min(width, -(-max(longest, 1) // multiple) * multiple)
        batch = {key: value[rows] for key, value in arrays.items()}
        yield {
            key: value[:, :cut] if value.ndim == 2 and value.shape[1] == width else value
            for key, value in batch.items()
        }
