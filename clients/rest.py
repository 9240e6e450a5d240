"""ForecastClient and AsyncForecastClient: the server's REST API from Python, sync or async (httpx).

    with ForecastClient("http://127.0.0.1:8700", token=token) as client:
        client.open_session("rig1", calibration="sim00")
        latest = client.latest_forecast("rig1")        # .forecast (N, P) float32, .frame_index, ...
        values = client.forecast("sim00", context)      # stateless: (C, N) in, (N, P) out

Both clients send the same `Call`s (poco_rt.clients.rest_calls) and differ only in I/O. Timeouts
are finite (`timeout_s`, 10 s); an error status raises RequestRefused with the status and the
server's message; a server that cannot be reached raises httpx's own ConnectError/TimeoutException.
A GET that finds its kept-alive connection closed by the server as it was reused (no response:
httpx's RemoteProtocolError or ReadError) is sent once more on a new one: a GET changes nothing,
and a controller polling the latest forecast should not fail on that race. Other methods raise.
The jobs methods speak the server's /v1/jobs API (PINning training in the server's workers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import httpx
import numpy as np

from poco_rt.clients import rest_calls as calls
from poco_rt.clients.rest_calls import DEFAULT_SERVER_URL, Call, JsonObject, LatestForecast, StreamEndpoints

T = TypeVar("T")
CONNECTION_LOST = (httpx.RemoteProtocolError, httpx.ReadError)  # closed (FIN or RST) before any response came


def _client_options(base_url: str, token: str | None, timeout_s: float) -> dict[str, Any]:
    if timeout_s <= 0:
        raise ValueError(f"timeout_s={timeout_s}; give a positive number of seconds")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return {"base_url": base_url, "headers": headers, "timeout": timeout_s}


def _adapt_options(adapt: bool | Mapping[str, Any]) -> dict[str, Any] | None:
    """True: the server's AutoAdapt defaults; False: no automatic rounds; a mapping: those options."""
    if isinstance(adapt, bool):
        return {} if adapt else None
    return dict(adapt)


