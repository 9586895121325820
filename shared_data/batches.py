"""Deterministic numpy batching shared by both frameworks: same seed, same batches, same order."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping

import numpy as np

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

REMAINDERS = ("drop", "pad")
# Trailing stream tag in seed keys: [seed, epoch] shuffles, [seed, epoch, batch, 1] augments.
_AUGMENT_STREAM = 1
_SPLIT_STREAM = 2

Batch = dict[str, np.ndarray]
# The augment hook: augment(batch, rng, *, epoch, index) -> batch, where index holds the
# dataset rows of the batch (int64; pad rows repeat a real row's index).
Augment = Callable[..., Batch]


def to_float_nhwc(images_uint8: np.ndarray, mean=MNIST_MEAN, std=MNIST_STD) -> np.ndarray:
    """Turn uint8 [N,H,W] or [N,H,W,C] images into normalised float32 NHWC: (x/255-mean)/std."""
    x = np.asarray(images_uint8)
    if x.ndim == 3:
        x = x[..., None]
    elif x.ndim != 4:
        raise ValueError(f"images must be [N,H,W] or [N,H,W,C], got shape {list(x.shape)}")
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    return ((x.astype(np.float32) / np.float32(255.0) - mean) / std).astype(np.float32)


def num_batches(n: int, batch_size: int, remainder: str) -> int:
    """Return how many batches an epoch of n examples gives ("drop" floors, "pad" rounds up)."""
    if remainder not in REMAINDERS:
        raise ValueError(f"remainder must be one of {REMAINDERS}, got {remainder!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return n // batch_size if remainder == "drop" else -(-n // batch_size)


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """Return the example order for (seed, epoch), identical in every framework and on resume."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def num_examples(arrays: Mapping[str, np.ndarray]) -> int:
    """The leading dimension every array of a split shares (an error if they differ)."""
    if not arrays:
        raise ValueError("arrays is empty; pass e.g. {'image': ..., 'label': ...}")
    lengths = {key: len(value) for key, value in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"arrays must share their leading dimension, got lengths {lengths}")
    return next(iter(lengths.values()))


def iterate_batches(
    arrays: Mapping[str, np.ndarray],
    batch_size: int,
    *,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    remainder: str = "drop",
    start_batch: int = 0,
    augment: Augment | None = None,
) -> Iterator[Batch]:
    """Yield one epoch of fixed-size batches; "pad" adds a float32 "mask" key to every batch.

    `augment(batch, rng, epoch=epoch, index=rows)` gets a generator keyed by (seed, epoch,
    batch) and the batch's dataset rows.
    """
    n = num_examples(arrays)
    total = num_batches(n, batch_size, remainder)
    if start_batch < 0:
        raise ValueError(f"start_batch must be >= 0, got {start_batch}")
    order = epoch_permutation(n, seed, epoch) if shuffle else np.arange(n)
    pad = remainder == "pad"
    for b in range(start_batch, total):
        idx = order[b * batch_size : (b + 1) * batch_size]
        real = len(idx)
        if pad and real < batch_size:
            # Padding repeats a real row so the batch holds valid data; the mask zeroes it out.
            idx = np.concatenate([idx, np.full(batch_size - real, idx[0], dtype=idx.dtype)])
        batch = {key: value[idx] for key, value in arrays.items()}
        if pad:
            mask = np.zeros(batch_size, dtype=np.float32)
            mask[:real] = 1.0
            if "mask" in batch:
                # A per-example mask already present (e.g. token masks) is zeroed on pad rows.
                row = mask.reshape((batch_size,) + (1,) * (batch["mask"].ndim - 1))
                batch["mask"] = (batch["mask"] * row).astype(batch["mask"].dtype)
            else:
                batch["mask"] = mask
        if augment is not None:
            # Keyed by batch index, not by position in this loop, so resuming reproduces it.
            rng = np.random.default_rng([seed, epoch, b, _AUGMENT_STREAM])
            batch = augment(batch, rng, epoch=epoch, index=idx.astype(np.int64, copy=False))
        yield batch


