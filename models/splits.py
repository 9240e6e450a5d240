"""POCO's data split, its windows and per-unit normalisation, exactly as the reference code does.

Each session is cut into `max(1, T // 1000)` consecutive blocks, the last running to T. Inside a
block of length L, frames [0, int(0.6 L)) train, [int(0.6 L), int(0.8 L)) validate and
[int(0.8 L), L) test. Windows of C + P frames slide with stride 1 inside each segment; the
reference counts L_seg − (C + P) of them (it never uses the last possible one), and so do we, so
that scores are comparable with POCO's.

Legend: T frames, N units, C context frames, P horizon, W windows.
"""

from __future__ import annotations

import dataclasses
import enum
import functools

import numpy as np

from poco_rt.models.recording import Session
from poco_rt.normalisation import floored_std, stream_estimate_span

BLOCK_FRAMES = 1000
TRAIN_END_FRACTION = 0.6
VALIDATION_END_FRACTION = 0.8


class Split(enum.StrEnum):
    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


def split_segments(num_frames: int, *, block_frames: int = BLOCK_FRAMES) -> dict[Split, list[tuple[int, int]]]:
    """[start, stop) frame ranges of each split, one per block."""
    if num_frames <= 0:
        raise ValueError(f"num_frames must be > 0, got {num_frames}")
    num_blocks = max(1, num_frames // block_frames)
    segments: dict[Split, list[tuple[int, int]]] = {split: [] for split in Split}
    for block in range(num_blocks):
        start = block * block_frames
        stop = num_frames if block == num_blocks - 1 else start + block_frames
        length = stop - start
        train_end = start + int(length * TRAIN_END_FRACTION)
        validation_end = start + int(length * VALIDATION_END_FRACTION)
        segments[Split.TRAIN].append((start, train_end))
        segments[Split.VALIDATION].append((train_end, validation_end))
        segments[Split.TEST].append((validation_end, stop))
    return segments


def window_starts(segments: list[tuple[int, int]], window_frames: int) -> np.ndarray:
    """First frame of every window inside the segments: L − window_frames per segment."""
    starts = [np.arange(a, b - window_frames, dtype=np.int64) for a, b in segments if b - a > window_frames]
    return np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """Per-unit z-scoring. POCO's reference takes the statistics over the whole session (test
    part included), and evaluation here does the same to stay comparable; a live rig must take
    them from its calibration recording, which is what a bundle stores."""

    mean: np.ndarray  # (N,) float32
    std: np.ndarray  # (N,) float32, floored so that flat units do not explode

    @classmethod
    def fit(cls, traces: np.ndarray, *, min_std: float = 1e-6) -> Normalizer:
        mean = traces.mean(axis=0, dtype=np.float64)
        std = traces.std(axis=0, dtype=np.float64)
        return cls(mean=mean.astype(np.float32), std=np.maximum(std, min_std).astype(np.float32))

    def apply(self, traces: np.ndarray) -> np.ndarray:
        return ((traces - self.mean) / self.std).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class SessionWindows:
    """A session's normalised traces and the window starts of each split."""

    session: Session
    normalizer: Normalizer
    traces: np.ndarray  # (T, N) normalised float32
    starts: dict[Split, np.ndarray]
    window_frames: int

    @classmethod
    def build(cls, session: Session, *, context_frames: int, horizon: int) -> SessionWindows:
        normalizer = Normalizer.fit(session.traces)
        window_frames = context_frames + horizon
        segments = split_segments(session.num_frames)
        starts = {split: window_starts(segments[split], window_frames) for split in Split}
        return cls(session, normalizer, normalizer.apply(session.traces), starts, window_frames)

    def windows(self, starts: np.ndarray) -> np.ndarray:
        """(W,) starts -> (W, N, C + P) windows, each unit's series along the last axis."""
        index = starts[:, None] + np.arange(self.window_frames)  # (W, C + P)
        return np.ascontiguousarray(self.traces[index].transpose(0, 2, 1))

    def stream_normalisation(self, frames_seen: np.ndarray, *, context_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and floored std, both (W, N) float32 in this session's normalised units, that a new animal's
        stream of this session would normalise its forecast at each of `frames_seen` frames with
        (poco_rt.normalisation.stream_estimate_span; the stream started at the session's first frame).
        z-scoring is affine, so normalising these traces with them is normalising the raw ones with the
        stream's raw estimate; only the std floor, relative to the median unit's, is taken in these units."""
        sums, squares = self._cumulative_sums
        spans = np.array([stream_estimate_span(int(seen), context_frames) for seen in frames_seen]).reshape(-1, 2)
        start, stop = spans[:, 0], spans[:, 1]
        count = (stop - start)[:, None].astype(np.float64)
        mean = (sums[stop] - sums[start]) / count
        variance = np.maximum((squares[stop] - squares[start]) / count - mean**2, 0.0)
        return mean.astype(np.float32), floored_std(np.sqrt(variance))

    @functools.cached_property
    def _cumulative_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """(T + 1, N) running sums of the traces and of their squares (float64), from a row of zeros."""
        traces = self.traces.astype(np.float64)
        zeros = np.zeros((1, traces.shape[1]))
        return np.concatenate([zeros, traces.cumsum(axis=0)]), np.concatenate([zeros, (traces**2).cumsum(axis=0)])
