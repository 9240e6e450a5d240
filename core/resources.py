"""Files that ship inside the package: the default bundle and the demo recording."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def default_bundle_path() -> Path:
    """A small POCO trained on simulator data (`make default-bundle` rebuilds it)."""
    return Path(str(resources.files("poco_rt") / "default_bundle"))


def demo_recording_path() -> Path:
    """Simulated frames the default bundle never saw, from the same animals: what the demo replays."""
    return Path(str(resources.files("poco_rt") / "demo" / "replay.npz"))
