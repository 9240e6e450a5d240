"""The Open Inference Protocol's model `poco`, the same whichever transport carries it (REST or gRPC).

The KServe v2 protocol (https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/)
serves named models with typed tensors in and out. Here the one model is the bundle's raw network,
as the protocol expects: inputs `context` (N, C) and `unit_embeddings` (N, D), FP32, already
normalised; output `forecast` (N, P), normalised. The session-aware forecasts (raw units,
calibration applied) are the /v1 routes. Its versions are the network versions of the loaded
bundles; a request without a version runs the active bundle's network.

Both transports decode their own framing (JSON numbers or raw little-endian bytes, protobuf
contents) into `InputTensor`s and call `infer`, which checks every input before the network runs
and raises `InferenceRequestError` or `UnknownModel` with a message naming the fix. `infer` runs
on the caller's thread, never the ingest thread: onnxruntime's `run` is safe from several threads.
Legend: N units, C context frames, D embedding width, P horizon.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from poco_rt.errors import InferenceRequestError, UnknownModel

if TYPE_CHECKING:
    from poco_rt.server.bundles import BundleRegistry, LoadedBundle

SERVER_NAME = "poco-rt"
EXTENSIONS = ("binary_tensor_data", "model_repository")  # binary tensors are REST's; gRPC's are always bytes
MODEL_NAME = "poco"
PLATFORM = "onnxruntime_onnx"
DATATYPE = "FP32"  # the only tensor type the network takes or gives
OUTPUT_NAME = "forecast"
FLOAT32_BYTES = 4


class ModelState(enum.StrEnum):
    """A version's state in the model repository index (Triton's and KServe's repository extension)."""

    READY = "READY"


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 where any size is taken (the unit count N)


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclasses.dataclass(frozen=True)
class InputTensor:
    """One input as a transport received it: `data` is raw little-endian bytes, or numbers (flat or nested)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes | Sequence


@dataclasses.dataclass(frozen=True)
class InferResult:
    model_version: str
    forecast: np.ndarray  # (N, P) float32, normalised


@dataclasses.dataclass(frozen=True)
class IndexEntry:
    name: str
    version: str
    state: ModelState


def model_metadata(bundles: BundleRegistry, name: str, version: str = "") -> ModelMetadata:
    loaded = _loaded(bundles, name, version)
    widths = _input_widths(loaded)
    return ModelMetadata(
        name=MODEL_NAME,
        versions=_versions(bundles),
        platform=PLATFORM,
        inputs=tuple(TensorSpec(input_name, DATATYPE, (-1, width)) for input_name, width in widths.items()),
        outputs=(TensorSpec(OUTPUT_NAME, DATATYPE, (-1, loaded.bundle.horizon)),),
    )


def model_ready(bundles: BundleRegistry, name: str, version: str = "") -> bool:
    """Whether `name` (at `version`) can infer now; UnknownModel for a name or version it never serves."""
    _check_name(name)
    if not bundles.started:
        return False
    _loaded(bundles, name, version)
    return True


def repository_index(bundles: BundleRegistry) -> list[IndexEntry]:
    """Every loaded network version of the one model, each ready (a loaded bundle always is)."""
    return [IndexEntry(MODEL_NAME, version, ModelState.READY) for version in _versions(bundles)]


def load(bundles: BundleRegistry, name: str) -> None:
    """The model is loaded while the server runs, so a load of it succeeds with nothing to do (bundles: /v1/bundles)."""
    _loaded(bundles, name, "")


def unload(name: str) -> None:
    """Always refused: the server forecasts with the model until it stops."""
    _check_name(name)
    raise InferenceRequestError(f"model {name!r} is the server's own and stays loaded while it runs; stop the server")


def check_requested_outputs(names: Sequence[str]) -> None:
    unknown = sorted(set(names) - {OUTPUT_NAME})
    if unknown:
        raise InferenceRequestError(f"outputs {unknown} do not exist; the model's one output is {OUTPUT_NAME!r}")


def infer(bundles: BundleRegistry, name: str, version: str, inputs: Sequence[InputTensor]) -> InferResult:
    """The network run once on the two inputs: (N, C) context and (N, D) embeddings -> (N, P) forecast."""
    loaded = _loaded(bundles, name, version)
    widths = _input_widths(loaded)
    given = [tensor.name for tensor in inputs]
    if sorted(given) != sorted(widths):
        raise InferenceRequestError(f"inputs must be exactly {sorted(widths)}, once each; got {sorted(given)}")
    arrays = {tensor.name: _as_array(tensor, widths[tensor.name]) for tensor in inputs}
    context, embeddings = arrays["context"], arrays["unit_embeddings"]
    if context.shape[0] != embeddings.shape[0]:
        raise InferenceRequestError(
            f"context has {context.shape[0]} rows and unit_embeddings {embeddings.shape[0]}; "
            "both must have one row per unit (N)"
        )
    forecast = loaded.engine.forecast_aside(context, embeddings)  # (N, C), (N, D) -> (N, P)
    if not np.isfinite(forecast).all():
        raise InferenceRequestError(
            "the forecast overflowed to NaN or inf: the inputs are normalised values (z-scores, a few units at most), "
            "these are far larger"
        )
    return InferResult(model_version=loaded.version, forecast=forecast)


def _as_array(tensor: InputTensor, width: int) -> np.ndarray:
    """The input as a C-contiguous float32 array of shape [N, width], or what is wrong with it."""
    name, shape = tensor.name, list(tensor.shape)
    if tensor.datatype != DATATYPE:
        raise InferenceRequestError(f"input {name!r} has datatype {tensor.datatype}; send {DATATYPE}")
    if len(shape) != 2 or shape[1] != width or shape[0] < 1:
        raise InferenceRequestError(f"input {name!r} has shape {shape}; it must be [N, {width}] with N >= 1")
    count = math.prod(shape)
    if isinstance(tensor.data, bytes | bytearray | memoryview):
        if len(tensor.data) != count * FLOAT32_BYTES:
            raise InferenceRequestError(
                f"input {name!r} has {len(tensor.data)} bytes; shape {shape} in {DATATYPE} is {count * FLOAT32_BYTES}"
            )
        array = np.frombuffer(tensor.data, dtype="<f4").astype(np.float32)  # native order, and not a view of the body
    else:
        try:
            with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused below
                array = np.asarray(tensor.data, dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise InferenceRequestError(
                f"input {name!r} holds data that is not numbers in a flat or [N, {width}] nested list"
            ) from error
        if array.size != count:
            raise InferenceRequestError(f"input {name!r} has {array.size} values for shape {shape}")
    array = array.reshape(shape)
    if not np.isfinite(array).all():
        raise InferenceRequestError(
            f"input {name!r} holds NaN, inf or values beyond float32's range (+-3.4e38); send finite FP32 values"
        )
    return array


def _input_widths(loaded: LoadedBundle) -> dict[str, int]:
    return {"context": loaded.bundle.context_frames, "unit_embeddings": loaded.bundle.embedding_dim}


def _versions(bundles: BundleRegistry) -> tuple[str, ...]:
    return tuple(sorted({loaded.version for loaded in bundles.all()}))


def _check_name(name: str) -> None:
    if name != MODEL_NAME:
        raise UnknownModel(f"no model {name!r}; this server serves {MODEL_NAME!r}")


def _loaded(bundles: BundleRegistry, name: str, version: str) -> LoadedBundle:
    """The active bundle (no version asked), or a loaded one whose network is `version`."""
    _check_name(name)
    if not version:
        return bundles.active  # NotRunning while the server starts or stops
    for loaded in bundles.all():
        if loaded.version == version:
            return loaded
    raise UnknownModel(f"model {MODEL_NAME!r} has no version {version!r}; loaded: {list(_versions(bundles))}")
