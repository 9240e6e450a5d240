"""Schemathesis against a real server's own /openapi.json: no 5xx, every 4xx says what is wrong, replies as documented.

Every operation of the schema the running server publishes is called over HTTP with cases
generated from it: valid ones (positive) and ones that break it (negative). Session routes are
called both with generated names and with the name of a session that is open, so that the
handlers behind the 404 run too; `/v2/models/{model_name}` gets the served model's name the same
way. The job-submitting routes get negative cases only: a valid case would queue real PINning work
(minutes of CPU), so what they are checked for is that nothing invalid is ever queued
(tests/server/test_jobs.py covers valid submissions and the named reasons). Runs are derandomized
so that CI sees the same cases every time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)
from schemathesis.core.failures import Failure, FailureGroup

OPEN_SESSION = "sim00"
JOB_SUBMISSIONS = {"/v1/jobs/pinning", "/v1/jobs/pinning-sweep"}
TOKEN = "s3cret"


def says_why_when_refused(ctx: Any, response: schemathesis.Response, case: Case) -> bool | None:
    """A 4xx body names the problem: a non-empty `detail` (or, from /v2, `error`) that a person can read.

    FastAPI's validation errors count when each names the field (`loc`) and what is wrong (`msg`).
    """
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = response.json()
    except ValueError as error:
        raise Failure(operation=case.operation.label, title="4xx without a JSON body", message=response.text) from error
    message = body.get("detail", body.get("error"))  # /v2's own refusals use the protocol's `error`
    if isinstance(message, list):
        vague = [item for item in message if not item.get("loc") or not item.get("msg")]
    else:
        vague = [] if isinstance(message, str) and message.strip() else [message]
    if vague:
        raise Failure(
            operation=case.operation.label,
            title=f"{response.status_code} without a clear message",
            message=f"body {response.text[:500]!r}",
        )
    return True


CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, says_why_when_refused]


def strategies(operation: APIOperation) -> Iterator[tuple[str, Any]]:
    """(label, strategy) pairs: generated path names, then the open session's / the served model's name."""
    modes = [GenerationMode.NEGATIVE] if operation.path in JOB_SUBMISSIONS else list(GenerationMode)
    fixed = {}
    if "{name}" in operation.path:
        fixed["name"] = OPEN_SESSION
    if "{model_name}" in operation.path:
        fixed["model_name"] = "poco"
    for mode in modes:
        yield mode.value, operation.as_strategy(generation_mode=mode)
        if fixed and operation.method.upper() != "DELETE":  # closing the open session would end that coverage
            yield f"{mode.value}, {fixed}", operation.as_strategy(generation_mode=mode, path_parameters=fixed)


def fuzz_the_server(url: str, *, max_examples: int, headers: dict[str, str]) -> list[str]:
    """Run every operation's cases against the server at `url`; what failed, one line per operation and mode."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", timeout=10)
    failures = []
    with requests.Session() as http:
        for result in schema.get_all_operations():
            operation = result.ok()
            for label, strategy in strategies(operation):

                @settings(
                    max_examples=max_examples,
                    derandomize=True,
                    database=None,
                    deadline=None,
                    phases=[Phase.explicit, Phase.generate, Phase.shrink],
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=strategy)
                def call(case: Case) -> None:
                    response = case.call(base_url=url, session=http, headers=headers, timeout=30)
                    case.validate_response(response, checks=CHECKS)

                try:
                    call()
                except Unsatisfiable:
                    continue  # no negative case exists for an operation without parameters
                except (Failure, FailureGroup) as error:
                    failures.append(f"{operation.label} ({label}): {error}")
    return failures


def open_session(url: str, headers: dict[str, str]) -> None:
    requests.post(f"{url}/v1/sessions", json={"name": OPEN_SESSION}, headers=headers, timeout=10).raise_for_status()


def test_no_generated_request_gets_a_5xx_or_an_unexplained_4xx(start_server):
    server = start_server()
    open_session(server.url, {})
    failures = fuzz_the_server(server.url, max_examples=10, headers={})
    assert not failures, "\n\n".join(failures)
    assert requests.get(f"{server.url}/v1/jobs", timeout=10).json() == []  # no invalid job was queued
    assert requests.get(f"{server.url}/v1/sessions/{OPEN_SESSION}", timeout=10).status_code == 200


def test_with_a_token_sent_the_routes_behave_the_same(start_server):
    server = start_server(auth_token=TOKEN)
    headers = {"authorization": f"Bearer {TOKEN}"}
    open_session(server.url, headers)
    failures = fuzz_the_server(server.url, max_examples=3, headers=headers)
    assert not failures, "\n\n".join(failures)
    assert requests.get(f"{server.url}/v1/jobs", headers=headers, timeout=10).json() == []
