"""Training data: recordings matched to a model's session layout, and POCO's batch sampler.

A step draws `batch_windows` training windows per dataset, uniformly over all windows of all its
sessions, then groups them by session so that each group is one plain batched forward pass.
Under torchrun every rank draws the same step and keeps its share of it (`share_of`).

Streamed windows. POCO normalises each session by the mean and std of its whole recording, and so
does a bundle's calibration. A new animal on a live server has no such thing: its stream is
normalised over its own recent frames (poco_rt.normalisation.stream_estimate_span), which on a
drifting calcium recording is a different scale and offset from the whole recording's. With
`streamed_share` > 0, that share of each step's windows is drawn "streamed": its context is
normalised exactly as a stream that started at the session's first frame would have it, the
forecast is mapped back out of that normalisation, and the loss is taken in the session's own
units as for every other window. The network so learns to forecast from both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch

from poco_rt.models.config import ModelConfig, SessionLayout, SessionSpec
from poco_rt.models.recording import Recording
from poco_rt.models.splits import SessionWindows, Split


def layout_of(recordings: Sequence[Recording]) -> SessionLayout:
    return SessionLayout(tuple(SessionSpec(r.name, s.name, s.num_units) for r in recordings for s in r.sessions))


class WindowGroup(NamedTuple):
    """One session's windows in a step: sorted starts, and which of them are streamed (module docstring)."""

    session_index: int
    starts: np.ndarray  # (W,) int
    streamed: np.ndarray  # (W,) bool


Draw = list[WindowGroup]  # one step's windows, grouped by session, in batch order


def share_of(draw: Draw, part: int, parts: int) -> Draw:
    """Part `part` of `parts` near-equal contiguous pieces of `draw` (counted in windows), grouped by session.

    The parts are disjoint and together the whole draw; the first `windows % parts` are one window longer.
    """
    base, extra = divmod(sum(len(group.starts) for group in draw), parts)
    first = part * base + min(part, extra)
    stop = first + base + int(part < extra)
    shared, offset = [], 0
    for session_index, starts, streamed in draw:
        kept = slice(max(first - offset, 0), max(stop - offset, 0))
        if starts[kept].size:
            shared.append(WindowGroup(session_index, starts[kept], streamed[kept]))
        offset += len(starts)
    return shared


@dataclasses.dataclass(frozen=True, eq=False)
class SessionBatch:
    """One session's share of a step: context (B, N, C) and target (B, N, P), in the session's normalisation.

    Streamed windows carry the stream's estimate in the session's units, `shift` and `scale` (B, N, 1):
    the network sees (context - shift) / scale and its forecast is mapped back (`forecast`). Plain
    windows have shift 0 and scale 1; a batch of plain windows only, None."""

    session_index: int
    context: torch.Tensor
    target: torch.Tensor
    shift: torch.Tensor | None = None
    scale: torch.Tensor | None = None

    def forecast(self, model: torch.nn.Module, device: torch.device) -> torch.Tensor:
        """The model's (B, N, P) forecast of this batch on `device`, in the session's normalisation."""
        context = self.context.to(device)
        if self.shift is None or self.scale is None:
            return model(context, self.session_index)
        shift, scale = self.shift.to(device), self.scale.to(device)
        return model((context - shift) / scale, self.session_index) * scale + shift


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

    def sample(
        self, rng: np.random.Generator, batch_windows: int, layout: SessionLayout, *, streamed_share: float = 0.0
    ) -> list[SessionBatch]:
        """One step's batches: per dataset, `batch_windows` windows drawn uniformly with replacement."""
        return self.batches(self.draw(rng, batch_windows, layout, streamed_share=streamed_share))

    def draw(
        self, rng: np.random.Generator, batch_windows: int, layout: SessionLayout, *, streamed_share: float = 0.0
    ) -> Draw:
        """One step's windows, grouped by session in batch order (what `sample` makes batches of); each is
        streamed with probability `streamed_share` (the generator is not touched for that at 0)."""
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
                    starts = self.sessions[session_index].starts[Split.TRAIN][np.sort(local)]
                    streamed = (
                        (rng.random(len(starts)) < streamed_share) if streamed_share else np.zeros(len(starts), bool)
                    )
                    draw.append(WindowGroup(session_index, starts, streamed))
        return draw

    def batches(self, draw: Draw) -> list[SessionBatch]:
        return [self._batch(*group) for group in draw]

    def forecast_values(self, draw: Draw) -> int:
        """How many values (windows x units x horizon) the forecasts of `draw` hold: the loss's denominator."""
        return sum(len(group.starts) * self.sessions[group.session_index].traces.shape[1] for group in draw) * (
            self.config.horizon
        )

    def iterate(self, split: Split, *, max_windows: int = 256, streamed: bool = False) -> Iterator[SessionBatch]:
        """Every window of a split, in order, in chunks of at most `max_windows`; all plain, or all streamed."""
        for session_index, windows in self.sessions.items():
            starts = windows.starts[split]
            for begin in range(0, len(starts), max_windows):
                chunk = starts[begin : begin + max_windows]
                yield self._batch(session_index, chunk, np.full(len(chunk), streamed))

    def count(self, split: Split) -> int:
        return sum(len(w.starts[split]) for w in self.sessions.values())

    def _batch(self, session_index: int, starts: np.ndarray, streamed: np.ndarray) -> SessionBatch:
        session = self.sessions[session_index]
        windows = torch.from_numpy(session.windows(starts))  # (B, N, C + P)
        context_frames = self.config.context_frames
        context, target = windows[..., :context_frames], windows[..., context_frames:]
        if not streamed.any():
            return SessionBatch(session_index, context, target)
        shift = np.zeros((len(starts), session.traces.shape[1]), dtype=np.float32)
        scale = np.ones_like(shift)
        frames_seen = starts[streamed] + context_frames  # the window's last context frame is the stream's newest
        shift[streamed], scale[streamed] = session.stream_normalisation(frames_seen, context_frames=context_frames)
        return SessionBatch(
            session_index, context, target, torch.from_numpy(shift)[..., None], torch.from_numpy(scale)[..., None]
        )
