"""The Open Inference Protocol's binary tensor data extension over HTTP: raw tensor bytes after the JSON.

As Triton specifies it (https://github.com/triton-inference-server/server/blob/main/docs/protocol/
extension_binary_data.md), and as its clients send by default: the `Inference-Header-Content-Length`
header gives the length of the JSON that opens the body; each input whose `parameters` hold
`binary_data_size` has no `data` and takes that many bytes, in input order, from what follows the
JSON. A response holds an output as bytes when its request asked (`binary_data` on the requested
output, or `binary_data_output` on the whole request), and then carries the same header. FP32
bytes are little-endian, row-major.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from fastapi import Response

from poco_rt.errors import InferenceRequestError

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_MEDIA_TYPE = "application/octet-stream"
_DIGITS = re.compile(r"\d{1,15}")


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The body's JSON and the binary data after it (none without the header)."""
    if header_length is None:
        return body, b""
    if not _DIGITS.fullmatch(header_length.strip()):
        raise InferenceRequestError(
            f"{HEADER_LENGTH} is {header_length[:40]!r}; it must be the byte length of the body's JSON"
        )
    length = int(header_length)
    if length > len(body):
        raise InferenceRequestError(f"{HEADER_LENGTH} is {length} but the body has only {len(body)} bytes")
    return body[:length], body[length:]


def binary_data_size(parameters: dict[str, Any] | None, name: str) -> int | None:
    """An input's `binary_data_size` parameter (None: its data is in the JSON)."""
    size = (parameters or {}).get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InferenceRequestError(f"input {name!r} has binary_data_size {size!r}; it must be a byte count >= 0")
    return size


def take_binary_data(sizes: Sequence[int | None], binary: bytes) -> list[bytes | None]:
    """Each input's bytes (None for an input with JSON data), cut from `binary` in input order."""
    needed = sum(size for size in sizes if size is not None)
    if needed != len(binary):
        raise InferenceRequestError(
            f"the inputs' binary_data_size add up to {needed} bytes, but {len(binary)} bytes follow the JSON "
            f"({HEADER_LENGTH} gives where the JSON ends)"
        )
    pieces: list[bytes | None] = []
    offset = 0
    for size in sizes:
        if size is None:
            pieces.append(None)
            continue
        pieces.append(binary[offset : offset + size])
        offset += size
    return pieces


def binary_response(header: dict[str, Any], data: bytes) -> Response:
    """The JSON header, then the outputs' bytes (in the header's output order)."""
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    return Response(
        content=header_bytes + data,
        media_type=BINARY_MEDIA_TYPE,
        headers={HEADER_LENGTH: str(len(header_bytes))},
    )
