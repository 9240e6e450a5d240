"""The bundle registry: versions of a bundle that differ only in their calibrations run in one engine."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np

from poco_rt.bundle import SESSIONS_DIR, load_bundle, rewrite_manifest
from poco_rt.server.bundles import BundleRegistry
from poco_rt.server.engine import Engine
from poco_rt.server.settings import EngineDevice
from tests.helpers import C, rewritten_bundle


def registry(initial: Path) -> BundleRegistry:
    return BundleRegistry(initial_bundle=initial, engine_threads=1, engine_device=EngineDevice.CPU, engine_int8=False)


def with_adapted_calibration(source: Path, out: Path) -> Path:
    """A copy of `source` with one more calibration, sim00.adapted: what a fine-tune round writes."""
    shutil.copytree(source, out)
    bundle = load_bundle(source)
    sim00 = bundle.session("sim00")
    adapted = dataclasses.replace(sim00, name="sim00.adapted", unit_embeddings=sim00.unit_embeddings + 0.3)
    adapted.save(out / SESSIONS_DIR / "sim00.adapted.npz")
    return rewrite_manifest(out, bundle.manifest).path


def test_a_bundle_version_with_another_calibration_shares_the_engine(served_bundle, tiny_recording, tmp_path):
    bundles = registry(served_bundle)
    original = bundles.load(served_bundle)
    version = bundles.load(with_adapted_calibration(served_bundle, tmp_path / "version"))
    assert version.id != original.id and version.engine is original.engine
    frames = tiny_recording.session("sim00").traces[:C]
    adapted = version.bundle.session("sim00.adapted")
    expected = Engine(version.bundle).forecast("sim00.adapted", frames)
    np.testing.assert_array_equal(version.engine.forecast_with(adapted, frames), expected)


def test_a_bundle_with_another_network_gets_its_own_engine(served_bundle, tmp_path):
    bundles = registry(served_bundle)
    original = bundles.load(served_bundle)
    other = bundles.load(rewritten_bundle(served_bundle, tmp_path / "other", scale_weights=1.5))
    assert other.engine is not original.engine and other.version != original.version
