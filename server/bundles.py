"""The model bundles the server has loaded, each with its engine, and which one new sessions use.

A loaded bundle is known by its id, a short hash of every file hash in its bundle.json: two
bundles with one network (the same `version`, which tags forecasts) but different calibrations,
such as a bundle before and after a fine-tuned session was added, are two bundles here. They share
one engine: a fine-tune round's new bundle version then loads without building an onnxruntime
session, whose construction would otherwise run beside serving on every swap, and the memory of
a stream adapted many times does not grow by a network per round.

Loading (reading, hash-checking, building the onnxruntime session) happens on the caller's
thread, never on the ingest thread, so that loading a new bundle costs streaming nothing; which
bundle each open session uses is switched separately, between two frames (poco_rt.server.runtime).
The registry is the engine's lifecycle owner: `start` loads the configured bundle, `stop` drops
every engine, and `started` says whether the server can forecast.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections.abc import Collection
from pathlib import Path

from poco_rt.bundle import NETWORK_FILES, Bundle, load_bundle
from poco_rt.errors import NotRunning, UnknownBundle
from poco_rt.server.engine import Engine
from poco_rt.server.settings import EngineDevice

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BundleStatus:
    """What REST shows of a loaded bundle: its identity and shapes, without its engine."""

    id: str  # short hash of every file in the bundle: what the routes name it by
    version: str  # short hash of the network: what forecasts are tagged with
    path: Path
    active: bool  # the bundle new sessions use
    sessions: tuple[str, ...]  # the calibrations (bundle sessions) it holds, sorted
    context_frames: int
    horizon: int
    embedding_dim: int
    loaded_at_ns: int


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedBundle:
    bundle: Bundle
    engine: Engine
    loaded_at_ns: int  # time.time_ns() when it finished loading

    @property
    def version(self) -> str:
        return self.engine.version

    @property
    def id(self) -> str:
        return bundle_id(self.bundle)

    def status(self, *, active_id: str) -> BundleStatus:
        bundle = self.bundle
        return BundleStatus(
            id=self.id,
            version=self.version,
            path=bundle.path,
            active=self.id == active_id,
            sessions=tuple(sorted(bundle.sessions)),
            context_frames=bundle.context_frames,
            horizon=bundle.horizon,
            embedding_dim=bundle.embedding_dim,
            loaded_at_ns=self.loaded_at_ns,
        )


def bundle_id(bundle: Bundle) -> str:
    hashes = json.dumps(bundle.manifest["hashes"], sort_keys=True).encode()
    return hashlib.sha256(hashes).hexdigest()[:12]


def network_key(bundle: Bundle) -> tuple[tuple[str, str], ...]:
    """The hashes of every network file a bundle holds: bundles equal here run in one engine."""
    hashes = bundle.manifest["hashes"]
    return tuple((name, hashes[name]) for name in NETWORK_FILES if name in hashes)


class BundleRegistry:
    def __init__(
        self,
        *,
        initial_bundle: Path,
        engine_threads: int,
        engine_device: EngineDevice,
        engine_int8: bool = False,
        engine_helper_cores: Collection[int] = (),
    ) -> None:
        self._initial_bundle = initial_bundle
        self._engine_threads = engine_threads
        self._engine_helper_cores = tuple(engine_helper_cores)
        self._engine_device = engine_device
        self._engine_int8 = engine_int8
        self._lock = threading.Lock()  # guards the three fields below against concurrent REST loads
        self._loaded: dict[str, LoadedBundle] = {}
        self._engines: dict[tuple[tuple[str, str], ...], Engine] = {}
        self._active_id: str | None = None

    @property
    def started(self) -> bool:
        return self._active_id is not None

    def start(self) -> None:
        loaded = self.load(self._initial_bundle)
        with self._lock:
            self._active_id = loaded.id
        logger.info("serving bundle %s (network %s) from %s", loaded.id, loaded.version, loaded.bundle.path)

    def stop(self, *, timeout_s: float) -> None:
        """Drop every engine. Nothing here can block, so the timeout is only the common signature's."""
        del timeout_s
        with self._lock:
            self._loaded.clear()
            self._engines.clear()
            self._active_id = None

    def load(self, path: Path) -> LoadedBundle:
        """Load (or return the already loaded) bundle at `path`; raises BundleError for a bad bundle."""
        bundle = load_bundle(path)
        identity, network = bundle_id(bundle), network_key(bundle)
        with self._lock:
            known = self._loaded.get(identity)
            engine = self._engines.get(network)
        if known is not None:
            return known
        if engine is None:
            engine = Engine(
                bundle,
                threads=self._engine_threads,
                device=self._engine_device,
                int8=self._engine_int8,
                helper_cores=self._engine_helper_cores,
            )
        with self._lock:
            engine = self._engines.setdefault(network, engine)
            loaded = self._loaded.setdefault(identity, LoadedBundle(bundle, engine, time.time_ns()))
        logger.info(
            "loaded bundle %s (network %s) from %s: %d sessions",
            loaded.id, loaded.version, bundle.path, len(bundle.sessions),
        )  # fmt: skip
        return loaded

    def get(self, bundle_id: str) -> LoadedBundle:
        with self._lock:
            loaded = self._loaded.get(bundle_id)
            known = sorted(self._loaded)
        if loaded is None:
            raise UnknownBundle(f"no loaded bundle has id {bundle_id!r}; loaded: {known}")
        return loaded

    @property
    def active(self) -> LoadedBundle:
        with self._lock:
            active_id = self._active_id
        if active_id is None:
            raise NotRunning("no bundle is loaded: the server is not started")
        return self.get(active_id)

    def set_active(self, bundle_id: str) -> None:
        with self._lock:
            if bundle_id not in self._loaded:
                raise UnknownBundle(f"no loaded bundle has id {bundle_id!r}; loaded: {sorted(self._loaded)}")
            self._active_id = bundle_id

    def all(self) -> list[LoadedBundle]:
        with self._lock:
            return sorted(self._loaded.values(), key=lambda loaded: loaded.loaded_at_ns)
