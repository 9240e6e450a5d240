"""How a live stream's recorded frames are cut for fine-tuning it (numpy-free arithmetic only).

    [ train (first 60 %) | validation (next 20 %) | held out (last 20 %) ]

In time order, so that nothing is fitted or early-stopped on the future of what it is scored on:
the train part fits the normalisation and the embeddings, the validation part picks the best step,
and the held-out part, seen by neither, decides whether the result replaces the stream's calibration.
The fractions are POCO's split inside one block (Duan et al. 2025).

A part owns the windows whose forecast targets (the last P frames of a window of C + P) lie in it;
their context may reach back into the parts before, as a live forecast's context does (a rolling
origin: Tashman 2000, "Out-of-sample tests of forecasting accuracy"). Training windows lie wholly
in the train part. So a held-out part of H frames is scored on H - P + 1 forecasts, not on the
(H - C - P + 1) windows that would fit inside it alone, which for a short recording is none.

The server checks `minimum_frames` before it queues a fine-tune, and an automatic round waits for
`frames_to_decide`; the worker cuts with `split_frames` and takes each part's windows with
`FrameParts.window_starts`.
"""

from __future__ import annotations

import dataclasses
import functools

TRAIN_FRACTION = 0.6
VALIDATION_FRACTION = 0.2
# Blocks of P held-out forecasts the swap rule's t-test needs (models/adapt.py; 2 leave it one degree of freedom).
MIN_GAIN_BLOCKS = 3


@dataclasses.dataclass(frozen=True)
class FrameParts:
    """Frame ranges [start, stop) of the three parts of T recorded frames."""

    train: tuple[int, int]
    validation: tuple[int, int]
    held_out: tuple[int, int]

    def window_starts(self, part: tuple[int, int], context_frames: int, horizon: int) -> range:
        """Starts of the windows whose targets lie in `part` (stride 1); those of the train part lie wholly in it."""
        start, stop = part
        first = start if part == self.train else max(0, start - context_frames)
        return range(first, stop - context_frames - horizon + 1)

    def window_counts(self, context_frames: int, horizon: int) -> tuple[int, int, int]:
        """Windows of the train, validation and held-out parts."""
        return tuple(
            len(self.window_starts(part, context_frames, horizon))
            for part in (self.train, self.validation, self.held_out)
        )


def split_frames(frames: int) -> FrameParts:
    train_end = int(frames * TRAIN_FRACTION)
    validation_end = int(frames * (TRAIN_FRACTION + VALIDATION_FRACTION))
    return FrameParts(train=(0, train_end), validation=(train_end, validation_end), held_out=(validation_end, frames))


@functools.cache  # a search over frame counts (about a millisecond), asked on every poll of a waiting stream
def minimum_frames(context_frames: int, horizon: int) -> int:
    """The fewest frames that give each part at least one window: its targets inside the part."""
    frames = context_frames + horizon
    while min(split_frames(frames).window_counts(context_frames, horizon)) < 1:
        frames += 1
    return frames


@functools.cache
def frames_to_decide(context_frames: int, horizon: int) -> int:
    """The fewest frames whose held-out part gives MIN_GAIN_BLOCKS blocks of P forecasts: a round on fewer
    cannot show a gain beyond noise, so whatever it finds is kept, not used (models/adapt.py)."""
    frames = minimum_frames(context_frames, horizon)
    while split_frames(frames).window_counts(context_frames, horizon)[2] < MIN_GAIN_BLOCKS * horizon:
        frames += 1
    return frames
