"""The Open Inference Protocol over gRPC as a standard client speaks it: Triton's tritonclient[grpc].

The same forecasts as REST (both run inference_protocol.infer), the same token (as gRPC metadata),
refusals with the protocol's status codes, and an endpoint that starts with `poco-rt serve
--grpc-port` and stops with it.
"""

from __future__ import annotations

import re
import signal

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from poco_rt.bundle import load_bundle
from poco_rt.server.grpc_endpoint import GrpcEndpoint
from tests.helpers import C, P

TOKEN = "s3cret"
BEARER = {"authorization": f"Bearer {TOKEN}"}


def grpc_inputs(context: np.ndarray, embeddings: np.ndarray) -> list[triton_grpc.InferInput]:
    inputs = []
    for name, values in (("context", context), ("unit_embeddings", embeddings)):
        tensor = triton_grpc.InferInput(name, list(values.shape), "FP32")
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return inputs


def test_tritonclient_grpc_forecasts_what_rest_forecasts(start_server, oip_reference, served_bundle):
    server = start_server(grpc_port=0)
    context, embeddings, expected = oip_reference
    address = server.runtime.describe().grpc_endpoint
    with triton_grpc.InferenceServerClient(address) as client:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("poco")
        result = client.infer("poco", grpc_inputs(context, embeddings), request_id="7")
        response = result.get_response(as_json=True)
        assert (response["id"], response["model_version"]) == ("7", load_bundle(served_bundle).version)
        metadata = client.get_model_metadata("poco", as_json=True)
    np.testing.assert_allclose(result.as_numpy("forecast"), expected, rtol=1e-5, atol=1e-5)
    assert metadata["inputs"][0] == {"name": "context", "datatype": "FP32", "shape": ["-1", str(C)]}
    rest = triton_http.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        http_inputs = []
        for name, values in (("context", context), ("unit_embeddings", embeddings)):
            http_inputs.append(triton_http.InferInput(name, list(values.shape), "FP32"))
            http_inputs[-1].set_data_from_numpy(values)
        np.testing.assert_array_equal(rest.infer("poco", http_inputs).as_numpy("forecast"), result.as_numpy("forecast"))
    finally:
        rest.close()

    request = service_pb2.ModelInferRequest(model_name="poco")  # values as protobuf floats, not raw bytes
    for name, values in (("context", context), ("unit_embeddings", embeddings)):
        tensor = request.inputs.add(name=name, datatype="FP32", shape=list(values.shape))
        tensor.contents.fp32_contents.extend(values.ravel().tolist())
    with grpc.insecure_channel(address) as channel:
        reply = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    contents = np.frombuffer(reply.raw_output_contents[0], dtype="<f4").reshape(list(reply.outputs[0].shape))
    np.testing.assert_array_equal(contents, result.as_numpy("forecast"))


def test_grpc_takes_the_rest_token_and_refuses_with_the_protocols_status(start_server, oip_reference):
    server = start_server(grpc_port=0, auth_token=TOKEN)
    context, embeddings, _ = oip_reference
    with triton_grpc.InferenceServerClient(server.runtime.describe().grpc_endpoint) as client:
        assert client.is_server_live() and client.is_server_ready()  # the probes are open, as /v2/health is
        refusals = {
            "no token": (lambda: client.get_model_metadata("poco"), "StatusCode.UNAUTHENTICATED", "missing or wrong"),
            "wrong token": (
                lambda: client.get_model_metadata("poco", headers={"authorization": "Bearer nope"}),
                "StatusCode.UNAUTHENTICATED",
                "missing or wrong bearer token: send metadata 'authorization: Bearer <token>'",
            ),
            "wrong width": (
                lambda: client.infer("poco", grpc_inputs(context[:, :7], embeddings), headers=BEARER),
                "StatusCode.INVALID_ARGUMENT",
                "input 'context' has shape [5, 7]; it must be [N, 48] with N >= 1",
            ),
            "other model": (
                lambda: client.infer("other", grpc_inputs(context, embeddings), headers=BEARER),
                "StatusCode.NOT_FOUND",
                "no model 'other'; this server serves 'poco'",
            ),
            "unload": (
                lambda: client.unload_model("poco", headers=BEARER),
                "StatusCode.INVALID_ARGUMENT",
                "model 'poco' is the server's own and stays loaded while it runs",
            ),
        }
        for case, (call, status, message) in refusals.items():
            with pytest.raises(InferenceServerException) as refused:
                call()
            assert (refused.value.status(), refused.value.message()[: len(message)]) == (status, message), case
        index = client.get_model_repository_index(headers=BEARER, as_json=True)["models"]
        assert [(model["name"], model["state"]) for model in index] == [("poco", "READY")]
        served = client.infer("poco", grpc_inputs(context, embeddings), headers=BEARER)
        assert served.as_numpy("forecast").shape == (5, P)


def test_a_grpc_port_in_use_is_refused_not_shared(start_server):
    """gRPC sets SO_REUSEPORT by default on Linux, which would let a second server take half the calls."""
    server = start_server(grpc_port=0)
    address = server.runtime.describe().grpc_endpoint
    second = GrpcEndpoint(
        server.runtime, host="127.0.0.1", port=int(address.rsplit(":", 1)[1]), auth_token=None, max_message_bytes=1024
    )
    with pytest.raises(ValueError, match=f"cannot listen for gRPC on {re.escape(address)}"):
        second.start()
    assert not second.started


def test_serve_grpc_port_serves_grpc_until_the_server_stops(serve_process, served_bundle, tmp_path, oip_reference):
    context, embeddings, expected = oip_reference
    args = ["--bundle", str(served_bundle), "--data-dir", str(tmp_path / "data"), "--http-port", "0",
            "--frame-port", "0", "--forecast-port", "0", "--grpc-port", "0"]  # fmt: skip
    server = serve_process(*args)
    (address,) = re.findall(r"gRPC \(Open Inference Protocol\) on (127\.0\.0\.1:\d+)", server.log_tail())
    with triton_grpc.InferenceServerClient(address) as client:
        forecast = client.infer("poco", grpc_inputs(context, embeddings)).as_numpy("forecast")
        np.testing.assert_allclose(forecast, expected, rtol=1e-5, atol=1e-5)
        assert server.signal(signal.SIGTERM) == -signal.SIGTERM  # uvicorn re-raises it once shut down
        assert "stopped" in server.log_tail()
        with pytest.raises(InferenceServerException, match=r"StatusCode\.UNAVAILABLE"):
            client.is_server_live(client_timeout=5)
