"""The fine-tune swap rule: a higher held-out score is not enough, the gain must hold over blocks of forecasts."""

from __future__ import annotations

import numpy as np
import pytest

from poco_rt.frame_split import MIN_GAIN_BLOCKS, frames_to_decide, minimum_frames, split_frames
from poco_rt.metric import score_from_errors
from poco_rt.models.adapt import AdaptResult, block_gains


def result(candidate_score: float, baseline_score: float, gains: tuple[float, ...]) -> AdaptResult:
    return AdaptResult(
        calibration=None,  # type: ignore[arg-type]  # the rule reads only the scores and the gains
        candidate_score=candidate_score,
        baseline_score=baseline_score,
        gain_blocks=gains,
        best_step=10,
        steps=20,
        validation_scores=[],
        parts=split_frames(400),
    )


def test_block_gains_are_each_blocks_score_difference_and_drop_a_short_tail():
    copy = np.full(10, 4.0)
    baseline = np.full(10, 2.0)  # score 0.5 in every window
    candidate = np.array([1.0] * 4 + [3.0] * 4 + [0.0] * 2)  # 0.75, then 0.25, then a 2-window tail
    assert block_gains(candidate, baseline, copy, block=4) == pytest.approx((0.25, -0.25))
    assert score_from_errors(float(candidate.sum()), float(copy.sum())) == pytest.approx(1 - 16 / 40)


def test_a_steady_gain_over_enough_blocks_swaps():
    assert result(0.30, 0.25, (0.04, 0.05, 0.06, 0.05)).improved


def test_a_higher_score_from_one_lucky_block_does_not_swap():
    lucky = result(0.30, 0.25, (0.25, -0.02, -0.03, 0.00))  # the mean is above 0, driven by one block
    assert lucky.candidate_score > lucky.baseline_score
    assert lucky.gain_p_value > 0.05 and not lucky.improved


def test_too_few_blocks_never_swap_however_large_the_gain():
    few = result(0.60, 0.20, (0.4,) * (MIN_GAIN_BLOCKS - 1))
    assert few.gain_p_value == 1.0 and not few.improved


def test_a_lower_score_never_swaps():
    assert not result(0.20, 0.25, (0.01, 0.01, 0.01, 0.01)).improved


@pytest.mark.parametrize(("context_frames", "horizon"), [(48, 16), (16, 4), (8, 8)])
def test_frames_to_decide_is_the_fewest_whose_held_out_part_has_enough_blocks(context_frames, horizon):
    frames = frames_to_decide(context_frames, horizon)
    held_out_windows = split_frames(frames).window_counts(context_frames, horizon)[2]
    assert held_out_windows // horizon >= MIN_GAIN_BLOCKS
    assert split_frames(frames - 1).window_counts(context_frames, horizon)[2] // horizon < MIN_GAIN_BLOCKS
    assert frames >= minimum_frames(context_frames, horizon)
