"""/docs: Swagger UI for the server's OpenAPI schema, its script and style served from the package.

FastAPI's own /docs loads Swagger UI from a CDN, unpinned and without an integrity hash, into the
server's origin, where a script can send the API's requests (with the token the operator types
in); and a rig without internet gets a blank page. Here the files are a pinned copy vendored
under /static/vendor (static/vendor/README.md says which, and how to update it), and the online
validator badge, which would send the schema to validator.swagger.io, is off. ReDoc, which
would load from a CDN too, is not served.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

VENDOR = "/static/vendor"

router = APIRouter(tags=["docs"])


@router.get("/docs", include_in_schema=False)
def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} API",
        swagger_js_url=f"{VENDOR}/swagger-ui-bundle.js",
        swagger_css_url=f"{VENDOR}/swagger-ui.css",
        swagger_favicon_url=f"{VENDOR}/swagger-ui-favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},
    )
