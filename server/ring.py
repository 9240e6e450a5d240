"""A session's context: the last C frames, normalised, in one preallocated (C, N) float32 array.

Legend: C context frames, N units. Frames are written in place at a moving position, so taking a
frame costs N values written and nothing allocated; `context_into` lays the C frames out oldest
first as the (N, C) input the network wants, into the caller's preallocated array.
"""

from __future__ import annotations

import numpy as np

from poco_rt.wire import all_finite


class ContextRing:
    def __init__(self, *, context_frames: int, num_units: int) -> None:
        if context_frames < 1 or num_units < 1:
            raise ValueError(
                f"context_frames={context_frames} and num_units={num_units} must both be >= 1; "
                "they come from the bundle and the session's calibration"
            )
        self.frames = np.zeros((context_frames, num_units), dtype=np.float32)  # (C, N), row = one frame
        self._staged = np.empty(num_units, dtype=np.float32)  # the next frame, normalised, until pushed
        self._next = 0  # the row the next frame goes to; once full, also the oldest row
        self.filled = 0  # rows holding real frames, up to C

    @property
    def context_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def full(self) -> bool:
        return self.filled == self.context_frames

    def stage(self, raw: np.ndarray, mean: np.ndarray, std: np.ndarray) -> bool:
        """Normalise one raw (N,) frame, (raw - mean) / std as the model was trained, for `push_staged`.

        False if a value is not finite once normalised: a frame finite as sent can still overflow
        float32 here (3e38 over a std below 1), and a context holding inf makes every forecast NaN
        for C frames. The context is untouched until `push_staged`, so such a frame can be refused.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            np.subtract(raw, mean, out=self._staged)
            np.divide(self._staged, std, out=self._staged)
        return all_finite(self._staged)

    def first_overflowing_unit(self) -> int:
        """The first unit of the staged frame that is not finite (after `stage` returned False)."""
        return int(np.flatnonzero(~np.isfinite(self._staged))[0])

    def push_staged(self) -> None:
        """The staged frame into the next row."""
        self.frames[self._next] = self._staged
        self._advance()

    def hold_last(self, count: int) -> None:
        """Fill `count` missing frames with the last frame (count <= C; a longer gap resets instead)."""
        if self.filled == 0:
            return
        last = self.frames[self._next - 1]  # row -1 is the last row: the wrap-around is numpy's
        for _ in range(min(count, self.context_frames)):
            self.frames[self._next] = last  # the C-th copy lands on `last` itself, unchanged
            self._advance()

    def reset(self) -> None:
        """Forget the context (after a long gap): the session warms up again from its next frame."""
        self._next = 0
        self.filled = 0

    def context_into(self, out: np.ndarray) -> np.ndarray:
        """Write the C frames, oldest first, transposed into `out` (N, C); returns `out`."""
        oldest = self._next if self.full else 0
        newer = self.context_frames - oldest
        np.copyto(out[:, :newer], self.frames[oldest:].T)  # (C - oldest, N) -> (N, C - oldest)
        np.copyto(out[:, newer:], self.frames[:oldest].T)
        return out

    def recent(self, frames: int, units: np.ndarray | None = None) -> np.ndarray:
        """A copy of the last `frames` frames (at most the filled ones), oldest first: (k, N), or (k, n) for `units`.

        For readers outside the ingest thread (the dashboard's context view): it allocates, so it is
        run per request, never per frame.
        """
        count = min(frames, self.filled)
        rows = (self._next - count + np.arange(count)) % self.context_frames
        return self.frames[rows] if units is None else self.frames[np.ix_(rows, units)]

    def renormalise(
        self, *, old_mean: np.ndarray, old_std: np.ndarray, new_mean: np.ndarray, new_std: np.ndarray
    ) -> None:
        """Re-express the stored frames under a new calibration (a hot swap); allocates, but only at a swap."""
        raw = self.frames * old_std + old_mean
        np.subtract(raw, new_mean, out=self.frames)
        np.divide(self.frames, new_std, out=self.frames)

    def _advance(self) -> None:
        self._next = (self._next + 1) % self.context_frames
        self.filled = min(self.filled + 1, self.context_frames)
