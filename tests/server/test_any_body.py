"""No request body, of any bytes and any content type, gets a 5xx from any route; every refusal says why.

The routes are enumerated from the running app itself (each HTTP route and method it serves, the
docs and the dashboard's included), their path parameters filled with names that exist (an open
session, the served model) so that the handlers behind the 404 run. Bodies are arbitrary bytes,
JSON of arbitrary shape, or a binary-extension request; content types are the common ones, none,
and arbitrary text. tests/server/test_schema.py generates requests from the OpenAPI schema; this
sends what no schema describes. Bounded in examples so that it runs in seconds, derandomized so
that CI sees the same cases every time.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

TOKEN = "s3cret"
JOB_SUBMISSIONS = {"/v1/jobs/pinning", "/v1/jobs/pinning-sweep"}  # a valid body queues minutes of real PINning work
PATH_VALUES = {"name": "sim00", "model_name": "poco", "model_version": "0", "bundle_id": "0", "job_id": "0"}
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=latin-1",
    "application/octet-stream",
    "application/x-npy",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "text/plain",
]
ANY_BODY = settings(
    max_examples=300, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=256),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.tuples(st.binary(max_size=64), st.binary(max_size=64)).map(b"".join),
)
# Visible ASCII and inner spaces: what HTTP lets a header value be (clients refuse leading or trailing spaces).
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.strip)
content_types = st.one_of(st.none(), st.sampled_from(CONTENT_TYPES), header_text)
header_lengths = st.one_of(st.none(), st.integers(0, 300).map(str), header_text)


def app_routes(server) -> list[tuple[str, str]]:
    """(method, path) for every HTTP route the app serves, path parameters filled in: those of its OpenAPI
    schema, its own (the schema and the docs) and the dashboard's (left out of the schema)."""
    from poco_rt.server.api import dashboard

    schema = server.app.openapi()["paths"]
    calls = {(method.upper(), path) for path, operations in schema.items() for method in operations}
    for route in [*server.app.routes, *dashboard.router.routes]:
        calls.update((method, route.path) for method in getattr(route, "methods", None) or () if method != "HEAD")
    return sorted(
        (method, re.sub(r"\{(\w+)\}", lambda match: PATH_VALUES[match.group(1)], path)) for method, path in calls
    )


def could_queue_a_job(path: str, body: bytes) -> bool:
    """A JSON object sent to a job route (`{}` is a valid job: every parameter has a default)."""
    if path not in JOB_SUBMISSIONS:
        return False
    try:
        return isinstance(json.loads(body), dict)
    except ValueError:  # not JSON, or not text
        return False


def fuzz_every_route(server, *, token: str | None) -> None:
    routes = app_routes(server)
    assert ("POST", "/v2/models/poco/infer") in routes and ("POST", "/v1/sessions") in routes

    with httpx.Client(base_url=server.url, timeout=30) as http:

        @ANY_BODY
        @given(
            route=st.sampled_from(routes),
            body=bodies,
            content_type=content_types,
            header_length=header_lengths,
            send_token=st.booleans(),
        )
        def one_request(route, body, content_type, header_length, send_token) -> None:
            method, path = route
            assume(not could_queue_a_job(path, body))
            headers = {}
            if content_type is not None:
                headers["content-type"] = content_type
            if header_length is not None:
                headers["inference-header-content-length"] = header_length
            if token is not None and send_token:
                headers["authorization"] = f"Bearer {token}"
            reply = http.request(method, path, content=body, headers=headers)
            assert reply.status_code < 500, f"{method} {path} -> {reply.status_code}: {reply.text[:300]}"
            if reply.status_code >= 400:
                refusal = reply.json()
                message = refusal.get("error") if path.startswith("/v2") else refusal.get("detail")
                assert message, f"{method} {path} -> {reply.status_code} without a reason: {reply.text[:300]}"

        one_request()
        assert http.get("/readyz").status_code == 200
        auth = {"authorization": f"Bearer {token}"} if token else {}
        assert http.get("/v1/jobs", headers=auth).json() == []  # nothing was queued


@pytest.mark.parametrize("token", [None, TOKEN], ids=["no token", "token"])
def test_no_body_of_any_content_type_gets_a_5xx_on_any_route(start_server, token):
    server = start_server(auth_token=token, open_sessions={"sim00": "sim00"})
    fuzz_every_route(server, token=token)


def test_a_body_that_is_not_json_is_refused_with_how_it_was_read(start_server):
    """FastAPI's own handler answered 500 here: it could not write the undecodable bytes it echoes."""
    server = start_server()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        reply = http.post("/v1/sessions", content=b"\xff\xfe", headers={"content-type": "application/octet-stream"})
        assert reply.status_code == 422
        assert reply.json()["detail"][0]["msg"] == (
            "Input should be a valid dictionary or object to extract fields from (the body was not read as JSON: "
            "its Content-Type is 'application/octet-stream'; send application/json)"
        )
        reply = http.post("/v2/models/poco/infer", content=b"\xff\xfe", headers={"content-type": "text/plain"})
        assert reply.json() == {"error": "the body is not UTF-8 (byte 0 cannot be decoded); send JSON as UTF-8 text"}
