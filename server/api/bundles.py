"""/v1/bundles: the loaded model bundles; load one from disk, make one active for every session."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, status
from pydantic import BaseModel, Field, field_validator

from poco_rt.server.api.deps import Authorized, RuntimeDep
from poco_rt.server.api.schemas import REFUSED
from poco_rt.server.api.strict_json import StrictJSONRoute
from poco_rt.server.bundles import BundleStatus

router = APIRouter(
    prefix="/v1/bundles", tags=["bundles"], dependencies=Authorized, route_class=StrictJSONRoute, responses=REFUSED
)


MAX_PATH_BYTES, MAX_NAME_BYTES = 4096, 255  # Linux's PATH_MAX and NAME_MAX: beyond them opening fails (ENAMETOOLONG)


class BundleLoad(BaseModel):
    path: str = Field(description="bundle directory on the server's disk")

    @field_validator("path")
    @classmethod
    def _short_enough_to_open(cls, path: str) -> str:
        """Checked here, naming the limit: the OS's ENAMETOOLONG from opening it would otherwise be a 500."""
        if len(path.encode()) > MAX_PATH_BYTES:
            raise ValueError(f"path is {len(path.encode())} bytes long; the limit is {MAX_PATH_BYTES}")
        longest = max(Path(path).parts or ("",), key=lambda part: len(part.encode()))
        if len(longest.encode()) > MAX_NAME_BYTES:
            raise ValueError(f"path has a {len(longest.encode())}-byte component; the limit is {MAX_NAME_BYTES}")
        return path


class BundleInfo(BaseModel):
    id: str = Field(description="short hash of every file in the bundle: what the routes name it by")
    version: str = Field(description="short hash of the network: what forecasts are tagged with")
    path: str
    active: bool
    sessions: list[str] = Field(description="calibrations (bundle sessions) it holds")
    context_frames: int
    horizon: int
    embedding_dim: int
    loaded_at_ns: int

    @classmethod
    def of(cls, loaded: BundleStatus) -> BundleInfo:
        return cls(
            id=loaded.id,
            version=loaded.version,
            path=str(loaded.path),
            active=loaded.active,
            sessions=list(loaded.sessions),
            context_frames=loaded.context_frames,
            horizon=loaded.horizon,
            embedding_dim=loaded.embedding_dim,
            loaded_at_ns=loaded.loaded_at_ns,
        )


@router.get("")
def list_bundles(runtime: RuntimeDep) -> list[BundleInfo]:
    return [BundleInfo.of(loaded) for loaded in runtime.bundle_statuses()]


@router.post("", status_code=status.HTTP_201_CREATED)
def load_bundle(body: BundleLoad, runtime: RuntimeDep) -> BundleInfo:
    """Load and verify a bundle (hashes, shapes) and build its engine; sessions keep theirs until activated."""
    return BundleInfo.of(runtime.load_bundle(Path(body.path)))


@router.post("/{bundle_id}/activate")
def activate_bundle(bundle_id: str, runtime: RuntimeDep) -> BundleInfo:
    """Hot swap: every open session moves to this bundle between two frames; no frame is dropped."""
    return BundleInfo.of(runtime.activate_bundle(bundle_id))
