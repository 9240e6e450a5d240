"""Export a trained POCO run to a model bundle that onnxruntime serves without torch."""

from __future__ import annotations

import io
import logging
import re
import statistics
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import poco_rt
from poco_rt.bundle import SESSIONS_DIR, Bundle, SessionCalibration, load_bundle, rewrite_manifest, write_bundle
from poco_rt.models.batched import BatchedForecast
from poco_rt.models.config import ModelKind
from poco_rt.models.folded import DecoderMaps, FoldedForecast, UnitForecast
from poco_rt.models.poco import Poco
from poco_rt.models.run_directory import RunDirectory
from poco_rt.models.training import load_model

logger = logging.getLogger(__name__)
ONNX_OPSET = 18
MAX_EXPORT_UNITS = 1_000_000


class SessionAgnosticForecast(nn.Module):
    """One frame's context (N, C) and unit embeddings (N, D) -> (N, P), as Poco.forecast computes it."""

    def __init__(self, model: Poco) -> None:
        super().__init__()
        self.model = model

    def forward(self, context: Tensor, unit_embeddings: Tensor) -> Tensor:
        return self.model.forecast(context[None], unit_embeddings)[0]  # (1, N, C) -> (N, P)


def onnx_bytes(model: Poco, *, folded: bool = True) -> bytes:
    """model.onnx: context (N, C) and unit_embeddings (N, D) -> forecast (N, P), N dynamic.

    `folded` (the default) exports models/folded.py's FoldedForecast, the same function at about
    two thirds of the work; `folded=False` the network as written, for the speed benchmark.
    """
    model = model.eval()
    wrapper = FoldedForecast(model) if folded else SessionAgnosticForecast(model)
    units = torch.export.Dim("units", min=1, max=MAX_EXPORT_UNITS)
    example = (torch.zeros(7, model.config.context_frames), torch.zeros(7, model.config.dim))
    return exported_onnx(wrapper, example, {"context": {0: units}, "unit_embeddings": {0: units}})


def batched_onnx_bytes(model: Poco) -> bytes:
    """model.batched.onnx: context (N, C), unit_embeddings (N, D) and session_mask (N, S) 0/1 ->
    forecast (N, P), the S sessions' units concatenated (models/batched.py); N and S dynamic."""
    model = model.eval()
    units = torch.export.Dim("units", min=1, max=MAX_EXPORT_UNITS)
    sessions = torch.export.Dim("sessions", min=1, max=MAX_EXPORT_UNITS)
    mask = torch.zeros(7, 2)  # two sessions in the example, so that S is not specialised to 1
    mask[:3, 0] = mask[3:, 1] = 1.0
    example = (torch.zeros(7, model.config.context_frames), torch.zeros(7, model.config.dim), mask)
    shapes = {"context": {0: units}, "unit_embeddings": {0: units}, "session_mask": {0: units, 1: sessions}}
    return exported_onnx(BatchedForecast(model), example, shapes)


def split_onnx_bytes(model: Poco) -> tuple[bytes, bytes]:
    """model.encode.onnx and model.decode.onnx: model.onnx's function cut where the per-unit work starts.

    encode: context (N, C) + unit_embeddings (N, D) -> query_maps (L, D), latent_values (L, D);
    decode: context (n, C) + unit_embeddings (n, D) + those two -> forecast (n, P), for any n of the N."""
    model = model.eval()
    units = torch.export.Dim("units", min=1, max=MAX_EXPORT_UNITS)
    config = model.config
    context, embeddings = torch.zeros(7, config.context_frames), torch.zeros(7, config.dim)
    # Two tensors, not one passed twice: the exporter would make a single graph input of an example given twice.
    query_maps, latent_values = torch.zeros(config.num_latents, config.dim), torch.zeros(config.num_latents, config.dim)
    shapes = {"context": {0: units}, "unit_embeddings": {0: units}}
    encode = exported_onnx(DecoderMaps(model), (context, embeddings), shapes, outputs=("query_maps", "latent_values"))
    decode = exported_onnx(
        UnitForecast(model),
        (context, embeddings, query_maps, latent_values),
        shapes | {"query_maps": {}, "latent_values": {}},
    )
    return encode, decode


def exported_onnx(
    wrapper: nn.Module,
    example: tuple[Tensor, ...],
    dynamic_shapes: dict[str, dict[int, Any]],
    *,
    outputs: tuple[str, ...] = ("forecast",),
) -> bytes:
    """The dynamo exporter, inputs named as `dynamic_shapes` lists them, outputs as `outputs`; constant
    folding and shape inference included."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's own deprecation chatter, not ours
        program = torch.onnx.export(
            wrapper,
            example,
            input_names=list(dynamic_shapes),
            output_names=list(outputs),
            dynamic_shapes=dynamic_shapes,
            opset_version=ONNX_OPSET,
            dynamo=True,
            verbose=False,
            report=False,
        )
    program.save(buffer)
    return without_debug_metadata(buffer.getvalue())


def without_debug_metadata(model_onnx: bytes) -> bytes:
    """The model without the exporter's per-node debugging records (stack traces with the exporting
    machine's absolute paths, FX node names, class hierarchies): a bundle holds the network, not
    where it was built. The graph, its weights and its function are untouched."""
    import onnx

    model = onnx.load_from_string(model_onnx)
    nodes = [*model.graph.node, *(node for function in model.functions for node in function.node)]
    for node in nodes:
        del node.metadata_props[:]
        node.doc_string = ""
    model.graph.doc_string = ""
    return model.SerializeToString()


def quantized_onnx(model_onnx: bytes) -> bytes:
    """onnxruntime's dynamic int8 quantisation of the MatMul weights (activations quantised per call)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "model.onnx", Path(folder) / "model.int8.onnx"
        source.write_bytes(model_onnx)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
        return target.read_bytes()


