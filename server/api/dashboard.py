"""The live dashboard: the page at `/` and its files under `/static/`, served from the package, no token needed.

The files hold nothing private and nothing from elsewhere (uPlot is vendored, so the page works on
a rig without internet). Everything the page shows it fetches from this server's own REST and
WebSocket routes, sending the bearer token the operator types in when one of them answers 401.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(str(resources.files("poco_rt.server") / "static"))

router = APIRouter(tags=["dashboard"])
router.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


@router.get("/", include_in_schema=False)
def dashboard() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})