class ForecastClient:
    def __init__(
        self, base_url: str = DEFAULT_SERVER_URL, *, token: str | None = None, timeout_s: float = 10.0
    ) -> None:
        self._http = httpx.Client(**_client_options(base_url, token, timeout_s))

    def _send(self, call: Call[T]) -> T:
        try:
            response = self._http.request(call.method, call.path, json=call.json, headers=call.headers)
        except CONNECTION_LOST:
            if call.method != "GET":
                raise
            response = self._http.request(call.method, call.path, json=call.json, headers=call.headers)
        return call.parse(response)

    def server_info(self) -> JsonObject:
        return self._send(calls.server_info())

    def endpoints(self) -> StreamEndpoints:
        """Where to connect FramePublisher and ZmqForecastSubscriber (from /v1/server)."""
        return self._send(calls.endpoints(self._http.base_url))

    def ready(self) -> bool:
        """/readyz: bundle loaded, recorder and ingest running."""
        return self._send(calls.ready())

    def sessions(self) -> list[JsonObject]:
        return self._send(calls.sessions())

    def session(self, name: str) -> JsonObject:
        return self._send(calls.session(name))

    def open_session(self, name: str, calibration: str | None = None) -> JsonObject:
        """Open stream `name`, forecast with bundle session `calibration` (default: the same name)."""
        return self._send(calls.open_session(name, calibration))

    def open_new_animal(
        self,
        name: str,
        *,
        units: int | None = None,
        unit_ids: list[str] | None = None,
        adapt: bool | Mapping[str, Any] = False,
        fresh: bool = False,
    ) -> JsonObject:
        """Open stream `name` for an animal the bundle has never seen: forecasts start zero-shot once C frames
        arrived. `adapt=True` (or a dict of AutoAdapt options) fine-tunes it by itself as it records."""
        return self._send(calls.open_new_animal(name, units, unit_ids, _adapt_options(adapt), fresh))

    def finetune_session(self, name: str, **options: Any) -> JsonObject:
        """Queue a fine-tune of stream `name` on what it recorded so far (the job; 409 until enough frames)."""
        return self._send(calls.finetune_session(name, options))

    def close_session(self, name: str) -> None:
        self._send(calls.close_session(name))

    def swap_session_model(self, name: str, *, calibration: str | None = None, bundle: str | None = None) -> JsonObject:
        return self._send(calls.swap_session_model(name, calibration, bundle))

    def latest_forecast(self, session: str, *, intervals: Sequence[float] = ()) -> LatestForecast:
        """The session's latest forecast; with `intervals=(0.8, 0.95)`, those levels' bounds too."""
        return self._send(calls.latest_forecast(session, intervals))

    def accuracy(self, session: str) -> JsonObject:
        """Live accuracy per unit: score, RMSE, and each interval level's coverage and width."""
        return self._send(calls.accuracy(session))

    def crossing_probability(self, session: str, *, unit: int, value: float, direction: str = "above") -> float:
        """P(`unit` reaches `value` (raw units) within the latest forecast's horizon); direction 'above' or 'below'."""
        return self._send(calls.crossing_probability(session, unit, value, direction))

    def forecast(self, calibration: str, context: np.ndarray) -> np.ndarray:
        """Stateless: context (C, N) raw, oldest first -> (N, P) float32 raw, with the active bundle."""
        return self._send(calls.stateless_forecast(calibration, context))

    def bundles(self) -> list[JsonObject]:
        return self._send(calls.bundles())

    def load_bundle(self, path: str) -> JsonObject:
        """Load a bundle directory on the server's disk; sessions keep theirs until `activate_bundle`."""
        return self._send(calls.load_bundle(path))

    def activate_bundle(self, bundle_id: str) -> JsonObject:
        return self._send(calls.activate_bundle(bundle_id))

    def submit_pinning_job(self, params: Mapping[str, Any]) -> JsonObject:
        """A PINning training job; returns the job (id, kind, state, progress, ...), queued."""
        return self._send(calls.submit_pinning_job(params))

    def list_jobs(self) -> list[JsonObject]:
        return self._send(calls.list_jobs())

    def job(self, job_id: str) -> JsonObject:
        return self._send(calls.job(job_id))

    def job_result(self, job_id: str) -> JsonObject:
        return self._send(calls.job_result(job_id))

    def job_result_npz(self, job_id: str) -> bytes:
        """The result's .npz file as bytes (`np.load(io.BytesIO(data))`)."""
        return self._send(calls.job_result_npz(job_id))

    def retry_job(self, job_id: str) -> JsonObject:
        """Queue a failed or cancelled job again."""
        return self._send(calls.retry_job(job_id))

    def cancel_job(self, job_id: str) -> JsonObject:
        return self._send(calls.cancel_job(job_id))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ForecastClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncForecastClient:
    def __init__(
        self, base_url: str = DEFAULT_SERVER_URL, *, token: str | None = None, timeout_s: float = 10.0
    ) -> None:
        self._http = httpx.AsyncClient(**_client_options(base_url, token, timeout_s))

    async def _send(self, call: Call[T]) -> T:
        try:
            response = await self._http.request(call.method, call.path, json=call.json, headers=call.headers)
        except CONNECTION_LOST:
            if call.method != "GET":
                raise
            response = await self._http.request(call.method, call.path, json=call.json, headers=call.headers)
        return call.parse(response)

    async def server_info(self) -> JsonObject:
        return await self._send(calls.server_info())

    async def endpoints(self) -> StreamEndpoints:
        """Where to connect FramePublisher and AsyncZmqForecastSubscriber (from /v1/server)."""
        return await self._send(calls.endpoints(self._http.base_url))

    async def ready(self) -> bool:
        """/readyz: bundle loaded, recorder and ingest running."""
        return await self._send(calls.ready())

    async def sessions(self) -> list[JsonObject]:
        return await self._send(calls.sessions())

    async def session(self, name: str) -> JsonObject:
        return await self._send(calls.session(name))

    async def open_session(self, name: str, calibration: str | None = None) -> JsonObject:
        """Open stream `name`, forecast with bundle session `calibration` (default: the same name)."""
        return await self._send(calls.open_session(name, calibration))

    async def open_new_animal(
        self,
        name: str,
        *,
        units: int | None = None,
        unit_ids: list[str] | None = None,
        adapt: bool | Mapping[str, Any] = False,
        fresh: bool = False,
    ) -> JsonObject:
        """Open stream `name` for an animal the bundle has never seen (see ForecastClient.open_new_animal)."""
        return await self._send(calls.open_new_animal(name, units, unit_ids, _adapt_options(adapt), fresh))

    async def finetune_session(self, name: str, **options: Any) -> JsonObject:
        return await self._send(calls.finetune_session(name, options))

    async def close_session(self, name: str) -> None:
        await self._send(calls.close_session(name))

    async def swap_session_model(
        self, name: str, *, calibration: str | None = None, bundle: str | None = None
    ) -> JsonObject:
        return await self._send(calls.swap_session_model(name, calibration, bundle))

    async def latest_forecast(self, session: str, *, intervals: Sequence[float] = ()) -> LatestForecast:
        """The session's latest forecast; with `intervals=(0.8, 0.95)`, those levels' bounds too."""
        return await self._send(calls.latest_forecast(session, intervals))

    async def accuracy(self, session: str) -> JsonObject:
        """Live accuracy per unit: score, RMSE, and each interval level's coverage and width."""
        return await self._send(calls.accuracy(session))

    async def crossing_probability(self, session: str, *, unit: int, value: float, direction: str = "above") -> float:
        """P(`unit` reaches `value` (raw units) within the latest forecast's horizon); direction 'above' or 'below'."""
        return await self._send(calls.crossing_probability(session, unit, value, direction))

    async def forecast(self, calibration: str, context: np.ndarray) -> np.ndarray:
        """Stateless: context (C, N) raw, oldest first -> (N, P) float32 raw, with the active bundle."""
        return await self._send(calls.stateless_forecast(calibration, context))

    async def bundles(self) -> list[JsonObject]:
        return await self._send(calls.bundles())

    async def load_bundle(self, path: str) -> JsonObject:
        """Load a bundle directory on the server's disk; sessions keep theirs until `activate_bundle`."""
        return await self._send(calls.load_bundle(path))

    async def activate_bundle(self, bundle_id: str) -> JsonObject:
        return await self._send(calls.activate_bundle(bundle_id))

    async def submit_pinning_job(self, params: Mapping[str, Any]) -> JsonObject:
        """A PINning training job; returns the job (id, kind, state, progress, ...), queued."""
        return await self._send(calls.submit_pinning_job(params))

    async def list_jobs(self) -> list[JsonObject]:
        return await self._send(calls.list_jobs())

    async def job(self, job_id: str) -> JsonObject:
        return await self._send(calls.job(job_id))

    async def job_result(self, job_id: str) -> JsonObject:
        return await self._send(calls.job_result(job_id))

    async def job_result_npz(self, job_id: str) -> bytes:
        """The result's .npz file as bytes (`np.load(io.BytesIO(data))`)."""
        return await self._send(calls.job_result_npz(job_id))

    async def retry_job(self, job_id: str) -> JsonObject:
        """Queue a failed or cancelled job again."""
        return await self._send(calls.retry_job(job_id))

    async def cancel_job(self, job_id: str) -> JsonObject:
        return await self._send(calls.cancel_job(job_id))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncForecastClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
