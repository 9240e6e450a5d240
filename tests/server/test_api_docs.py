"""/docs: Swagger UI from the package's own files, no CDN (test_dashboard_browser.py renders it in Chromium)."""

from __future__ import annotations

import re
from importlib import resources

import httpx


def test_the_api_docs_page_loads_only_files_the_server_serves_itself(start_server):
    server = start_server()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        page = http.get("/docs")
        assert page.status_code == 200
        sources = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page.text)
        assert sorted(sources) == [
            "/static/vendor/swagger-ui-bundle.js",
            "/static/vendor/swagger-ui-favicon-32x32.png",
            "/static/vendor/swagger-ui.css",
        ]
        assert "http://" not in page.text and "https://" not in page.text
        assert "validatorUrl" in page.text and '"validatorUrl": null' in page.text
        vendor = resources.files("poco_rt.server") / "static" / "vendor"
        for source in sources:
            assert http.get(source).content == (vendor / source.rsplit("/", 1)[1]).read_bytes(), source
        assert http.get("/redoc").status_code == 404