def prefetch(iterator: Iterable, depth: int = 2) -> Iterator:
    """Yield `iterator`'s items in order, computed up to `depth` ahead on a daemon thread.

    The producer's exceptions are raised in the consumer; closing the generator (a `break`
    out of a for loop that then drops it, .close(), garbage collection) stops the thread
    after the item it is computing and closes the source.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    return _prefetch(iter(iterator), depth)


def _prefetch(source: Iterator, depth: int) -> Iterator:
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        items.put((True, item), timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            outcome = (False, None)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            outcome = (False, err)
        finally:
            close = getattr(source, "close", None)
            if stop.is_set() and close is not None:
                close()
        while not stop.is_set():
            try:
                items.put(outcome, timeout=0.05)
                return
            except queue.Full:
                continue

    thread = threading.Thread(target=produce, name="shared_data.prefetch", daemon=True)
    thread.start()
    try:
        while True:
            more, item = items.get()
            if more:
                yield item
            elif item is None:
                return
            else:
                raise item
    finally:
        stop.set()
        thread.join()


def random_shift(
    batch: Batch, rng: np.random.Generator, max_shift: int = 2, *, epoch=None, index=None
) -> Batch:
    """Translate each NHWC "image" by a random integer shift in [-max_shift, max_shift]."""
    images = batch["image"]
    if images.ndim != 4:
        raise ValueError(f"random_shift expects NHWC images, got shape {list(images.shape)}")
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    n, h, w, c = images.shape
    dy = rng.integers(-max_shift, max_shift + 1, size=n)
    dx = rng.integers(-max_shift, max_shift + 1, size=n)
    m = max_shift
    # Each image's minimum is its background (0 before normalisation, negative after).
    fill = images.min(axis=(1, 2, 3), keepdims=True) if n else np.zeros((0, 1, 1, 1))
    canvas = np.empty((n, h + 2 * m, w + 2 * m, c), dtype=images.dtype)
    canvas[...] = fill
    canvas[:, m : m + h, m : m + w] = images
    # One gather: output pixel (y, x) reads canvas (y - dy + m, x - dx + m).
    rows = (m - dy)[:, None] + np.arange(h)
    cols = (m - dx)[:, None] + np.arange(w)
    shifted = canvas[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return {**batch, "image": shifted}


def train_val_split(
    arrays: Mapping[str, np.ndarray], val_size: int, seed: int
) -> tuple[Batch, Batch]:
    """Split arrays into (train, val) with val_size random rows, deterministic in seed."""
    n = num_examples(arrays)
    if val_size < 0 or val_size >= n:
        raise ValueError(
            f"val_size must be in 0..{n - 1} (there are {n} examples), got {val_size}; "
            "lower --val-size"
        )
    if val_size == 0:
        return dict(arrays), {key: value[:0] for key, value in arrays.items()}
    perm = np.random.default_rng([seed, 0, 0, _SPLIT_STREAM]).permutation(n)
    # Sorted indices keep each side in the original order; shuffling is iterate_batches' job.
    val_idx = np.sort(perm[:val_size])
    train_idx = np.sort(perm[val_size:])
    return (
        {key: value[train_idx] for key, value in arrays.items()},
        {key: value[val_idx] for key, value in arrays.items()},
    )


def local_batch_size(global_batch_size: int, num_workers: int) -> int:
    """Rows each of `num_workers` workers gets of a global batch (an error unless it divides)."""
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    if global_batch_size < 1:
        raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}")
    if global_batch_size % num_workers:
        raise ValueError(
            f"the global batch size {global_batch_size} does not divide by {num_workers} "
            f"workers; pick a --batch-size that is a multiple of {num_workers} (e.g. "
            f"{(global_batch_size // num_workers or 1) * num_workers}) or another worker count"
        )
    return global_batch_size // num_workers


def worker_slice(batch: Mapping[str, np.ndarray], worker: int, num_workers: int) -> Batch:
    """Worker `worker` of `num_workers`' contiguous share of one global batch.

    Every worker builds the same global batch (`iterate_batches` with the same seed, epoch
    and start batch, augmentation included) and keeps rows
    [worker * b, (worker + 1) * b) of every array, b = global size / num_workers; so the
    workers together see exactly the global batch of a single-worker run, in order, at every
    step, in both frameworks and on resume. Data parallelism over the concatenated shards
    then equals single-worker training on the global batch when each worker's loss is the
    mean over its rows and the gradients are averaged (`lax.pmean`, DDP's all-reduce).
    With remainder="pad" the "mask" key is sliced like the rest, but the mean of
    per-worker masked means is not the global masked mean: reduce sums instead.

        for batch in iterate_batches(arrays, global_batch_size, seed=seed, epoch=epoch):
            local = worker_slice(batch, rank, world_size)

    Raises ValueError (naming the sizes) when the global batch does not divide by
    `num_workers`, or when `worker` is not in 0..num_workers-1.
    """
    size = local_batch_size(num_examples(batch), num_workers)
    if not 0 <= worker < num_workers:
        raise ValueError(f"worker must be in 0..{num_workers - 1}, got {worker}")
    start = worker * size
    return {key: value[start : start + size] for key, value in batch.items()}


def worker_batches(
    batches: Iterable[Mapping[str, np.ndarray]], worker: int, num_workers: int
) -> Iterator[Batch]:
    """`worker_slice` of every batch of `batches` (e.g. an `iterate_batches` epoch)."""
    for batch in batches:
        yield worker_slice(batch, worker, num_workers)
