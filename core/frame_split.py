"""How a live stream's recorded frames are cut for fine-tuning it (numpy-free arithmetic only).

    [ train (first 60 %) | validation (next 20 %) | held out (last 20 %) ]

In time order, so that nothing is fitted or early-stopped on the future of what it is scored on:
the train part fits the normalisation and the embeddings, the validation part picks the best step,
and the held-out part, seen by neither, decides whether the result replaces the stream's calibration.
The fractions are POCO's split inside one block (Duan et al. 2025). The server checks
`minimum_frames` before it queues a fine-tune, the worker cuts with `split_frames`.
"""

from __future__ import annotations

import dataclasses

TRAIN_FRACTION = 0.6
VALIDATION_FRACTION = 0.2


@dataclasses.dataclass(frozen=True)
class FrameParts:
    """Frame ranges [start, stop) of the three parts of T recorded frames."""

    train: tuple[int, int]
    validation: tuple[int, int]
    held_out: tuple[int, int]

    def shortest(self) -> int:
        return min(stop - start for start, stop in (self.train, self.validation, self.held_out))


def split_frames(frames: int) -> FrameParts:
    train_end = int(frames * TRAIN_FRACTION)
    validation_end = int(frames * (TRAIN_FRACTION + VALIDATION_FRACTION))
    return FrameParts(train=(0, train_end), validation=(train_end, validation_end), held_out=(validation_end, frames))


def minimum_frames(context_frames: int, horizon: int) -> int:
    """The fewest frames that give each part at least one whole window of C + P frames."""
    window = context_frames + horizon
    frames = window
    while split_frames(frames).shortest() < window:
        frames += 1
    return frames
