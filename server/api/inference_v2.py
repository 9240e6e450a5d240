"""The Open Inference Protocol (KServe v2) over REST, as its clients (Triton's tritonclient, KServe's) call it.

The model, its versions and the checks on its inputs are poco_rt.server.inference_protocol's,
shared with the gRPC endpoint. What is here is the HTTP framing: JSON bodies whatever their
`Content-Type` (clients often send none), the binary tensor data extension (binary_tensors.py),
the model repository routes, and every refusal in the protocol's `{"error": "..."}` form with
status 400 (404 for a model or version the server does not serve; server/api/errors.py).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any

import numpy as np
import pydantic
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import poco_rt
from poco_rt.errors import InferenceRequestError
from poco_rt.server import inference_protocol as protocol
from poco_rt.server.api.binary_tensors import (
    BINARY_MEDIA_TYPE,
    HEADER_LENGTH,
    binary_data_size,
    binary_response,
    split_body,
    take_binary_data,
)
from poco_rt.server.api.deps import Authorized, RuntimeDep
from poco_rt.server.api.strict_json import StrictJSONRoute, parse_json_body
from poco_rt.server.runtime import ServerRuntime


class ProtocolError(BaseModel):
    error: str = Field(description="what is wrong, and what to send instead")


router = APIRouter(
    prefix="/v2",
    tags=["open inference protocol (v2)"],
    route_class=StrictJSONRoute,
    responses={400: {"model": ProtocolError, "description": "refused: the message says why"}},
)
NOT_SERVED = {404: {"model": ProtocolError, "description": "no such model, or no such version loaded"}}


class TensorIn(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float] | list[list[float]] | None = Field(
        default=None, description="row-major values, flat or nested; absent when `parameters.binary_data_size` is set"
    )
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(default=None, description="`binary_data`: true for raw bytes")


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[TensorIn]
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] | None = Field(default=None, description="`binary_data_output`: true for raw bytes")


class TensorOut(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float] | None = None
    parameters: dict[str, Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[TensorOut]


class IndexEntryOut(BaseModel):
    name: str
    version: str
    state: protocol.ModelState


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its `$defs` written in place, to stand alone in the OpenAPI document."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return resolve(schema)


INFER_DOCS: dict[str, Any] = {
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inlined(InferRequest.model_json_schema())}},
        }
    },
    "responses": {
        200: {"content": {BINARY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
        **NOT_SERVED,
    },
}


@dataclasses.dataclass(frozen=True)
class RawInferBody:
    """An inference request's body and the headers that say how to read it, as received."""

    body: bytes
    header_length: str | None  # Inference-Header-Content-Length: the binary tensor data extension
    content_encoding: str


async def raw_infer_body(request: Request) -> RawInferBody:
    """Only the bytes, on the event loop: parsing megabytes of JSON there would stall every other request."""
    encoding = request.headers.get("content-encoding", "identity")
    return RawInferBody(await request.body(), request.headers.get(HEADER_LENGTH), encoding)


def read_infer_request(raw: RawInferBody) -> tuple[InferRequest, list[protocol.InputTensor]]:
    """The body as an inference request, read whatever its Content-Type, with its binary data if any."""
    encoding = raw.content_encoding.strip().lower()
    if encoding != "identity":
        raise InferenceRequestError(f"the body is {encoding[:40]}-encoded; send it uncompressed")
    json_part, binary = split_body(raw.body, raw.header_length)
    try:
        infer_request = InferRequest.model_validate(parse_json_body(json_part))
    except json.JSONDecodeError as error:
        raise InferenceRequestError(f"the request is not JSON ({error}); send the protocol's JSON request") from None
    except HTTPException as error:  # the strict parser's refusals: text that is not UTF-8, NaN, 1e999
        raise InferenceRequestError(str(error.detail)) from None
    except pydantic.ValidationError as error:
        problems = ["/".join(str(part) for part in item["loc"]) + ": " + item["msg"] for item in error.errors()[:3]]
        raise InferenceRequestError(f"the request is not an inference request: {'; '.join(problems)}") from None
    sizes = [binary_data_size(tensor.parameters, tensor.name) for tensor in infer_request.inputs]
    pieces = take_binary_data(sizes, binary)
    inputs = []
    for tensor, piece in zip(infer_request.inputs, pieces, strict=True):
        if (piece is None) == (tensor.data is None):
            raise InferenceRequestError(
                f"input {tensor.name!r} needs its values in one place: `data`, or binary_data_size bytes after the JSON"
            )
        data = piece if piece is not None else tensor.data
        inputs.append(protocol.InputTensor(tensor.name, tensor.datatype, tuple(tensor.shape), data))
    return infer_request, inputs


RawInferBodyDep = Annotated[RawInferBody, Depends(raw_infer_body)]


