"""A new animal's normalisation over its most recent frames (poco_rt.normalisation.WindowedNormalisation)."""

import numpy as np
import pytest

from poco_rt.normalisation import WindowedNormalisation, normalisation_of


def test_the_estimate_is_of_every_frame_until_the_window_is_full_then_of_the_last_window_frames():
    frames = np.random.default_rng(0).normal(loc=3.0, size=(23, 5)).astype(np.float32) * np.arange(1, 6)
    estimate = WindowedNormalisation(5, window=8)
    with pytest.raises(ValueError, match="no frame"):
        estimate.estimate()
    for count, frame in enumerate(frames, start=1):
        estimate.add(frame)
        expected = normalisation_of(frames[max(0, count - 8) : count])
        for got, want in zip(estimate.estimate(), expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6)
    assert estimate.count == len(frames)


def test_a_window_holds_at_least_one_frame():
    with pytest.raises(ValueError, match="at least one frame"):
        WindowedNormalisation(3, window=0)
