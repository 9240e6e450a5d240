"""A training run on disk: what made it, its checkpoints and its log, resumable after a crash.

    RUN/
      run.json            model and train config, session layout, data sources, status
      calibration.npz     per-session unit ids and normalisation (mean, std) the model was fit with
      checkpoint_last.pt  model, optimiser, step and RNG states: resume continues bit-for-bit
      checkpoint_best.pt  the weights with the best validation loss (what evaluate and export use)
      log.jsonl           one line per validation: step, train and validation loss, seconds

Checkpoints are written to a temporary file and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from poco_rt.models.config import ModelConfig, SessionLayout, TrainConfig
from poco_rt.models.splits import Normalizer

RUN_FILE = "run.json"
CALIBRATION_FILE = "calibration.npz"
LAST_CHECKPOINT = "checkpoint_last.pt"
BEST_CHECKPOINT = "checkpoint_best.pt"
LOG_FILE = "log.jsonl"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint (was the run trained?)")
    return torch.load(path, map_location="cpu", weights_only=False)


class RunDirectory:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def exists(self) -> bool:
        return (self.path / RUN_FILE).exists()

    def create(
        self,
        *,
        model: ModelConfig,
        train: TrainConfig,
        layout: SessionLayout,
        sources: list[str],
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        manifest = {
            "model": model.to_dict(),
            "train": train.to_dict(),
            "layout": layout.to_list(),
            "sources": sources,
            **(extra or {}),
        }
        atomic_write_bytes(self.path / RUN_FILE, json.dumps(manifest, indent=2).encode())

    def manifest(self) -> dict[str, Any]:
        if not self.exists:
            raise FileNotFoundError(f"{self.path}: not a run directory (no {RUN_FILE})")
        return json.loads((self.path / RUN_FILE).read_text())

    def update_manifest(self, **fields: Any) -> None:
        manifest = self.manifest() | fields
        atomic_write_bytes(self.path / RUN_FILE, json.dumps(manifest, indent=2).encode())

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.manifest()["model"])

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.manifest()["train"])

    @property
    def layout(self) -> SessionLayout:
        return SessionLayout.from_list(self.manifest()["layout"])

    def save_calibration(self, calibration: dict[int, tuple[tuple[str, ...], Normalizer]]) -> None:
        arrays: dict[str, np.ndarray] = {}
        for index, (unit_ids, normalizer) in calibration.items():
            arrays[f"{index}/unit_ids"] = np.array(unit_ids)
            arrays[f"{index}/mean"] = normalizer.mean
            arrays[f"{index}/std"] = normalizer.std
        tmp = self.path / (CALIBRATION_FILE + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, self.path / CALIBRATION_FILE)

    def calibration(self) -> dict[int, tuple[tuple[str, ...], Normalizer]]:
        with np.load(self.path / CALIBRATION_FILE) as npz:
            indices = sorted({int(k.split("/")[0]) for k in npz.files})
            return {
                i: (tuple(npz[f"{i}/unit_ids"].tolist()), Normalizer(npz[f"{i}/mean"], npz[f"{i}/std"]))
                for i in indices
            }

    def append_log(self, record: dict[str, Any]) -> None:
        with (self.path / LOG_FILE).open("a") as f:
            f.write(json.dumps(record) + "\n")

    def log(self) -> list[dict[str, Any]]:
        path = self.path / LOG_FILE
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def truncate_log(self, after_step: int) -> None:
        """Drop log lines a crash wrote after the checkpoint a resume starts from."""
        kept = [r for r in self.log() if r["step"] <= after_step]
        atomic_write_bytes(self.path / LOG_FILE, "".join(json.dumps(r) + "\n" for r in kept).encode())
