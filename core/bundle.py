"""The model bundle: what training hands to serving (numpy + json only, never torch).

    BUNDLE/
      bundle.json          format version, C, P, D, frame rate, model config, training data,
                           evaluation scores, versions, and the sha256 of every other file
      model.onnx           session-agnostic: context (N, C) + unit_embeddings (N, D) -> (N, P), N dynamic
      model.int8.onnx      optional: the same network with int8 weights (`poco-rt export --int8`)
      model.batched.onnx   optional (every export since it was added): the same function for S sessions
                           in one call, their units concatenated: context (N, C) + unit_embeddings
                           (N, D) + session_mask (N, S) 0/1 -> (N, P); N and S dynamic
      model.encode.onnx    optional (every export since it was added): model.onnx cut in two where the
      model.decode.onnx    units part: encode takes all N units -> query_maps (L, D) + latent_values
                           (L, D), the frame's decoder maps; decode takes any n units' context (n, C) +
                           unit_embeddings (n, D) + those maps -> their (n, P). The server decodes
                           chunks of units on several threads with them (--engine-threads)
      network.pt           optional (every export since it was added): the torch weights of the
                           network without its embedding tables, for embeddings-only fine-tuning
                           of a new animal in a job worker (the `train` extra); serving never reads it
      sessions/<name>.npz  unit_ids (N,), unit_embeddings (N, D) (unit + session + dataset, summed),
                           mean (N,), std (N,): the normalisation raw frames go through first

A new recording fine-tuned on (embeddings only) adds one `sessions/*.npz` and re-hashes
bundle.json; the network file does not change, so a server can pick the session up live. A server
that fine-tunes a stream itself writes that as a new bundle version beside the old one
(`add_calibration`), so the bundle a stream was opened with stays loadable as it was.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from poco_rt.errors import BundleError, UnknownSession

BUNDLE_FORMAT_VERSION = 1
MANIFEST_FILE = "bundle.json"
MODEL_FILE = "model.onnx"
INT8_MODEL_FILE = "model.int8.onnx"
BATCHED_MODEL_FILE = "model.batched.onnx"
ENCODE_MODEL_FILE = "model.encode.onnx"
DECODE_MODEL_FILE = "model.decode.onnx"
TRAINABLE_NETWORK_FILE = "network.pt"
NETWORK_FILES = (
    MODEL_FILE,
    INT8_MODEL_FILE,
    BATCHED_MODEL_FILE,
    ENCODE_MODEL_FILE,
    DECODE_MODEL_FILE,
    TRAINABLE_NETWORK_FILE,
)
SESSIONS_DIR = "sessions"
SHORT_HASH_CHARS = 12  # the short content hashes that tag forecasts and name bundles
SESSION_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # stream and calibration names, here and on the wire
_SAFE_NAME = re.compile(SESSION_NAME_PATTERN)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_session_name(name: str) -> str:
    if not _SAFE_NAME.fullmatch(name):
        raise ValueError(f"session name {name!r} must be 1-128 of [A-Za-z0-9._-], starting with a letter or digit")
    return name


@dataclasses.dataclass(frozen=True, eq=False)
class SessionCalibration:
    """One recording's unit embeddings and normalisation: the only per-session state a forecast needs."""

    name: str
    unit_ids: tuple[str, ...]
    unit_embeddings: np.ndarray  # (N, D) float32
    mean: np.ndarray  # (N,) float32
    std: np.ndarray  # (N,) float32

    def __post_init__(self) -> None:
        check_session_name(self.name)
        units = len(self.unit_ids)
        for field, array in (("unit_embeddings", self.unit_embeddings), ("mean", self.mean), ("std", self.std)):
            if array.shape[0] != units:
                raise BundleError(f"session {self.name!r}: {field} has {array.shape[0]} rows for {units} units")
        if not (np.all(np.isfinite(self.std)) and np.all(self.std > 0)):
            raise BundleError(f"session {self.name!r}: std must be finite and > 0 for every unit")

    @property
    def num_units(self) -> int:
        return len(self.unit_ids)

    def content_hash(self) -> str:
        """Short sha256 of the arrays: names a calibration that is not (yet) a file of a bundle."""
        digest = hashlib.sha256()
        for array in (self.unit_embeddings, self.mean, self.std):
            digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
        digest.update("\0".join(self.unit_ids).encode())
        return digest.hexdigest()[:SHORT_HASH_CHARS]

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp, unit_ids=np.array(self.unit_ids), unit_embeddings=self.unit_embeddings, mean=self.mean, std=self.std
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> SessionCalibration:
        try:
            with np.load(path, allow_pickle=False) as npz:
                return cls(
                    name=path.stem,
                    unit_ids=tuple(npz["unit_ids"].tolist()),
                    unit_embeddings=np.ascontiguousarray(npz["unit_embeddings"], dtype=np.float32),
                    mean=np.ascontiguousarray(npz["mean"], dtype=np.float32),
                    std=np.ascontiguousarray(npz["std"], dtype=np.float32),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise BundleError(f"{path}: not a session calibration file ({exc})") from exc


@dataclasses.dataclass(frozen=True, eq=False)
class Bundle:
    path: Path
    manifest: dict[str, Any]
    sessions: dict[str, SessionCalibration]

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    def network_file(self, *, int8: bool = False) -> str:
        """The network file to serve; int8 only where the bundle was exported with it."""
        if int8 and INT8_MODEL_FILE not in self.manifest["hashes"]:
            raise BundleError(
                f"{self.path} has no {INT8_MODEL_FILE}; export it with `poco-rt export --int8` or serve fp32"
            )
        return INT8_MODEL_FILE if int8 else MODEL_FILE

    def network_version(self, *, int8: bool = False) -> str:
        """Short content hash of the network file that runs: tags every forecast it makes."""
        return self.manifest["hashes"][self.network_file(int8=int8)][:SHORT_HASH_CHARS]

    @property
    def batched_version(self) -> str | None:
        """Short content hash of model.batched.onnx, None for a bundle exported before it existed. Its
        forecasts are model.onnx's function, so they keep `version` as their tag; this names the file."""
        digest = self.manifest["hashes"].get(BATCHED_MODEL_FILE)
        return None if digest is None else digest[:SHORT_HASH_CHARS]

    @property
    def split(self) -> bool:
        """Whether the bundle has model.onnx cut in two (encode, decode), which lets the server decode
        chunks of units on several threads; a bundle exported before the cut existed has not."""
        hashes = self.manifest["hashes"]
        return ENCODE_MODEL_FILE in hashes and DECODE_MODEL_FILE in hashes

    @property
    def context_frames(self) -> int:
        return int(self.manifest["context_frames"])

    @property
    def horizon(self) -> int:
        return int(self.manifest["horizon"])

    @property
    def embedding_dim(self) -> int:
        return int(self.manifest["embedding_dim"])

    @property
    def version(self) -> str:
        """Short content hash of the network: tags every forecast with the model that made it."""
        return self.manifest["hashes"][MODEL_FILE][:SHORT_HASH_CHARS]

    @property
    def trainable(self) -> bool:
        """Whether the bundle carries the torch weights that fine-tuning a new animal starts from."""
        return TRAINABLE_NETWORK_FILE in self.manifest["hashes"]

    def unseen_unit_embedding(self) -> np.ndarray:
        """(D,) float32: the embedding a unit the bundle has never seen gets, the mean of every learned
        unit's (unit + session + dataset) row. It places a new unit at the centre of the units the
        network was trained on, which is where its conditioning is least surprising to the network."""
        rows = [session.unit_embeddings for session in self.sessions.values()]
        if not rows:
            raise BundleError(
                f"{self.path} has no session, so it has no learned unit embedding to start a new one from"
            )
        return np.concatenate(rows).mean(axis=0).astype(np.float32)

    def calibration_hash(self, name: str) -> str:
        """Short sha256 of one session file, as bundle.json lists it."""
        return self.manifest["hashes"][f"{SESSIONS_DIR}/{name}.npz"][:SHORT_HASH_CHARS]

    def session(self, name: str) -> SessionCalibration:
        try:
            return self.sessions[name]
        except KeyError:
            raise UnknownSession(
                f"bundle {self.path} has no session {name!r}; it has {sorted(self.sessions)}"
            ) from None


def write_bundle(
    path: Path,
    *,
    model_onnx: bytes,
    sessions: list[SessionCalibration],
    manifest: dict[str, Any],
    int8_model_onnx: bytes | None = None,
    batched_model_onnx: bytes | None = None,
    split_model_onnx: tuple[bytes, bytes] | None = None,
    trainable_network: bytes | None = None,
) -> Bundle:
    """Write a complete bundle; bundle.json (with the hashes) is written last, so a crash mid-way
    leaves a directory that `load_bundle` refuses rather than a silently inconsistent one."""
    path.mkdir(parents=True, exist_ok=True)
    (path / SESSIONS_DIR).mkdir(exist_ok=True)
    (path / MODEL_FILE).write_bytes(model_onnx)
    if int8_model_onnx is not None:
        (path / INT8_MODEL_FILE).write_bytes(int8_model_onnx)
    if batched_model_onnx is not None:
        (path / BATCHED_MODEL_FILE).write_bytes(batched_model_onnx)
    if split_model_onnx is not None:
        (path / ENCODE_MODEL_FILE).write_bytes(split_model_onnx[0])
        (path / DECODE_MODEL_FILE).write_bytes(split_model_onnx[1])
    if trainable_network is not None:
        (path / TRAINABLE_NETWORK_FILE).write_bytes(trainable_network)
    for session in sessions:
        session.save(path / SESSIONS_DIR / f"{session.name}.npz")
    return rewrite_manifest(path, manifest)


def rewrite_manifest(path: Path, manifest: dict[str, Any]) -> Bundle:
    """Re-hash the bundle's files and write bundle.json: after adding a fine-tuned session, say."""
    networks = [path / name for name in NETWORK_FILES if (path / name).exists()]
    session_files = sorted((path / SESSIONS_DIR).glob("*.npz"))
    hashes = {str(f.relative_to(path)): sha256_of(f) for f in [*networks, *session_files]}
    manifest = manifest | {
        "format_version": BUNDLE_FORMAT_VERSION,
        "hashes": hashes,
        "sessions": sorted(f.stem for f in session_files),
    }
    tmp = path / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, path / MANIFEST_FILE)
    return load_bundle(path)


