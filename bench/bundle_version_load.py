"""How long the server takes to load a fine-tune round's bundle version: the original plus one calibration.

    python bench/bundle_version_load.py --bundle DIR [--versions 10]

A round's result is a new bundle version, loaded by the adaptation thread beside serving before the
swap. The registry loads the original, then `--versions` copies of it, each with one more
calibration (its first one's embeddings moved), and times each load (reading and hashing the
files, and whatever engine work the registry does for a version). Printed: median and max, ms.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from poco_rt.bundle import SESSIONS_DIR, load_bundle, rewrite_manifest
from poco_rt.server.bundles import BundleRegistry
from poco_rt.server.settings import EngineDevice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--versions", type=int, default=10)
    args = parser.parse_args()
    bundles = BundleRegistry(
        initial_bundle=args.bundle, engine_threads=1, engine_device=EngineDevice.CPU, engine_int8=False
    )
    bundles.load(args.bundle)
    original = load_bundle(args.bundle)
    first = next(iter(original.sessions.values()))
    times_ms = []
    with tempfile.TemporaryDirectory() as work:
        for number in range(args.versions):
            version = Path(work) / f"version{number}"
            shutil.copytree(args.bundle, version)
            moved = first.unit_embeddings + 0.01 * (number + 1)
            adapted = dataclasses.replace(first, name=f"adapted{number}", unit_embeddings=moved)
            adapted.save(version / SESSIONS_DIR / f"{adapted.name}.npz")
            rewrite_manifest(version, original.manifest)
            started = time.perf_counter()
            bundles.load(version)
            times_ms.append((time.perf_counter() - started) * 1e3)
    print(f"{args.bundle}: a version loads in {np.median(times_ms):.1f} ms (median), {max(times_ms):.1f} ms (max)")


if __name__ == "__main__":
    main()
