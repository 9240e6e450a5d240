"""onnxruntime inference of a model bundle: raw frames in, raw-unit forecasts out, no torch.

The engine owns one InferenceSession for the bundle's session-agnostic network. A forecast for a
session normalises its (C, N) context with that session's calibration, runs the network once with
the session's unit embeddings, and maps the (N, P) result back to raw units. The server's hot
path keeps its streams' contexts normalised and forecasts them with `forecast_streams`, the one
route into inference for one stream or several: the engine decides per call whether they share a
batched call, and yields each stream's normalised (N, P) as soon as the call it waits for returns.

`session.run` is used rather than IOBinding into preallocated outputs: IOBinding measured the same
(median run vs IOBinding, the tests' tiny bundle, one thread on a busy 2-core machine: N = 128
0.27 vs 0.28 ms; 1000 1.45 vs 1.49 ms; 10000 15.1 vs 15.1 ms), and
the server needs a fresh (N, P) array per forecast anyway, since REST and WebSocket readers hold
it after the next frame arrives. onnxruntime's `run` is safe to call from several threads at
once, which the stateless REST forecast relies on.

Batching: where the bundle has model.batched.onnx (models/batched.py), `forecast_batch` runs
several sessions' forecasts in one call, their units concatenated, for the price of one call's
fixed cost (~0.55 ms) instead of one per session; each session's rows equal its own call to float
rounding; `forecast_streams` keeps the batches it builds in the engine's `BatchCache`. The batched
graph's dense session mask adds work per unit that grows with the number of sessions, so batching
pays only while the batch is small: `worth_batching` says where, from bench/batching.py's
measurement. fp32 only: int8 quantises each call's activations with one scale for the whole
input, so a batch would change every session's result.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection, Hashable, Iterator, Sequence

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from poco_rt.bundle import BATCHED_MODEL_FILE, DECODE_MODEL_FILE, ENCODE_MODEL_FILE, Bundle, SessionCalibration
from poco_rt.errors import BundleError
from poco_rt.server.settings import EngineDevice
from poco_rt.server.split_network import SplitNetwork

NETWORK_INPUTS = frozenset({"context", "unit_embeddings"})
BATCHED_INPUTS = frozenset({"context", "unit_embeddings", "session_mask"})
DECODE_INPUTS = frozenset({"context", "unit_embeddings", "query_maps", "latent_values"})
SPECIAL_INPUTS = {BATCHED_MODEL_FILE: BATCHED_INPUTS, DECODE_MODEL_FILE: DECODE_INPUTS}  # the others: NETWORK_INPUTS
# What onnxruntime raises for a file it cannot load as a model (its classes derive from Exception only).
ONNX_LOAD_ERRORS = (
    ort_errors.Fail,
    ort_errors.InvalidArgument,
    ort_errors.InvalidGraph,
    ort_errors.InvalidProtobuf,
    ort_errors.NoSuchFile,
    ort_errors.NotImplemented,
    ort_errors.RuntimeException,
)

# The sessions' units together up to which one batched call was faster than a call per session in
# bench/batching.py (bench/README.md §13, quiet machine: 0.86-0.93x up to 1,000 units; 1.02-1.39x from
# 2,000 up, where a call's saved ~0.55 ms is small against the mask's work per unit and extra session).
BATCH_MAX_UNITS = 1024
MAX_CACHED_BATCHES = 8  # batch compositions kept (sessions at different rates make a few); oldest dropped
PROVIDERS = {
    EngineDevice.CPU: ["CPUExecutionProvider"],
    EngineDevice.CUDA: ["CUDAExecutionProvider", "CPUExecutionProvider"],  # CPU for ops CUDA lacks
}


def providers_for(device: EngineDevice) -> list[str]:
    """The execution providers for `device`; a clear ValueError where this onnxruntime lacks them, so
    that a server asked for the GPU refuses to start rather than run silently on the CPU."""
    providers = PROVIDERS[device]
    available = ort.get_available_providers()
    if providers[0] not in available:
        raise ValueError(
            f"engine_device={device.value} needs onnxruntime's {providers[0]}, but this onnxruntime "
            f"({ort.__version__}) has only {available}; install onnxruntime-gpu (matching the CUDA on this machine) "
            "or use engine_device=cpu"
        )
    return providers


def session_options(*, threads: int = 1) -> ort.SessionOptions:
    """Threads stay idle rather than spin between frames: a rig PC runs acquisition beside us."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def inference_session(
    bundle: Bundle, network_file: str, *, threads: int = 1, device: EngineDevice = EngineDevice.CPU
) -> ort.InferenceSession:
    """The network file as an onnxruntime session; a BundleError naming the file if it is not one the engine can run.

    The hash check proves the file is the one exported, not that it is a network: a bundle re-hashed
    over a broken or foreign file passes it, so the file's loading and its inputs are checked here."""
    options = session_options(threads=threads)
    file = bundle.path / network_file
    try:
        session = ort.InferenceSession(str(file), options, providers=providers_for(device))
    except ONNX_LOAD_ERRORS as error:
        raise BundleError(f"{file}: onnxruntime cannot load it as a network ({error})") from None
    inputs = {node.name for node in session.get_inputs()}
    expected = SPECIAL_INPUTS.get(network_file, NETWORK_INPUTS)
    if inputs != expected:
        raise BundleError(f"{file}: the network's inputs are {sorted(inputs)}, not {sorted(expected)}")
    return session