def add_calibration(bundle: Bundle, calibration: SessionCalibration, out: Path) -> Bundle:
    """A new bundle version at `out`: `bundle`'s files (hard-linked where the filesystem allows) plus
    `calibration` as one more session. Its content hash differs, the network does not, and `bundle`
    itself is left as it was, so a server can keep both loaded and move one stream between them."""
    if calibration.name in bundle.sessions:
        raise BundleError(f"{bundle.path} already has a session {calibration.name!r}")
    (out / SESSIONS_DIR).mkdir(parents=True, exist_ok=True)
    for relative in bundle.manifest["hashes"]:
        source, target = bundle.path / relative, out / relative
        target.unlink(missing_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    calibration.save(out / SESSIONS_DIR / f"{calibration.name}.npz")
    return rewrite_manifest(out, bundle.manifest)


def load_bundle(path: str | Path) -> Bundle:
    """Read and verify a bundle: every file present and matching its hash, every session the right width.

    Anything else in bundle.json than `rewrite_manifest` writes is refused with a BundleError naming it:
    a manifest that is not a UTF-8 JSON object, a missing or mistyped field, a listed file outside the
    bundle's own layout (a path that climbs out of it, say), a session name that is not a plain name."""
    path = Path(path)
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleError(f"{path}: not a model bundle (no {MANIFEST_FILE})")
    try:
        manifest = json.loads(manifest_path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BundleError(f"{manifest_path}: not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{manifest_path}: invalid JSON ({exc})") from exc
    except OSError as exc:
        raise BundleError(f"{manifest_path}: cannot be read ({exc.strerror or exc})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{manifest_path}: must hold a JSON object, not a {type(manifest).__name__}")
    if manifest.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format {manifest.get('format_version')!r}, this poco-rt reads {BUNDLE_FORMAT_VERSION}"
        )
    hashes, session_names = _checked_layout(manifest_path, manifest)
    for relative, expected in hashes.items():
        file = path / relative
        if not file.is_file():
            raise BundleError(f"{path}: {relative} is listed in {MANIFEST_FILE} but missing")
        if sha256_of(file) != expected:
            raise BundleError(f"{path}: {relative} does not match its sha256 in {MANIFEST_FILE} (corrupt or edited)")
    sessions = {}
    for name in session_names:
        session = SessionCalibration.load(path / SESSIONS_DIR / f"{name}.npz")
        if session.unit_embeddings.shape[1] != manifest["embedding_dim"]:
            raise BundleError(f"{path}: session {name!r} embeddings are not {manifest['embedding_dim']} wide")
        sessions[name] = session
    return Bundle(path=path, manifest=manifest, sessions=sessions)


def _checked_layout(manifest_path: Path, manifest: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """bundle.json's `hashes` and `sessions`, once every field the server reads has its type and every
    listed file is one of a bundle's own (so a hash check never reads outside the bundle)."""
    for field in ("context_frames", "horizon", "embedding_dim"):
        value = manifest.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BundleError(f"{manifest_path}: {field} must be a positive integer, not {value!r}")
    hashes, session_names = manifest.get("hashes"), manifest.get("sessions")
    if not isinstance(hashes, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in hashes.items()
    ):
        raise BundleError(f"{manifest_path}: hashes must be an object of file -> sha256, not {type(hashes).__name__}")
    if not isinstance(session_names, list) or not all(isinstance(name, str) for name in session_names):
        raise BundleError(f"{manifest_path}: sessions must be a list of names, not {type(session_names).__name__}")
    for name in session_names:
        if not _SAFE_NAME.fullmatch(name):
            raise BundleError(
                f"{manifest_path}: session name {name!r} must be 1-128 of [A-Za-z0-9._-], starting with a letter "
                "or digit"
            )
        if f"{SESSIONS_DIR}/{name}.npz" not in hashes:
            raise BundleError(f"{manifest_path}: session {name!r} has no sha256 in hashes")
    networks = NETWORK_FILES
    for relative in hashes:
        folder, _, file = relative.rpartition("/")
        is_session = (
            folder == SESSIONS_DIR and file.endswith(".npz") and _SAFE_NAME.fullmatch(file.removesuffix(".npz"))
        )
        if relative not in networks and not is_session:
            raise BundleError(
                f"{manifest_path}: hashes lists {relative!r}, which is not a bundle file ({', '.join(networks)} "
                f"or {SESSIONS_DIR}/NAME.npz)"
            )
    if MODEL_FILE not in hashes:
        raise BundleError(f"{manifest_path}: hashes has no {MODEL_FILE}, the network every bundle holds")
    return hashes, session_names
