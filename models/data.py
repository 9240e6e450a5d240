"""Training data: recordings matched to a model's session layout, and POCO's batch sampler.

A step draws `batch_windows` training windows per dataset, uniformly over all windows of all its
sessions, then groups them by session so that each group is one plain batched forward pass.
Under torchrun every rank draws the same step and keeps its share of it (`share_of`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from poco_rt.models.config import ModelConfig, SessionLayout, SessionSpec
from poco_rt.models.recording import Recording
from poco_rt.models.splits import SessionWindows, Split


def layout_of(recordings: Sequence[Recording]) -> SessionLayout:
    return SessionLayout(tuple(SessionSpec(r.name, s.name, s.num_units) for r in recordings for s in r.sessions))


Draw = list[tuple[int, np.ndarray]]  # one step's windows: (session index, sorted window starts), in batch order


def share_of(draw: Draw, part: int, parts: int) -> Draw:
    """Part `part` of `parts` near-equal contiguous pieces of `draw` (counted in windows), grouped by session.

    The parts are disjoint and together the whole draw; the first `windows % parts` are one window longer.
    """
    base, extra = divmod(sum(len(starts) for _, starts in draw), parts)
    first = part * base + min(part, extra)
    stop = first + base + int(part < extra)
    shared, offset = [], 0
    for session_index, starts in draw:
        kept = starts[max(first - offset, 0) : max(stop - offset, 0)]
        if kept.size:
            shared.append((session_index, kept))
        offset += len(starts)
    return shared


@dataclasses.dataclass(frozen=True, eq=False)
class SessionBatch:
    """One session's share of a step: context (B, N, C) and target (B, N, P), normalised."""

    session_index: int
    context: torch.Tensor
    target: torch.Tensor


@dataclasses.dataclass(frozen=True, eq=False)
class TrainingSet:
    """Every session's windows, keyed by its index in the model's layout."""

    config: ModelConfig
    sessions: dict[int, SessionWindows]

    @classmethod
    def build(cls, recordings: Sequence[Recording], layout: SessionLayout, config: ModelConfig) -> TrainingSet:
        sessions: dict[int, SessionWindows] = {}
        for recording in recordings:
            for session in recording.sessions:
                try:
                    index = layout.index(recording.name, session.name)
                except KeyError:
                    raise ValueError(
                        f"session {recording.name}/{session.name} is not in this model; "
                        "fine-tune the model on it first (poco-rt finetune)"
                    ) from None
                if layout.sessions[index].num_units != session.num_units:
                    raise ValueError(
                        f"session {recording.name}/{session.name} has {session.num_units} units, "
                        f"the model was built for {layout.sessions[index].num_units}"
                    )
                sessions[index] = SessionWindows.build(
                    session, context_frames=config.context_frames, horizon=config.horizon
                )
        return cls(config, sessions)

    def _datasets(self, layout: SessionLayout) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for index in self.sessions:
            groups.setdefault(layout.sessions[index].dataset, []).append(index)
        return groups

    def sample(self, rng: np.random.Generator, batch_windows: int, layout: SessionLayout) -> list[SessionBatch]:
        """One step's batches: per dataset, `batch_windows` windows drawn uniformly with replacement."""
        return self.batches(self.draw(rng, batch_windows, layout))

    def draw(self, rng: np.random.Generator, batch_windows: int, layout: SessionLayout) -> Draw:
        """One step's windows, grouped by session in batch order (what `sample` makes batches of)."""
        draw = []
        for indices in self._datasets(layout).values():
            counts = np.array([len(self.sessions[i].starts[Split.TRAIN]) for i in indices])
            if counts.sum() == 0:
                continue
            flat = rng.integers(0, counts.sum(), size=batch_windows)
            owner = np.searchsorted(np.cumsum(counts), flat, side="right")
            for position, session_index in enumerate(indices):
                local = flat[owner == position] - (counts[:position].sum())
                if local.size:
                    draw.append((session_index, self.sessions[session_index].starts[Split.TRAIN][np.sort(local)]))
        return draw

    def batches(self, draw: Draw) -> list[SessionBatch]:
        return [self._batch(session_index, starts) for session_index, starts in draw]

    def forecast_values(self, draw: Draw) -> int:
        """How many values (windows x units x horizon) the forecasts of `draw` hold: the loss's denominator."""
        return sum(len(starts) * self.sessions[i].traces.shape[1] * self.config.horizon for i, starts in draw)

    def iterate(self, split: Split, *, max_windows: int = 256) -> Iterator[SessionBatch]:
        """Every window of a split, in order, in chunks of at most `max_windows`."""
        for session_index, windows in self.sessions.items():
            starts = windows.starts[split]
            for begin in range(0, len(starts), max_windows):
                yield self._batch(session_index, starts[begin : begin + max_windows])

    def count(self, split: Split) -> int:
        return sum(len(w.starts[split]) for w in self.sessions.values())

    def _batch(self, session_index: int, starts: np.ndarray) -> SessionBatch:
        windows = torch.from_numpy(self.sessions[session_index].windows(starts))  # (B, N, C + P)
        context_frames = self.config.context_frames
        return SessionBatch(session_index, windows[..., :context_frames], windows[..., context_frames:])