@router.get("/health/live")
def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready")
def ready(runtime: RuntimeDep) -> JSONResponse:
    return JSONResponse(status_code=200 if runtime.ready else 503, content={"ready": runtime.ready})


@router.get("", dependencies=Authorized)
def server_metadata() -> dict[str, Any]:
    return {"name": protocol.SERVER_NAME, "version": poco_rt.__version__, "extensions": list(protocol.EXTENSIONS)}


@router.get("/models/{model_name}", dependencies=Authorized, responses=NOT_SERVED)
def model_metadata(model_name: str, runtime: RuntimeDep) -> dict[str, Any]:
    return _metadata(runtime.model_metadata(model_name))


@router.get("/models/{model_name}/versions/{model_version}", dependencies=Authorized, responses=NOT_SERVED)
def model_version_metadata(model_name: str, model_version: str, runtime: RuntimeDep) -> dict[str, Any]:
    return _metadata(runtime.model_metadata(model_name, model_version))


@router.get("/models/{model_name}/ready", dependencies=Authorized, responses=NOT_SERVED)
def model_ready(model_name: str, runtime: RuntimeDep) -> JSONResponse:
    return _readiness(runtime.model_ready(model_name))


@router.get("/models/{model_name}/versions/{model_version}/ready", dependencies=Authorized, responses=NOT_SERVED)
def model_version_ready(model_name: str, model_version: str, runtime: RuntimeDep) -> JSONResponse:
    return _readiness(runtime.model_ready(model_name, model_version))


@router.post("/models/{model_name}/infer", dependencies=Authorized, response_model=InferResponse, **INFER_DOCS)
def infer(model_name: str, body: RawInferBodyDep, runtime: RuntimeDep) -> Response:
    return _infer(runtime, model_name, "", body)


@router.post(
    "/models/{model_name}/versions/{model_version}/infer",
    dependencies=Authorized,
    response_model=InferResponse,
    **INFER_DOCS,
)
def infer_version(model_name: str, model_version: str, body: RawInferBodyDep, runtime: RuntimeDep) -> Response:
    return _infer(runtime, model_name, model_version, body)


@router.post("/repository/index", dependencies=Authorized)
def repository_index(runtime: RuntimeDep) -> list[IndexEntryOut]:
    """Every loaded network version of the model; loading bundles is /v1/bundles."""
    return [IndexEntryOut(name=e.name, version=e.version, state=e.state) for e in runtime.model_repository()]


@router.post("/repository/models/{model_name}/load", dependencies=Authorized, responses=NOT_SERVED)
def load_model(model_name: str, runtime: RuntimeDep) -> dict[str, Any]:
    """The model is loaded while the server runs: a load of it succeeds with nothing to do."""
    runtime.load_model(model_name)
    return {}


@router.post("/repository/models/{model_name}/unload", dependencies=Authorized, responses=NOT_SERVED)
def unload_model(model_name: str, runtime: RuntimeDep) -> dict[str, Any]:
    """Refused (400): the model stays loaded while the server runs."""
    runtime.unload_model(model_name)
    return {}


def _infer(runtime: ServerRuntime, model_name: str, model_version: str, body: RawInferBody) -> Response:
    """Parsed here, in the thread pool; the forecast as JSON numbers or, where asked, as bytes after the JSON."""
    request, inputs = read_infer_request(body)
    requested = request.outputs or [RequestedOutput(name=protocol.OUTPUT_NAME)]
    protocol.check_requested_outputs([output.name for output in requested])
    result = runtime.infer(model_name, model_version, inputs)
    forecast = result.forecast  # (N, P)
    output: dict[str, Any] = {"name": protocol.OUTPUT_NAME, "shape": list(forecast.shape), "datatype": "FP32"}
    header: dict[str, Any] = {"model_name": protocol.MODEL_NAME, "model_version": result.model_version}
    if request.id is not None:
        header["id"] = request.id
    header["outputs"] = [output]
    if not _wants_binary(request, requested[0]):
        output["data"] = forecast.ravel().tolist()
        return JSONResponse(header)
    data = np.ascontiguousarray(forecast, dtype="<f4").tobytes()
    output["parameters"] = {"binary_data_size": len(data)}
    return binary_response(header, data)


def _metadata(metadata: protocol.ModelMetadata) -> dict[str, Any]:
    return {
        "name": metadata.name,
        "versions": list(metadata.versions),
        "platform": metadata.platform,
        "inputs": [_spec(spec) for spec in metadata.inputs],
        "outputs": [_spec(spec) for spec in metadata.outputs],
    }


def _readiness(is_ready: bool) -> JSONResponse:
    return JSONResponse(status_code=200 if is_ready else 503, content={"ready": is_ready})


def _spec(spec: protocol.TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}


def _wants_binary(request: InferRequest, output: RequestedOutput) -> bool:
    if request.outputs:
        return (output.parameters or {}).get("binary_data") is True
    return (request.parameters or {}).get("binary_data_output") is True
