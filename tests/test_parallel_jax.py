"""Data parallelism in JAX: the shared worker split, and the three forms against one device."""

from __future__ import annotations

import numpy as np
import pytest

from shared_data.batches import iterate_batches, local_batch_size, worker_batches, worker_slice


def _arrays(n=24):
    rng = np.random.default_rng(0)
    return {
        "image": rng.normal(size=(n, 4, 4, 1)).astype(np.float32),
        "label": np.arange(n, dtype=np.int32),
    }


@pytest.mark.parametrize("workers", [1, 2, 3, 4])
def test_worker_slices_concatenate_to_the_global_batch(workers):
    arrays = _arrays()
    for batch in iterate_batches(arrays, 12, seed=3, epoch=1):
        shards = [worker_slice(batch, w, workers) for w in range(workers)]
        assert all(len(s["label"]) == 12 // workers for s in shards)
        for key in batch:
            np.testing.assert_array_equal(np.concatenate([s[key] for s in shards]), batch[key])


def test_worker_batches_follow_the_epoch_and_resume():
    arrays = _arrays()
    full = list(worker_batches(iterate_batches(arrays, 8, seed=1, epoch=2), 1, 2))
    resumed = list(worker_batches(iterate_batches(arrays, 8, seed=1, epoch=2, start_batch=1), 1, 2))
    assert len(full) == 3
    for a, b in zip(full[1:], resumed, strict=True):
        np.testing.assert_array_equal(a["label"], b["label"])
    # worker 1 of 2 holds the second half of each global batch
    first = next(iterate_batches(arrays, 8, seed=1, epoch=2))
    np.testing.assert_array_equal(full[0]["label"], first["label"][4:])


def test_worker_split_errors_name_the_sizes():
    batch = next(iterate_batches(_arrays(), 10, shuffle=False))
    with pytest.raises(ValueError, match=r"global batch size 10 does not divide by 4"):
        worker_slice(batch, 0, 4)
    with pytest.raises(ValueError, match=r"worker must be in 0\.\.1, got 2"):
        worker_slice(batch, 2, 2)
    with pytest.raises(ValueError, match="num_workers must be >= 1"):
        local_batch_size(8, 0)
    assert local_batch_size(8, 4) == 2
