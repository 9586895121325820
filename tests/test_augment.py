"""shared_data.augment (CIFAR crops, flips, cutout), the augment hook's keywords, prefetch."""

import hashlib
import threading
import time

import numpy as np
import pytest

from shared_data.augment import (
    alternating_flip,
    alternating_flips,
    black_pixel,
    cifar_augment,
    cutout,
    random_crop,
    random_flip,
)
from shared_data.batches import iterate_batches, prefetch, random_shift
from shared_data.binarize import binarize_batch


def cifar_arrays(n=20, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, 32, 32, 3)).astype(np.float32)
    return {"image": images, "label": np.arange(n)}


def reference_crop(images, dy, dx, padding, mode, fill):
    """Per-image loop: pad, then slice the crop at (dy, dx)."""
    out = np.empty_like(images)
    p = padding
    for i, image in enumerate(images):
        if mode == "reflect":
            padded = np.pad(image, ((p, p), (p, p), (0, 0)), mode="reflect")
        else:
            padded = np.empty((32 + 2 * p, 32 + 2 * p, 3), images.dtype)
            padded[...] = fill
            padded[p : p + 32, p : p + 32] = image
        out[i] = padded[dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
    return out


@pytest.mark.parametrize("mode", ["reflect", "constant"])
def test_random_crop_matches_per_image_loop(mode):
    images = cifar_arrays(16)["image"]
    fill = black_pixel([0.49, 0.48, 0.45], [0.25, 0.24, 0.26])
    out = random_crop(images, np.random.default_rng(3), 4, mode=mode, fill=fill)
    draws = np.random.default_rng(3)
    dy, dx = draws.integers(0, 9, size=16), draws.integers(0, 9, size=16)
    assert out.dtype == np.float32 and out.shape == images.shape
    np.testing.assert_array_equal(out, reference_crop(images, dy, dx, 4, mode, fill))
    assert len(set(zip(dy.tolist(), dx.tolist(), strict=True))) > 1


def test_constant_crop_pads_with_fill_and_reflect_mirrors():
    images = np.ones((64, 32, 32, 3), np.float32)
    fill = np.array([-1.0, -2.0, -3.0], np.float32)
    out = random_crop(images, np.random.default_rng(0), 4, mode="constant", fill=fill)
    assert set(np.unique(out[..., 1])) == {-2.0, 1.0}
    zero = random_crop(images, np.random.default_rng(0), 4, mode="constant")
    assert set(np.unique(zero)) == {0.0, 1.0}
    assert np.all(random_crop(images, np.random.default_rng(0), 4) == 1.0)


def test_random_flip_mirrors_about_half():
    images = cifar_arrays(200)["image"]
    out = random_flip(images, np.random.default_rng(1))
    flipped = np.array([np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images, strict=True)])
    kept = np.array([np.array_equal(o, i) for o, i in zip(out, images, strict=True)])
    assert np.all(flipped ^ kept) and 60 < flipped.sum() < 140


def test_alternating_flip_alternates_and_ignores_the_batch():
    index = np.arange(1000)
    first = alternating_flips(5, 0, index)
    assert 400 < first.sum() < 600
    for epoch in range(1, 5):
        assert np.array_equal(alternating_flips(5, epoch, index), first ^ (epoch % 2 == 1))
    assert not np.array_equal(alternating_flips(6, 0, index), first)
    # Same example, same epoch: same decision whatever batch (size, position) holds it.
    picked = np.array([999, 3, 17, 3])
    assert np.array_equal(alternating_flips(5, 3, picked), alternating_flips(5, 3, index)[picked])
    images = cifar_arrays(4)["image"]
    out = alternating_flip(images, 5, 2, picked)
    for o, i, f in zip(out, images, alternating_flips(5, 2, picked), strict=True):
        np.testing.assert_array_equal(o, i[:, ::-1] if f else i)


def test_alternating_flip_through_iterate_batches_is_batch_size_independent():
    arrays = cifar_arrays(24)
    augment = cifar_augment(padding=0, flip="alternating", seed=7)
    for epoch in (0, 1, 2):
        decided = {}
        for bs in (3, 8, 24):
            for batch in iterate_batches(arrays, bs, seed=1, epoch=epoch, augment=augment):
                for image, label in zip(batch["image"], batch["label"], strict=True):
                    flip = np.array_equal(image, arrays["image"][label][:, ::-1])
                    assert decided.setdefault(int(label), flip) == flip
        assert len(decided) == 24