EMBEDDING_TABLES = ("unit_embedding.", "session_embedding.", "dataset_embedding.")


def trainable_network_bytes(model: Poco) -> bytes:
    """network.pt: the network's torch weights without its embedding tables (which belong to the
    sessions it was trained on), for fine-tuning a new animal's embeddings in a job worker."""
    state = {name: tensor for name, tensor in model.state_dict().items() if not name.startswith(EMBEDDING_TABLES)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def bundle_session_name(dataset: str, session: str, *, taken: set[str]) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", session).lstrip("._-") or "session"
    if name in taken:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{dataset}-{session}")
    return name


def session_calibrations(
    run: RunDirectory, model: Poco, *, indices: list[int], taken: set[str]
) -> list[SessionCalibration]:
    calibration = run.calibration()
    sessions = []
    with torch.no_grad():
        for index in indices:
            unit_ids, normalizer = calibration[index]
            spec = run.layout.sessions[index]
            name = bundle_session_name(spec.dataset, spec.session, taken=taken)
            taken.add(name)
            embeddings = model.session_unit_embeddings(index).numpy().astype(np.float32)
            sessions.append(SessionCalibration(name, unit_ids, embeddings, normalizer.mean, normalizer.std))
    return sessions


def add_sessions_to_bundle(run_path: str | Path, bundle_path: str | Path) -> Bundle:
    """Write an embeddings-only fine-tune's new sessions into the bundle its source was exported
    to; model.onnx is untouched, so a server serving the bundle can load them live."""
    run = RunDirectory(run_path)
    manifest = run.manifest()
    if manifest.get("finetune_mode") != "embeddings":
        raise ValueError(f"{run.path} is not an embeddings-only fine-tune; export it as a new bundle instead")
    bundle = load_bundle(bundle_path)
    model = load_model(run)
    new = list(range(manifest["first_new_session"], len(run.layout.sessions)))
    sessions = session_calibrations(run, model, indices=new, taken=set(bundle.sessions))
    for session in sessions:
        session.save(bundle.path / SESSIONS_DIR / f"{session.name}.npz")
    return rewrite_manifest(bundle.path, bundle.manifest)


def export_bundle(
    run_path: str | Path, out: str | Path, *, evaluation: dict[str, Any] | None = None, int8: bool = False
) -> Bundle:
    """The run's network (folded), its batched form (model.batched.onnx, several sessions per call), the
    same network cut in two (model.encode.onnx, model.decode.onnx: chunks of units on several threads) and
    every session's calibration; `int8` adds model.int8.onnx, which a server serves with
    --engine-int8 (check its score first: bench/int8_score.py). The batched graph stays fp32: int8's
    activations are quantised per call with one scale for the whole input, so a batch would change
    each session's result."""
    run = RunDirectory(run_path)
    if run.model_config.kind is not ModelKind.POCO:
        raise ValueError(
            f"{run.path} is a {run.model_config.kind.value} run; bundles serve POCO models "
            "(baselines are for evaluation only)"
        )
    model = load_model(run)
    sessions = session_calibrations(run, model, indices=list(run.calibration()), taken=set())
    manifest = run.manifest()
    frame_rates = manifest.get("frame_rates_hz", [])
    bundle_manifest = {
        "context_frames": model.config.context_frames,
        "horizon": model.config.horizon,
        "embedding_dim": model.config.dim,
        "frame_rate_hz": statistics.median(frame_rates) if frame_rates else None,
        "model": model.config.to_dict(),
        "training": {
            "sources": manifest["sources"],
            "sessions": [f"{s.dataset}/{s.session} ({s.num_units} units)" for s in run.layout.sessions],
            "train": manifest["train"],
            "best_step": manifest.get("best_step"),
            "best_validation_loss": manifest.get("best_validation_loss"),
        },
        "evaluation": evaluation,
        "versions": {"poco_rt": poco_rt.__version__, "torch": torch.__version__, "onnx_opset": ONNX_OPSET},
    }
    logger.info("exporting %s (%d sessions) to %s", run.path, len(sessions), out)
    network = onnx_bytes(model)
    return write_bundle(
        Path(out),
        model_onnx=network,
        sessions=sessions,
        manifest=bundle_manifest,
        int8_model_onnx=quantized_onnx(network) if int8 else None,
        batched_model_onnx=batched_onnx_bytes(model),
        split_model_onnx=split_onnx_bytes(model),
        trainable_network=trainable_network_bytes(model),
    )