@dataclasses.dataclass(frozen=True, eq=False)
class InferenceBatch:
    """Several sessions' inputs to one batched network call.

    What stays fixed while a batch's sessions do: their embeddings concatenated, the session mask,
    where each session's rows are, and a context buffer the sessions write their rows into before
    each call. Owned by one thread (the ingest thread), since the context buffer is reused."""

    unit_embeddings: np.ndarray  # (N, D) float32, session 0's rows first
    session_mask: np.ndarray  # (N, S) float32: 1 where unit i belongs to session s, else 0
    bounds: tuple[int, ...]  # S + 1 row offsets: session s is rows bounds[s]:bounds[s + 1]
    context: np.ndarray  # (N, C) float32, overwritten by every call's sessions

    @classmethod
    def of(cls, unit_embeddings: Sequence[np.ndarray], *, context_frames: int) -> InferenceBatch:
        sizes = [len(rows) for rows in unit_embeddings]
        mask = np.zeros((sum(sizes), len(sizes)), dtype=np.float32)
        mask[np.arange(sum(sizes)), np.repeat(np.arange(len(sizes)), sizes)] = 1.0
        bounds = tuple(np.cumsum([0, *sizes]).tolist())
        return cls(
            unit_embeddings=np.concatenate(unit_embeddings).astype(np.float32, copy=False),
            session_mask=mask,
            bounds=bounds,
            context=np.empty((bounds[-1], context_frames), dtype=np.float32),
        )

    def rows(self, index: int) -> slice:
        return slice(self.bounds[index], self.bounds[index + 1])


@dataclasses.dataclass(frozen=True, slots=True)
class StreamInput:
    """One stream's part in `Engine.forecast_streams`, in terms the engine knows (no server session types)."""

    key: Hashable  # what the batch cache knows the stream's embeddings by: one key, one set of embeddings
    unit_embeddings: np.ndarray  # (N, D) float32
    context_into: Callable[[np.ndarray], object]  # writes the stream's normalised (N, C) context into its argument


@dataclasses.dataclass(frozen=True, slots=True)
class StreamForecast:
    """One stream's result from `Engine.forecast_streams`."""

    index: int  # the stream's position in the sequence the call was given
    values: np.ndarray  # (N, P) normalised, fresh from this call (a batch's rows of its output): the caller's to keep
    infer_s: float  # what it waited for: its own context and network call, or the whole batched call's
    inferred_ns: int  # time.time_ns() when that network call returned


