"""Minibatches of a training step (pipeline.datasets.batches): seeded, complete,
scaled, and Keras' augmentation."""

import numpy as np

from pipeline.datasets import batches


# ------------------------------------------------------------ batches
def test_batches_seeded_complete_and_scaled():
    images = np.arange(10 * 4 * 4 * 1, dtype=np.uint8).reshape(10, 4, 4, 1)
    labels = np.arange(10, dtype=np.uint8)
    first = list(batches.batches(images, labels, 3, np.random.default_rng(0)))
    again = list(batches.batches(images, labels, 3, np.random.default_rng(0)))
    other = list(batches.batches(images, labels, 3, np.random.default_rng(1)))
    assert [len(y) for _, y in first] == [3, 3, 3, 1]
    assert sorted(np.concatenate([y for _, y in first]).tolist()) == list(range(10))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, other))
    x, y = first[0]
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    np.testing.assert_array_equal(x * 255, images[y].astype(np.float32))
    assert [
        len(y) for _, y in batches.batches(images, labels, 3, np.random.default_rng(0), drop_last=True)
    ] == [3, 3, 3]


def test_augmentation_shifts_flips_and_is_seeded():
    rng = np.random.default_rng(0)
    images = rng.random((64, 8, 10, 3), dtype=np.float32)
    np.testing.assert_array_equal(batches.shift_and_flip(images, rng, shift=0.0, flip=False), images)
    a = batches.shift_and_flip(images, np.random.default_rng(5))
    b = batches.shift_and_flip(images, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert a.shape == images.shape and a.dtype == np.float32
    assert a.min() >= images.min() and a.max() <= images.max()  # interpolation and nearest fill
    flipped = batches.shift_and_flip(images, np.random.default_rng(5), shift=0.0, flip=True)
    is_flipped = [np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images)]
    assert 10 < sum(is_flipped) < 54 and all(
        f or np.array_equal(o, i) for f, o, i in zip(is_flipped, flipped, images)
    )
    # On a ramp whose value is its column, a shift by dx pixels (bilinear) reads
    # column j - dx: the ramp moved by dx, the edge column repeated past the border.
    ramp = np.arange(10, dtype=np.float32)[None, None, :, None].repeat(8, 1).repeat(4, 0)
    shifted = batches.shift_and_flip(ramp, np.random.default_rng(0), shift=0.1, flip=False)
    draws = np.random.default_rng(0)
    draws.uniform(-0.1, 0.1, 4)  # the rows' shifts (the ramp's rows are all alike)
    dx = draws.uniform(-0.1, 0.1, 4) * 10
    expected = np.clip(np.arange(10)[None, :] - dx[:, None], 0, 9)
    assert np.abs(dx).min() > 0.05  # shifts that move something
    np.testing.assert_allclose(shifted[:, 3, :, 0], expected, rtol=0, atol=1e-5)
