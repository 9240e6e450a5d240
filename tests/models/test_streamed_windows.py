"""Streamed training windows: normalised as a new animal's live stream is, the loss in the session's units."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from poco_rt.models.baselines import build_model
from poco_rt.models.config import TrainConfig
from poco_rt.models.data import TrainingSet, WindowGroup, layout_of
from poco_rt.models.run_directory import RunDirectory
from poco_rt.models.splits import Split
from poco_rt.normalisation import normalisation_of, stream_estimate_span
from tests.helpers import TINY_MODEL, TINY_TRAIN, C, train_tiny


@pytest.fixture(scope="module")
def data(tiny_recording) -> TrainingSet:
    return TrainingSet.build([tiny_recording], layout_of([tiny_recording]), TINY_MODEL)


def test_the_stream_estimate_of_a_window_is_that_of_the_frames_its_span_names(data: TrainingSet):
    session = data.sessions[0]
    frames_seen = np.array([C, C + 1, 2 * C, 2 * C + 1, 5 * C + 7, len(session.traces)])
    mean, std = session.stream_normalisation(frames_seen, context_frames=C)
    for row, seen in enumerate(frames_seen):
        want_mean, want_std = normalisation_of(session.traces[slice(*stream_estimate_span(int(seen), C))])
        np.testing.assert_allclose(mean[row], want_mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(std[row], want_std, rtol=1e-4)


def test_a_streamed_windows_forecast_is_the_served_streams_in_the_sessions_units(tiny_recording, data: TrainingSet):
    """A streamed window's forecast is the one a live new animal's stream makes from the raw frames (its own
    estimate, mapped back to raw), z-scored by the session's normalisation: what training compares with the
    target. A plain window in the same batch is forecast in the session's normalisation, as before."""
    torch.manual_seed(0)
    model = build_model(TINY_MODEL, layout_of([tiny_recording])).eval()
    session, raw = data.sessions[0], tiny_recording.sessions[0].traces.astype(np.float64)
    starts = session.starts[Split.TRAIN][[0, 40, 200]]
    (batch,) = data.batches([WindowGroup(0, starts, np.array([True, False, True]))])
    embeddings = model.session_unit_embeddings(0)

    def forecast(context: np.ndarray) -> torch.Tensor:  # (C, N) -> (N, P)
        return model.forecast(torch.from_numpy(np.ascontiguousarray(context.T, dtype=np.float32)[None]), embeddings)[0]

    with torch.no_grad():
        got = batch.forecast(model, torch.device("cpu")).numpy()
        for row in (0, 2):
            start, seen = int(starts[row]), int(starts[row]) + C
            mean, std = normalisation_of(raw[slice(*stream_estimate_span(seen, C))])
            served = forecast((raw[start:seen] - mean) / std).numpy() * std[:, None] + mean[:, None]
            np.testing.assert_allclose(got[row], session.normalizer.apply(served.T).T, rtol=1e-3, atol=1e-4)
        plain = forecast(session.traces[starts[1] : starts[1] + C]).numpy()
        np.testing.assert_allclose(got[1], plain, rtol=1e-5, atol=1e-6)


def test_training_with_streamed_windows_keeps_its_share_in_the_run_and_validates_on_both(
    tiny_recording, tiny_run: Path, tmp_path: Path
):
    train_tiny(tiny_recording, tmp_path / "streamed", train_config=dataclasses.replace(TINY_TRAIN, streamed_share=0.5))
    run = RunDirectory(tmp_path / "streamed")
    assert run.train_config.streamed_share == 0.5
    streamed = [record["validation_loss"] for record in run.log()]
    plain = [record["validation_loss"] for record in RunDirectory(tiny_run).log()]
    assert len(streamed) == len(plain) and all(np.isfinite(streamed)) and streamed != plain


def test_a_share_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="streamed_share"):
        TrainConfig(streamed_share=1.5)