class BatchCache:
    """The InferenceBatch of each recent composition of streams, so that one seen again reuses its
    concatenated embeddings, mask and context buffer instead of building them for every call.

    A composition is the set of its streams' keys, whatever order they come in, so a caller may give
    its streams in the order their frames arrived. Bounded: at most `limit` compositions, the oldest
    dropped, since sessions at different rates make a few and swaps, openings and closings make new
    ones. An engine owns its cache, which holds only the keys of streams that engine forecast and
    goes when the engine goes: it never keeps an unloaded bundle alive, so the batches of closed or
    swapped streams need no pruning and simply age out (small: a batch holds at most BATCH_MAX_UNITS
    units).
    """

    def __init__(self, *, context_frames: int, limit: int = MAX_CACHED_BATCHES) -> None:
        self._context_frames = context_frames
        self._limit = limit
        self._batches: dict[frozenset[Hashable], tuple[InferenceBatch, dict[Hashable, int]]] = {}

    def __len__(self) -> int:
        return len(self._batches)

    def batch_for(self, streams: Sequence[StreamInput]) -> tuple[InferenceBatch, list[slice]]:
        """The batch of these streams, cached or new, and each stream's rows in it, in the streams' order."""
        keys = [stream.key for stream in streams]
        composition = frozenset(keys)
        if len(composition) != len(keys):
            raise ValueError(f"{len(keys)} streams share {len(composition)} keys: each stream needs its own")
        cached = self._batches.get(composition)
        if cached is None:
            cached = self._build(streams)
            self._keep(composition, cached)
        batch, positions = cached
        return batch, [batch.rows(positions[key]) for key in keys]

    def _build(self, streams: Sequence[StreamInput]) -> tuple[InferenceBatch, dict[Hashable, int]]:
        batch = InferenceBatch.of([stream.unit_embeddings for stream in streams], context_frames=self._context_frames)
        return batch, {stream.key: index for index, stream in enumerate(streams)}

    def _keep(self, composition: frozenset[Hashable], cached: tuple[InferenceBatch, dict[Hashable, int]]) -> None:
        if len(self._batches) >= self._limit:
            del self._batches[next(iter(self._batches))]
        self._batches[composition] = cached


