"""The Open Inference Protocol over gRPC: KServe v2's `inference.GRPCInferenceService`, on `grpc_port`.

The service and its messages are those of the KServe v2 protocol
(https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/inference_grpc.md),
taken from the stubs tritonclient[grpc] ships (Triton's service.proto, a superset with the same
package, names and fields), so that this server and its clients are built from one definition.
Every call runs the runtime's inference operations (poco_rt.server.inference_protocol), as the REST
routes do; what is here is only the protobuf framing, the bearer token (gRPC metadata
`authorization: Bearer <token>`, the REST rule; ServerLive and ServerReady are open, as
/v2/health is), and the server's lifecycle.

Calls run on the endpoint's own small thread pool, never on the ingest thread or the event loop;
inference on them is onnxruntime's `run`, which is safe from several threads. The endpoint has
start, stop-with-timeout and `started`, driven by ServerRuntime: stopping refuses new calls, lets
those running finish within the timeout, then joins the pool.
Legend: N units, P horizon.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import numpy as np
from pydantic import SecretStr
from tritonclient.grpc import service_pb2, service_pb2_grpc

import poco_rt
from poco_rt.errors import InferenceRequestError, NotRunning, UnknownModel
from poco_rt.server import inference_protocol as protocol
from poco_rt.server.auth import bearer_token_matches

if TYPE_CHECKING:
    from poco_rt.server.runtime import ServerRuntime

logger = logging.getLogger(__name__)
T = TypeVar("T")

SERVICE = "/inference.GRPCInferenceService/"
OPEN_METHODS = frozenset({SERVICE + "ServerLive", SERVICE + "ServerReady"})  # probes, as /v2/health/* are
WORKERS = 4  # calls served at once; more wait in gRPC's queue
STATUS_OF: dict[type[Exception], grpc.StatusCode] = {
    UnknownModel: grpc.StatusCode.NOT_FOUND,
    InferenceRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    NotRunning: grpc.StatusCode.UNAVAILABLE,
}


def _refusing(method: Callable[..., T]) -> Callable[..., T]:
    """A servicer method whose refusals (the error tree's) end the call with their status and message."""

    @functools.wraps(method)
    def call(self: InferenceServicer, request: Any, context: grpc.ServicerContext) -> T:
        try:
            return method(self, request, context)
        except tuple(STATUS_OF) as error:
            code = next(code for error_type, code in STATUS_OF.items() if isinstance(error, error_type))
            context.abort(code, str(error))
            raise  # abort raises; this line is never reached

    return call


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The KServe v2 calls, each a few lines over inference_protocol; Triton's extra calls stay UNIMPLEMENTED."""

    def __init__(self, runtime: ServerRuntime) -> None:
        self._runtime = runtime

    def ServerLive(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 - the protocol's names
        return service_pb2.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return service_pb2.ServerReadyResponse(ready=self._runtime.ready)

    def ServerMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return service_pb2.ServerMetadataResponse(
            name=protocol.SERVER_NAME, version=poco_rt.__version__, extensions=list(protocol.EXTENSIONS)
        )

    @_refusing
    def ModelReady(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        ready = self._runtime.model_ready(request.name, request.version)
        return service_pb2.ModelReadyResponse(ready=ready)

    @_refusing
    def ModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        metadata = self._runtime.model_metadata(request.name, request.version)
        tensor = service_pb2.ModelMetadataResponse.TensorMetadata
        return service_pb2.ModelMetadataResponse(
            name=metadata.name,
            versions=list(metadata.versions),
            platform=metadata.platform,
            inputs=[tensor(name=spec.name, datatype=spec.datatype, shape=list(spec.shape)) for spec in metadata.inputs],
            outputs=[
                tensor(name=spec.name, datatype=spec.datatype, shape=list(spec.shape)) for spec in metadata.outputs
            ],
        )

    @_refusing
    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        protocol.check_requested_outputs([output.name for output in request.outputs])
        result = self._runtime.infer(request.model_name, request.model_version, _inputs(request))
        forecast = result.forecast  # (N, P)
        response = service_pb2.ModelInferResponse(
            model_name=protocol.MODEL_NAME, model_version=result.model_version, id=request.id
        )
        response.outputs.add(name=protocol.OUTPUT_NAME, datatype=protocol.DATATYPE, shape=list(forecast.shape))
        response.raw_output_contents.append(np.ascontiguousarray(forecast, dtype="<f4").tobytes())
        return response

    @_refusing
    def RepositoryIndex(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        index = service_pb2.RepositoryIndexResponse.ModelIndex
        entries = self._runtime.model_repository()
        return service_pb2.RepositoryIndexResponse(
            models=[index(name=entry.name, version=entry.version, state=entry.state.value) for entry in entries]
        )

    @_refusing
    def RepositoryModelLoad(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._runtime.load_model(request.model_name)
        return service_pb2.RepositoryModelLoadResponse()

    @_refusing
    def RepositoryModelUnload(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self._runtime.unload_model(request.model_name)
        return service_pb2.RepositoryModelUnloadResponse()


def _inputs(request: Any) -> list[protocol.InputTensor]:
    """The request's inputs with their data: all as raw bytes (`raw_input_contents`), or all as FP32 contents."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InferenceRequestError(
            f"the request has {len(request.inputs)} inputs but {len(raw)} raw_input_contents; send one per input"
        )
    return [
        protocol.InputTensor(
            name=tensor.name,
            datatype=tensor.datatype,
            shape=tuple(tensor.shape),
            data=raw[index] if raw else list(tensor.contents.fp32_contents),
        )
        for index, tensor in enumerate(request.inputs)
    ]


class _BearerToken(grpc.ServerInterceptor):
    """Refuses every call but the probes unless its metadata carries the configured token."""

    def __init__(self, expected: SecretStr) -> None:
        self._expected = expected

        def refuse(request: Any, context: grpc.ServicerContext) -> None:
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or wrong bearer token: send metadata 'authorization: Bearer <token>'",
            )

        self._refusal = grpc.unary_unary_rpc_method_handler(refuse)

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails) -> Any:
        if handler_call_details.method in OPEN_METHODS:
            return continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        if bearer_token_matches(self._expected, metadata.get("authorization")):
            return continuation(handler_call_details)
        return self._refusal


class GrpcEndpoint:
    def __init__(
        self, runtime: ServerRuntime, *, host: str, port: int, auth_token: SecretStr | None, max_message_bytes: int
    ) -> None:
        self._runtime = runtime
        self._host = host
        self._port = port
        self._auth_token = auth_token
        self._max_message_bytes = max_message_bytes
        self._server: grpc.Server | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.address: str | None = None  # host:port once started (port 0 resolved)

    @property
    def started(self) -> bool:
        return self._server is not None

    def start(self) -> str:
        """Bind and serve; the bound address. A ValueError naming the address if it cannot bind."""
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="poco-rt-grpc")
        server = grpc.server(
            self._pool,
            interceptors=[_BearerToken(self._auth_token)] if self._auth_token is not None else [],
            options=[
                ("grpc.so_reuseport", 0),  # a port in use is an error, not a second server sharing it
                ("grpc.max_receive_message_length", self._max_message_bytes),  # REST's max_body_bytes
            ],
        )
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(self._runtime), server)
        host = f"[{self._host}]" if ":" in self._host else self._host
        try:
            port = server.add_insecure_port(f"{host}:{self._port}")
        except RuntimeError:
            port = 0
        if port == 0:
            self._pool.shutdown(wait=False)
            raise ValueError(
                f"cannot listen for gRPC on {host}:{self._port} (another server on the port, or an address this "
                "machine does not have?)"
            )
        server.start()
        self._server = server
        self.address = f"{host}:{port}"
        logger.info("gRPC (Open Inference Protocol) on %s", self.address)
        return self.address

    def stop(self, *, timeout_s: float) -> None:
        """Refuse new calls, give running ones `timeout_s` to finish, then join the pool's threads."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=timeout_s).wait(timeout_s)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
