"""The Open Inference Protocol over REST as a standard client speaks it: Triton's tritonclient[http].

tritonclient sends its JSON without a Content-Type and, by default, its tensors as raw bytes after
the JSON (the binary tensor data extension); it reads refusals from the protocol's `{"error": ...}`.
Each forecast is checked against the tiny bundle's network run directly in onnxruntime.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from poco_rt.bundle import load_bundle

C, D, P = 48, 32, 16  # the served bundle's context, embedding width and horizon
TOKEN = "s3cret"


def triton_client(server, **options) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=30.0, **options)


def triton_inputs(context: np.ndarray, embeddings: np.ndarray, *, binary: bool) -> list[triton.InferInput]:
    inputs = []
    for name, values in (("context", context), ("unit_embeddings", embeddings)):
        tensor = triton.InferInput(name, list(values.shape), "FP32")
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("binary", [True, False], ids=["binary tensors", "JSON tensors"])
def test_tritonclient_infers_with_binary_and_json_tensors(start_server, oip_reference, binary):
    server = start_server()
    context, embeddings, expected = oip_reference
    client = triton_client(server)
    try:
        inputs = triton_inputs(context, embeddings, binary=binary)
        asked = [triton.InferRequestedOutput("forecast", binary_data=binary)]
        result = client.infer("poco", inputs, outputs=asked, request_id="7")
        response = result.get_response()
        assert (response["id"], response["outputs"][0]["shape"]) == ("7", [5, P])
        assert ("parameters" in response["outputs"][0]) == binary  # binary_data_size, with the bytes after the JSON
        np.testing.assert_allclose(result.as_numpy("forecast"), expected, rtol=1e-5, atol=1e-5)
        version = client.get_model_metadata("poco")["versions"][0]
        by_default = client.infer("poco", inputs, model_version=version)  # no outputs named: all of them, as bytes
        assert by_default.get_response()["model_version"] == version
        np.testing.assert_allclose(by_default.as_numpy("forecast"), expected, rtol=1e-5, atol=1e-5)
    finally:
        client.close()


def test_tritonclient_sees_the_model_repository_and_readiness(start_server, served_bundle):
    server = start_server()
    version = load_bundle(served_bundle).version
    client = triton_client(server)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("poco") and client.is_model_ready("poco", version)
        assert not client.is_model_ready("other")
        assert client.get_model_repository_index() == [{"name": "poco", "version": version, "state": "READY"}]
        assert client.get_server_metadata()["extensions"] == ["binary_tensor_data", "model_repository"]
        client.load_model("poco")
        with pytest.raises(InferenceServerException, match="stays loaded while it runs") as refused:
            client.unload_model("poco")
        assert refused.value.status() == "400"
        with pytest.raises(InferenceServerException, match="no model 'other'") as unknown:
            client.get_model_metadata("other")
        assert unknown.value.status() == "404"
    finally:
        client.close()


def test_tritonclient_reads_each_refusal_as_the_protocols_error(start_server, oip_reference):
    server = start_server(auth_token=TOKEN)
    context, embeddings, expected = oip_reference
    refusals = {
        "wrong width": (triton_inputs(context[:, :7], embeddings, binary=True), "poco", ""),
        "other model": (triton_inputs(context, embeddings, binary=True), "other", ""),
        "unloaded version": (triton_inputs(context, embeddings, binary=False), "poco", "0badc0ffee00"),
        "one input": (triton_inputs(context, embeddings, binary=False)[:1], "poco", ""),
    }
    expected_errors = {
        "wrong width": ("400", "input 'context' has shape [5, 7]; it must be [N, 48] with N >= 1"),
        "other model": ("404", "no model 'other'; this server serves 'poco'"),
        "unloaded version": ("404", "model 'poco' has no version '0badc0ffee00'"),
        "one input": ("400", "inputs must be exactly ['context', 'unit_embeddings'], once each; got ['context']"),
    }
    with_token = triton_client(server)
    without_token = triton_client(server)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}  # copied per call: tritonclient adds its binary header to it
        for case, (inputs, model, version) in refusals.items():
            with pytest.raises(InferenceServerException) as refused:
                with_token.infer(model, inputs, model_version=version, headers=dict(headers))
            status, message = expected_errors[case]
            assert (refused.value.status(), refused.value.message()[: len(message)]) == (status, message), case
        with pytest.raises(InferenceServerException, match="missing or wrong bearer token") as unauthorized:
            without_token.infer("poco", triton_inputs(context, embeddings, binary=True))
        assert unauthorized.value.status() == "401"
        result = with_token.infer("poco", triton_inputs(context, embeddings, binary=True), headers=dict(headers))
        np.testing.assert_allclose(result.as_numpy("forecast"), expected, rtol=1e-5, atol=1e-5)
    finally:
        with_token.close()
        without_token.close()


def binary_request(context: np.ndarray, embeddings: np.ndarray, **override) -> tuple[bytes, dict[str, str]]:
    """A binary-extension body built by hand (tritonclient never sends it wrong), with `override` on its JSON."""
    import json

    inputs = [
        {
            "name": name,
            "shape": list(values.shape),
            "datatype": "FP32",
            "parameters": {"binary_data_size": values.nbytes},
        }
        for name, values in (("context", context), ("unit_embeddings", embeddings))
    ]
    header = json.dumps({"inputs": inputs, **override}).encode()
    return header + context.tobytes() + embeddings.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def test_malformed_binary_requests_are_refused_with_the_reason(start_server, oip_reference):
    server = start_server()
    context, embeddings, _ = oip_reference
    body, headers = binary_request(context, embeddings)
    json_length = int(headers["Inference-Header-Content-Length"])
    cases = {
        "short": (body[:-4], headers, "the inputs' binary_data_size add up to 1600 bytes, but 1596 bytes follow"),
        "header past the end": (
            body,
            {"Inference-Header-Content-Length": str(len(body) + 1)},
            f"Inference-Header-Content-Length is {len(body) + 1} but the body has only {len(body)} bytes",
        ),
        "header not a number": (body, {"Inference-Header-Content-Length": "12a"}, "Inference-Header-Content-Length is"),
        "header cuts the JSON": (
            body,
            {"Inference-Header-Content-Length": str(json_length - 1)},
            "the request is not JSON",
        ),
        "NaN in the bytes": (
            binary_request(np.full_like(context, np.nan), embeddings)[0],
            headers,
            "input 'context' holds NaN, inf or values beyond float32's range",
        ),
        "gzip": (body, {**headers, "Content-Encoding": "gzip"}, "the body is gzip-encoded; send it uncompressed"),
        "no values": (
            b'{"inputs": [{"name": "context", "shape": [5, 48], "datatype": "FP32"}]}',
            {},
            "input 'context' needs its values in one place: `data`, or binary_data_size bytes after the JSON",
        ),
        "not a request": (b'{"inputs": 3}', {}, "the request is not an inference request: inputs: Input should be"),
    }
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for case, (content, case_headers, message) in cases.items():
            reply = http.post("/v2/models/poco/infer", content=content, headers=case_headers)
            assert (reply.status_code, reply.json()["error"][: len(message)]) == (400, message), case
        unknown_route = http.get("/v2/models/poco/config")
        assert (unknown_route.status_code, unknown_route.json()) == (404, {"error": "Not Found"})
        assert http.post("/v2/models/poco/infer", content=body, headers=headers).status_code == 200