class Engine:
    """A bundle's network in onnxruntime, for every stream of that bundle; see the module's docstring.

    `threads` > 1 runs a forecast on that many threads: split by units (server/split_network.py)
    where the bundle has the split graphs and runs fp32 on the CPU, else as onnxruntime's intra-op
    threads. The split's helper threads keep to `helper_cores`."""

    def __init__(
        self,
        bundle: Bundle,
        *,
        threads: int = 1,
        device: EngineDevice = EngineDevice.CPU,
        int8: bool = False,
        helper_cores: Collection[int] = (),
    ) -> None:
        self.bundle = bundle
        self.version = bundle.network_version(int8=int8)  # what forecasts are tagged with, batched or not
        split = threads > 1 and bundle.split and not int8 and device is EngineDevice.CPU
        network_threads = 1 if split else threads
        self.session = inference_session(bundle, bundle.network_file(int8=int8), threads=network_threads, device=device)
        self.split_network = (
            SplitNetwork(
                whole=self.session,
                encode=inference_session(bundle, ENCODE_MODEL_FILE),
                decode=inference_session(bundle, DECODE_MODEL_FILE),
                horizon=bundle.horizon,
                threads=threads,
                helper_cores=helper_cores,
            )
            if split
            else None
        )
        self.batched_session = (
            inference_session(bundle, BATCHED_MODEL_FILE, threads=threads, device=device)
            if bundle.batched_version is not None and not int8
            else None
        )
        self._batches = BatchCache(context_frames=bundle.context_frames)
        self._context = np.empty((0, bundle.context_frames), dtype=np.float32)  # a stream forecast alone writes here
        self._warm_unit_counts: set[int] = set()

    def worth_batching(self, *, sessions: int, total_units: int) -> bool:
        """Whether one batched call beats a call per session (bench/batching.py, bench/README.md §13)."""
        return self.batched_session is not None and sessions > 1 and total_units <= BATCH_MAX_UNITS

    def forecast_streams(self, streams: Sequence[StreamInput]) -> Iterator[StreamForecast]:
        """Each stream's normalised (N, P) forecast from the context it writes: all in one batched call where
        `worth_batching` says it pays, else a call per stream, each yielded as soon as its own call returns
        so that the caller can publish it before the next stream's call runs.

        One thread at a time (the server's ingest thread): the cached batches' context buffers, and the
        one a stream forecast alone writes into, are reused from call to call."""
        total_units = sum(len(stream.unit_embeddings) for stream in streams)
        if self.worth_batching(sessions=len(streams), total_units=total_units):
            yield from self._forecast_together(streams)
        else:
            for index, stream in enumerate(streams):
                yield self._forecast_alone(index, stream)

    def _forecast_together(self, streams: Sequence[StreamInput]) -> list[StreamForecast]:
        """One batched call; every stream's infer time is the whole call's, since each waited for all of it."""
        started = time.perf_counter()
        batch, rows = self._batches.batch_for(streams)
        for stream, stream_rows in zip(streams, rows, strict=True):
            stream.context_into(batch.context[stream_rows])
        values = self.forecast_batch(batch)  # (sum of N, P)
        inferred_ns, infer_s = time.time_ns(), time.perf_counter() - started
        return [
            StreamForecast(index, values[stream_rows], infer_s, inferred_ns) for index, stream_rows in enumerate(rows)
        ]

    def _forecast_alone(self, index: int, stream: StreamInput) -> StreamForecast:
        started = time.perf_counter()
        context = self._context_rows(len(stream.unit_embeddings))
        stream.context_into(context)
        values = self.forecast_normalised(context, stream.unit_embeddings)
        inferred_ns, infer_s = time.time_ns(), time.perf_counter() - started
        return StreamForecast(index, values, infer_s, inferred_ns)

    def _context_rows(self, units: int) -> np.ndarray:
        """A (units, C) buffer for one stream's context: the first rows of one kept at the largest stream's size."""
        if len(self._context) < units:
            self._context = np.empty((units, self.bundle.context_frames), dtype=np.float32)
        return self._context[:units]

    def forecast_batch(self, batch: InferenceBatch) -> np.ndarray:
        """batch.context (N, C) as the sessions wrote it -> (N, P) normalised, for all of them at once."""
        if self.batched_session is None:
            raise ValueError(
                f"{self.bundle.path} has no {BATCHED_MODEL_FILE}, or the engine serves int8; "
                "call forecast_normalised per session (worth_batching says so)"
            )
        inputs = {
            "context": batch.context,
            "unit_embeddings": batch.unit_embeddings,
            "session_mask": batch.session_mask,
        }
        return self.batched_session.run(None, inputs)[0]

    def forecast_normalised(self, context: np.ndarray, unit_embeddings: np.ndarray) -> np.ndarray:
        """context (N, C) and unit_embeddings (N, D), float32 -> (N, P) in normalised units: the frame path's
        route, split across cores where the engine is split."""
        if self.split_network is not None:
            return self.split_network.forecast(context, unit_embeddings)
        return self.forecast_aside(context, unit_embeddings)

    def forecast_aside(self, context: np.ndarray, unit_embeddings: np.ndarray) -> np.ndarray:
        """The same forecast for a request off the frame path (REST, the inference protocol): the whole
        network on the calling thread, never the split's helpers, where a request's chunks would queue
        ahead of the next frame's."""
        return self.session.run(None, {"context": context, "unit_embeddings": unit_embeddings})[0]

    def forecast(self, session_name: str, frames: np.ndarray) -> np.ndarray:
        """frames (C, N) raw, oldest first -> (N, P) raw forecast of the next P frames (off the frame path)."""
        return self.forecast_with(self.bundle.session(session_name), frames)

    def forecast_with(self, calibration: SessionCalibration, frames: np.ndarray) -> np.ndarray:
        """`forecast` with a calibration of any bundle this engine's network runs (the server shares one engine
        among the versions of a bundle that differ only in their calibrations: bundles.py)."""
        context = ((frames - calibration.mean) / calibration.std).T.astype(np.float32, copy=False)
        normalised = self.forecast_aside(np.ascontiguousarray(context), calibration.unit_embeddings)
        return normalised * calibration.std[:, None] + calibration.mean[:, None]

    def warm_up(self, unit_embeddings: np.ndarray) -> None:
        """One throwaway run at a unit count not run before, so the first real frame does not pay onnxruntime's
        first-run cost. Once per count: a swapped-in calibration of the same animal needs none, and skipping it
        keeps a whole forecast's work off the cores while the stream it joins is serving."""
        if unit_embeddings.shape[0] in self._warm_unit_counts:
            return
        context = np.zeros((unit_embeddings.shape[0], self.bundle.context_frames), dtype=np.float32)
        self.forecast_normalised(context, unit_embeddings)
        if self.batched_session is not None:
            batch = InferenceBatch.of([unit_embeddings], context_frames=self.bundle.context_frames)
            batch.context.fill(0.0)
            self.forecast_batch(batch)
        self._warm_unit_counts.add(unit_embeddings.shape[0])