@pytest.mark.parametrize("size", [1, 8, 16])
def test_cutout_zeroes_a_clipped_square(size):
    images = np.ones((300, 32, 32, 3), np.float32)
    out = cutout(images, np.random.default_rng(2), size)
    zeroed = out[..., 0] == 0
    assert np.all((out == 0) == zeroed[..., None])
    counts = zeroed.sum(axis=(1, 2))
    assert counts.max() == size * size and counts.min() >= ((size + 1) // 2) ** 2
    for mask in zeroed[:20]:  # each zeroed region is one axis-aligned rectangle
        ys, xs = np.nonzero(mask)
        assert mask.sum() == (np.ptp(ys) + 1) * (np.ptp(xs) + 1)
    assert np.all(images == 1)  # the input is left alone
    draws = np.random.default_rng(2)
    top, left = draws.integers(0, 32, 300) - size // 2, draws.integers(0, 32, 300) - size // 2
    clip = (np.clip(top + size, 0, 32) - np.clip(top, 0, 32)) * (
        np.clip(left + size, 0, 32) - np.clip(left, 0, 32)
    )
    np.testing.assert_array_equal(counts, clip)


def test_cifar_augment_is_deterministic_per_seed_epoch_batch():
    arrays = cifar_arrays(20)
    augment = cifar_augment(mode="reflect", flip="alternating", cutout=8, seed=3)
    assert "crop4_reflect" in augment.__name__ and "cutout8" in augment.__name__

    def epoch(e):
        return [b["image"] for b in iterate_batches(arrays, 5, seed=1, epoch=e, augment=augment)]

    a, b, c = epoch(0), epoch(0), epoch(1)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    resumed = list(iterate_batches(arrays, 5, seed=1, epoch=0, start_batch=2, augment=augment))
    for x, y in zip(a[2:], resumed, strict=True):
        np.testing.assert_array_equal(x, y["image"])
    assert a[0].dtype == np.float32


def test_cifar_augment_crops_differ_across_epochs():
    images = np.zeros((8, 32, 32, 3), np.float32)
    images[:, 16, 16] = 1.0  # one marked pixel shows each crop's offset
    augment = cifar_augment(padding=4, flip="none")
    index = np.arange(8)

    def where(epoch):
        rng = np.random.default_rng([0, epoch, 0, 1])
        out = augment({"image": images}, rng, epoch=epoch, index=index)["image"]
        return [tuple(np.argwhere(o[..., 0] == 1)[0]) for o in out]

    assert where(0) == where(0) and where(0) != where(1)


def test_hook_gets_epoch_and_padded_index():
    seen = []

    def record(batch, rng, *, epoch, index):
        seen.append((epoch, index.dtype, index.tolist(), batch["label"].tolist()))
        return batch

    arrays = {"image": np.zeros((7, 2, 2, 1), np.float32), "label": np.arange(7) * 10}
    list(iterate_batches(arrays, 4, seed=2, epoch=3, remainder="pad", augment=record))
    for epoch, dtype, index, labels in seen:
        assert epoch == 3 and dtype == np.int64
        assert [10 * i for i in index] == labels
    assert seen[-1][2][3] == seen[-1][2][0]  # the pad row repeats a real row's index


def _digest(augment):
    rng = np.random.default_rng(123)
    images = rng.integers(0, 256, size=(10, 28, 28, 1)).astype(np.float32) / 255
    arrays = {"image": images, "label": np.arange(10)}
    h = hashlib.sha256()
    for batch in iterate_batches(arrays, 4, seed=7, epoch=2, remainder="pad", augment=augment):
        h.update(np.ascontiguousarray(batch["image"]).tobytes())
    return h.hexdigest()


def test_mnist_and_vae_augmentations_are_unchanged():
    # Digests computed with the code before the hook took epoch= and index=.
    assert _digest(random_shift) == (
        "dedae07e9980bc40d74ebf9d51b5cb5115db64e2a5af335a5e0ae8d663f8f2fe"
    )
    assert _digest(binarize_batch) == (
        "6033ad3d65e020628b65bb1c4fedb195f1cee3d8a76f5ce1e0e15feb4b95c643"
    )


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "shared_data.prefetch"]


def _wait_no_prefetch_threads():
    deadline = time.monotonic() + 5
    while _prefetch_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    return _prefetch_threads()


def test_prefetch_keeps_order():
    assert list(prefetch(iter(range(100)), depth=2)) == list(range(100))
    assert list(prefetch([], depth=1)) == []
    assert _wait_no_prefetch_threads() == []
    with pytest.raises(ValueError, match="depth"):
        prefetch(range(3), depth=0)


def test_prefetch_reraises_producer_errors():
    def failing():
        yield 1
        yield 2
        raise KeyError("boom")

    got = []
    with pytest.raises(KeyError, match="boom"):
        for item in prefetch(failing()):
            got.append(item)
    assert got == [1, 2]
    assert _wait_no_prefetch_threads() == []


@pytest.mark.parametrize("how", ["break", "close", "drop"])
def test_prefetch_stops_its_thread_early(how):
    produced, closed = [], []

    def endless():
        try:
            for i in range(10**9):
                produced.append(i)
                yield i
        finally:
            closed.append(True)

    gen = prefetch(endless(), depth=2)
    if how == "break":
        for item in gen:
            if item == 3:
                break
        del gen
    else:
        assert next(gen) == 0
        if how == "close":
            gen.close()
        else:
            del gen
    assert _wait_no_prefetch_threads() == []
    assert closed == [True] and len(produced) < 10
