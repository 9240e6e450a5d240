"""The Open Inference Protocol (KServe v2) over REST: the bundle's network as a model named `poco`.

The model is the raw network, as the protocol expects: inputs `context` (N, C) and
`unit_embeddings` (N, D), FP32, already normalised; output `forecast` (N, P), normalised. The
session-aware forecasts (raw units, calibration applied) are the /v1 routes. Errors answer with
the protocol's `{"error": "..."}` body.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import poco_rt
from poco_rt.server.api.body import StrictJSONRoute
from poco_rt.server.api.deps import Authorized, RuntimeDep
from poco_rt.server.api.schemas import REFUSED, float32_array
from poco_rt.server.bundles import LoadedBundle

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"], route_class=StrictJSONRoute, responses=REFUSED)
MODEL_NAME = "poco"


class TensorIn(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float] = Field(description="row-major flat values")
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[TensorIn]
    outputs: list[dict[str, Any]] | None = None
    parameters: dict[str, Any] | None = None


class TensorOut(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[TensorOut]


def _error(code: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=code, content={"error": message})


def _tensor_meta(name: str, width: int) -> dict[str, Any]:
    return {"name": name, "datatype": "FP32", "shape": [-1, width]}


@router.get("/health/live")
def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready")
def ready(runtime: RuntimeDep) -> JSONResponse:
    return JSONResponse(status_code=200 if runtime.ready else 503, content={"ready": runtime.ready})


@router.get("", dependencies=Authorized)
def server_metadata() -> dict[str, Any]:
    return {"name": "poco-rt", "version": poco_rt.__version__, "extensions": []}


@router.get("/models/{model_name}", dependencies=Authorized)
def model_metadata(model_name: str, runtime: RuntimeDep) -> JSONResponse:
    if model_name != MODEL_NAME:
        return _error(404, f"no model {model_name!r}; this server serves {MODEL_NAME!r}")
    bundle = runtime.bundles.active.bundle
    return JSONResponse(
        {
            "name": MODEL_NAME,
            "versions": sorted({loaded.version for loaded in runtime.bundles.all()}),
            "platform": "onnxruntime_onnx",
            "inputs": [
                _tensor_meta("context", bundle.context_frames),
                _tensor_meta("unit_embeddings", bundle.embedding_dim),
            ],
            "outputs": [_tensor_meta("forecast", bundle.horizon)],
        }
    )


@router.get("/models/{model_name}/ready", dependencies=Authorized)
def model_ready(model_name: str, runtime: RuntimeDep) -> JSONResponse:
    if model_name != MODEL_NAME:
        return _error(404, f"no model {model_name!r}; this server serves {MODEL_NAME!r}")
    return JSONResponse(status_code=200 if runtime.bundles.started else 503, content={"ready": runtime.bundles.started})


@router.post("/models/{model_name}/infer", dependencies=Authorized, response_model=InferResponse)
def infer(model_name: str, request: InferRequest, runtime: RuntimeDep) -> JSONResponse:
    if model_name != MODEL_NAME:
        return _error(404, f"no model {model_name!r}; this server serves {MODEL_NAME!r}")
    loaded = runtime.bundles.active
    inputs, problem = _read_inputs(request, loaded)
    if problem:
        return _error(400, problem)
    forecast = loaded.engine.forecast_normalised(inputs["context"], inputs["unit_embeddings"])  # (N, P)
    response = InferResponse(
        model_name=MODEL_NAME,
        model_version=loaded.version,
        id=request.id,
        outputs=[
            TensorOut(name="forecast", shape=list(forecast.shape), datatype="FP32", data=forecast.ravel().tolist())
        ],
    )
    return JSONResponse(response.model_dump(mode="json"))


def _read_inputs(request: InferRequest, loaded: LoadedBundle) -> tuple[dict[str, np.ndarray], str]:
    """The two inputs as (N, C) and (N, D) float32 arrays, or what is wrong with the request."""
    bundle = loaded.bundle
    widths = {"context": bundle.context_frames, "unit_embeddings": bundle.embedding_dim}
    given = {tensor.name: tensor for tensor in request.inputs}
    if set(given) != set(widths):
        return {}, f"inputs must be exactly {sorted(widths)}; got {sorted(given)}"
    arrays = {}
    for name, tensor in given.items():
        if tensor.datatype != "FP32":
            return {}, f"input {name!r} has datatype {tensor.datatype}; send FP32"
        if len(tensor.shape) != 2 or tensor.shape[1] != widths[name] or tensor.shape[0] < 1:
            return {}, f"input {name!r} has shape {tensor.shape}; it must be [N, {widths[name]}] with N >= 1"
        if len(tensor.data) != tensor.shape[0] * tensor.shape[1]:
            return {}, f"input {name!r} has {len(tensor.data)} values for shape {tensor.shape}"
        arrays[name] = float32_array(tensor.data).reshape(tensor.shape)
        if not np.isfinite(arrays[name]).all():
            return {}, f"input {name!r} holds values beyond float32's range (+-3.4e38); send FP32 values"
    if arrays["context"].shape[0] != arrays["unit_embeddings"].shape[0]:
        return {}, "context and unit_embeddings must have the same number of rows (units, N)"
    return arrays, ""
