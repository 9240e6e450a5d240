"""The REST clients' one core: each server route as a `Call` (request to build, reply to parse).

ForecastClient and AsyncForecastClient differ only in how they send a Call and wait for its reply
(`httpx.Client` or `httpx.AsyncClient`); every route, body, header and parser lives here once.
An error status becomes RequestRefused with the server's own message (`{"detail": ...}`).
Legend: N units, C context frames, P horizon.
"""

from __future__ import annotations

import dataclasses
import io
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import httpx
import numpy as np

from poco_rt.errors import RequestRefused
from poco_rt.wire import ForecastIntervals

T = TypeVar("T")
JsonObject = dict[str, Any]
DEFAULT_SERVER_URL = "http://127.0.0.1:8700"  # `poco-rt serve`'s default HTTP address
NPY_MEDIA_TYPE = "application/x-npy"
WILDCARD_HOSTS = ("0.0.0.0", "*", "::", "[::]")  # a bind address, not one a client can dial


@dataclasses.dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    headers: Mapping[str, str] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, eq=False)  # arrays have no single truth value
class LatestForecast:
    frame_index: int  # the frame it was made after; it covers frame_index + 1 .. frame_index + P
    forecast: np.ndarray  # (N, P) float32, raw units
    model_version: str
    calibration_hash: str
    acquisition_time_ns: int
    sent_ns: int
    intervals: ForecastIntervals | None = None  # the levels asked for; none while the session warms up

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper), each (N, P) float32 raw units; ValueError for a level this forecast lacks."""
        if self.intervals is None or not self.intervals.levels:
            raise ValueError(f"forecast {self.frame_index} carries no intervals (ask for them; warm-up has none)")
        return self.intervals.bounds(level)


@dataclasses.dataclass(frozen=True, slots=True)
class StreamEndpoints:
    frames: str  # where FramePublisher connects (the server's PULL or SUB socket)
    forecasts: str  # where ZmqForecastSubscriber connects (the server's PUB socket)


def checked(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        raise RequestRefused(
            method=response.request.method,
            path=response.request.url.path,
            status_code=response.status_code,
            detail=_detail(response),
        )
    return response


def _json(response: httpx.Response) -> Any:
    return checked(response).json()


def _nothing(response: httpx.Response) -> None:
    checked(response)


def _quoted(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def server_info() -> Call[JsonObject]:
    return Call("GET", "/v1/server", _json)


def endpoints(base_url: httpx.URL) -> Call[StreamEndpoints]:
    """The ZeroMQ endpoints, with a wildcard bind host (0.0.0.0) replaced by the host this client reaches."""

    def parse(response: httpx.Response) -> StreamEndpoints:
        info = _json(response)
        return StreamEndpoints(
            frames=_dialable(info["frame_endpoint"], base_url.host),
            forecasts=_dialable(info["forecast_endpoint"], base_url.host),
        )

    return Call("GET", "/v1/server", parse)


def ready() -> Call[bool]:
    def parse(response: httpx.Response) -> bool:
        if response.status_code == httpx.codes.SERVICE_UNAVAILABLE:
            return False
        return bool(_json(response)["ready"])

    return Call("GET", "/readyz", parse)


def sessions() -> Call[list[JsonObject]]:
    return Call("GET", "/v1/sessions", _json)


def session(name: str) -> Call[JsonObject]:
    return Call("GET", f"/v1/sessions/{_quoted(name)}", _json)


def open_session(name: str, calibration: str | None) -> Call[JsonObject]:
    return Call("POST", "/v1/sessions", _json, json={"name": name, "calibration": calibration})


def open_new_animal(
    name: str,
    units: int | None,
    unit_ids: list[str] | None,
    adapt: Mapping[str, Any] | None,
    fresh: bool,
) -> Call[JsonObject]:
    body = {"name": name, "units": units, "unit_ids": unit_ids, "adapt": adapt, "fresh": fresh}
    return Call("POST", "/v1/sessions", _json, json=body)


def finetune_session(name: str, options: Mapping[str, Any]) -> Call[JsonObject]:
    return Call("POST", f"/v1/sessions/{_quoted(name)}/finetune", _json, json=dict(options))


def close_session(name: str) -> Call[None]:
    return Call("DELETE", f"/v1/sessions/{_quoted(name)}", _nothing)


def swap_session_model(name: str, calibration: str | None, bundle: str | None) -> Call[JsonObject]:
    body = {"calibration": calibration, "bundle": bundle}
    return Call("PUT", f"/v1/sessions/{_quoted(name)}/model", _json, json=body)


def latest_forecast(name: str, intervals: Sequence[float] = ()) -> Call[LatestForecast]:
    if intervals:
        return _latest_forecast_with_intervals(name, tuple(float(level) for level in intervals))

    def parse(response: httpx.Response) -> LatestForecast:
        headers = checked(response).headers
        return LatestForecast(
            frame_index=int(headers["x-poco-frame-index"]),
            forecast=np.load(io.BytesIO(response.content), allow_pickle=False),
            model_version=headers["x-poco-model-version"],
            calibration_hash=headers["x-poco-calibration-hash"],
            acquisition_time_ns=int(headers["x-poco-acquisition-time-ns"]),
            sent_ns=int(headers["x-poco-sent-ns"]),
        )

    return Call("GET", f"/v1/sessions/{_quoted(name)}/forecast", parse, headers={"accept": NPY_MEDIA_TYPE})


def _latest_forecast_with_intervals(name: str, levels: tuple[float, ...]) -> Call[LatestForecast]:
    """JSON, the one format with bounds; float32 values survive it exactly."""

    def parse(response: httpx.Response) -> LatestForecast:
        body = _json(response)
        values = np.asarray(body["values"], dtype=np.float32)
        carried = sorted(body["intervals"], key=lambda interval: interval["level"])
        empty = np.empty((0, *values.shape), dtype=np.float32)
        intervals = ForecastIntervals(
            levels=tuple(interval["level"] for interval in carried),
            lower=np.asarray([interval["lower"] for interval in carried], dtype=np.float32) if carried else empty,
            upper=np.asarray([interval["upper"] for interval in carried], dtype=np.float32) if carried else empty,
        )
        return LatestForecast(
            frame_index=body["frame_index"],
            forecast=values,
            model_version=body["model_version"],
            calibration_hash=body["calibration_hash"],
            acquisition_time_ns=body["acquisition_time_ns"],
            sent_ns=body["sent_ns"],
            intervals=intervals,
        )

    query = urllib.parse.urlencode({"intervals": ",".join(f"{level:g}" for level in levels)}, safe=",")
    return Call("GET", f"/v1/sessions/{_quoted(name)}/forecast?{query}", parse)


def accuracy(name: str) -> Call[JsonObject]:
    return Call("GET", f"/v1/sessions/{_quoted(name)}/accuracy", _json)


def crossing_probability(name: str, unit: int, value: float, direction: str) -> Call[float]:
    if direction not in ("above", "below"):
        raise ValueError(f"direction={direction!r}; give 'above' or 'below'")

    def parse(response: httpx.Response) -> float:
        return float(_json(response)["probability"])

    query = urllib.parse.urlencode({"unit": unit, "value": repr(float(value)), "direction": direction})
    return Call("GET", f"/v1/sessions/{_quoted(name)}/crossing?{query}", parse)


def stateless_forecast(calibration: str, context: np.ndarray) -> Call[np.ndarray]:
    """context (C, N) raw, oldest first -> (N, P) float32. JSON carries float32 exactly both ways."""
    context = np.asarray(context, dtype=np.float32)
    if context.ndim != 2:
        raise ValueError(f"context has shape {context.shape}; give (C, N): C frames of N units, oldest first")

    def parse(response: httpx.Response) -> np.ndarray:
        return np.asarray(_json(response)["values"], dtype=np.float32)

    return Call("POST", "/v1/forecast", parse, json={"calibration": calibration, "frames": context.tolist()})


def bundles() -> Call[list[JsonObject]]:
    return Call("GET", "/v1/bundles", _json)


def load_bundle(path: str) -> Call[JsonObject]:
    return Call("POST", "/v1/bundles", _json, json={"path": path})


def activate_bundle(bundle_id: str) -> Call[JsonObject]:
    return Call("POST", f"/v1/bundles/{_quoted(bundle_id)}/activate", _json)


def submit_pinning_job(params: Mapping[str, Any]) -> Call[JsonObject]:
    return Call("POST", "/v1/jobs/pinning", _json, json=dict(params))


def list_jobs() -> Call[list[JsonObject]]:
    return Call("GET", "/v1/jobs", _json)


def job(job_id: str) -> Call[JsonObject]:
    return Call("GET", f"/v1/jobs/{_quoted(job_id)}", _json)


def job_result(job_id: str) -> Call[JsonObject]:
    return Call("GET", f"/v1/jobs/{_quoted(job_id)}/result", _json)


def job_result_npz(job_id: str) -> Call[bytes]:
    return Call("GET", f"/v1/jobs/{_quoted(job_id)}/result.npz", lambda response: checked(response).content)


def retry_job(job_id: str) -> Call[JsonObject]:
    return Call("POST", f"/v1/jobs/{_quoted(job_id)}/retry", _json)


def cancel_job(job_id: str) -> Call[JsonObject]:
    return Call("DELETE", f"/v1/jobs/{_quoted(job_id)}", _json)


def _detail(response: httpx.Response) -> str:
    """The server's `detail`: a message, or FastAPI's list of validation errors as `field: message`."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):  # not JSON, or JSON that is not an object
        return response.text or response.reason_phrase
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', ()))}: {item.get('msg', item)}" for item in detail
        )
    return str(detail)


def _dialable(endpoint: str, host: str) -> str:
    scheme, _, address = endpoint.partition("://")
    bind_host, _, port = address.rpartition(":")
    if bind_host in WILDCARD_HOSTS:
        return f"{scheme}://{host}:{port}"
    return endpoint
