import numpy as np
import pytest

from poco_rt.models.splits import Normalizer, Split, split_segments, window_starts


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        (800, {Split.TRAIN: [(0, 480)], Split.VALIDATION: [(480, 640)], Split.TEST: [(640, 800)]}),
        # one block, not 1000 + 137: int(1137 * 0.6) = 682, int(1137 * 0.8) = 909
        (1137, {Split.TRAIN: [(0, 682)], Split.VALIDATION: [(682, 909)], Split.TEST: [(909, 1137)]}),
        (
            2500,
            {
                Split.TRAIN: [(0, 600), (1000, 1900)],
                Split.VALIDATION: [(600, 800), (1900, 2200)],
                Split.TEST: [(800, 1000), (2200, 2500)],
            },
        ),
    ],
)
def test_split_boundaries_follow_the_reference(frames, expected):
    assert split_segments(frames) == expected


def test_windows_per_segment_are_length_minus_window_like_the_reference():
    # Flavell's 9 worms: 7 x 800 frames, one 799, one 1137 -> 3945 / 931 / 932 windows
    totals = dict.fromkeys(Split, 0)
    for frames in [800] * 7 + [799, 1137]:
        for split, segments in split_segments(frames).items():
            totals[split] += len(window_starts(segments, 64))
    assert totals == {Split.TRAIN: 3945, Split.VALIDATION: 931, Split.TEST: 932}


def test_no_window_crosses_its_segment():
    segments = split_segments(2500)[Split.VALIDATION]
    starts = window_starts(segments, 64)
    assert all(any(a <= s and s + 64 <= b for a, b in segments) for s in starts)


def test_split_rejects_an_empty_session():
    with pytest.raises(ValueError, match="num_frames must be > 0"):
        split_segments(0)


def test_normalizer_z_scores_each_unit_and_survives_flat_units():
    traces = np.stack([np.arange(10.0), np.full(10, 3.0)], axis=1)
    normalized = Normalizer.fit(traces).apply(traces)
    assert normalized[:, 0].mean() == pytest.approx(0.0, abs=1e-6)
    assert normalized[:, 0].std() == pytest.approx(1.0, abs=1e-6)
    assert np.all(normalized[:, 1] == 0.0)
