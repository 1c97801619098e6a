"""Dropout's masks drawn on every core: the same bits, and the generator left
in the same state, as one `rng.random` call."""

import numpy as np
import pytest

from pipeline.kernels import draws, parallel


def _serial_mask(rng, shape, rate):
    return (rng.random(shape, dtype=np.float32) >= rate) * np.float32(1 / (1 - rate))


def test_the_split_draw_is_taken_on_this_numpy():
    # If NumPy ever draws float32s otherwise, every mask falls back to
    # rng.random (still right, but on one core): this says so.
    assert draws._splittable(np.random.default_rng(0))


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("rate", [0.25, 0.5, 0.1, 0.3, 1e-9, 0.999999, 1 - 2**-26])
def test_mask_and_generator_state_equal_one_draw(workers, rate):
    parallel.set_workers(workers)  # the threads restored after (conftest)
    # drawn before: 0 and 2 leave no half-word kept, 1 and 5 do; the sizes
    # are even and odd, at the split's threshold and above it
    for drawn_before in (0, 1, 2, 5):
        for shape in ((draws._SPLIT_FROM,), (draws._SPLIT_FROM + 1,), (32, 15, 15, 32), (7, 9999)):
            serial, split = np.random.default_rng(7), np.random.default_rng(7)
            serial.random(drawn_before, dtype=np.float32)
            split.random(drawn_before, dtype=np.float32)
            expected = _serial_mask(serial, shape, rate)
            mask = draws.dropout_mask(split, shape, rate)
            assert mask.shape == shape and mask.dtype == np.float32
            assert mask.tobytes() == expected.tobytes(), (drawn_before, shape)
            assert split.bit_generator.state == serial.bit_generator.state, (drawn_before, shape)
            # and the draws after it go on alike, from the kept half-word if any
            assert split.random(3, dtype=np.float32).tobytes() == serial.random(3, dtype=np.float32).tobytes()


def test_keeps_the_expected_share():
    mask = draws.dropout_mask(np.random.default_rng(3), (128, 12, 12, 64), 0.25)
    assert set(np.unique(mask)) == {0.0, np.float32(4 / 3)}
    assert abs((mask == 0).mean() - 0.25) < 0.002


def test_threshold_is_the_first_float32_draw_kept():
    grid = np.arange(2**24 + 1).astype(np.float32) * np.float32(2**-24)  # every value a draw can take, and 1
    for rate in (0.25, 0.5, 1 / 3, 0.1, 1e-9, 2**-24, 0.999999, 1 - 2**-25, 1 - 2**-26, 0.7 + 1e-12):
        assert draws._threshold(rate) == int(np.argmax(grid >= rate)), rate


def test_other_generators_and_small_draws_use_rng_random():
    for rng_pair in [
        (np.random.Generator(np.random.Philox(4)), np.random.Generator(np.random.Philox(4))),
        (np.random.default_rng(4), np.random.default_rng(4)),
    ]:
        for shape in ((50, 50), (draws._SPLIT_FROM - 1,)):
            serial, other = rng_pair
            assert (
                draws.dropout_mask(other, shape, 0.5).tobytes() == _serial_mask(serial, shape, 0.5).tobytes()
            )
            assert other.random(5).tobytes() == serial.random(5).tobytes()  # the states alike


def test_a_split_that_disagrees_with_numpy_is_never_used(monkeypatch):
    real = draws._split_mask
    # a stand-in for a NumPy that draws float32s otherwise: every mask inverted
    monkeypatch.setattr(draws, "_split_mask", lambda *args, **kwargs: 1 - real(*args, **kwargs))
    draws._split_matches_numpy.cache_clear()
    try:
        assert not draws._split_matches_numpy()
        shape = (draws._SPLIT_FROM * 2,)
        got = draws.dropout_mask(np.random.default_rng(5), shape, 0.5)
        assert got.tobytes() == _serial_mask(np.random.default_rng(5), shape, 0.5).tobytes()
    finally:
        monkeypatch.undo()
        draws._split_matches_numpy.cache_clear()
