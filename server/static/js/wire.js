// The WebSocket's binary forecast message (docs/protocol.md, server/api/websocket.py): the wire
// message's three parts [topic, header, payload], each after its u32 little-endian length.
// Binary rather than ?format=json: the server sends the bytes it already has, so an open page
// costs it no JSON encoding of N x P numbers per frame.
//
// Forecast header, little-endian: magic "PCRT" (0), version (4), kind = 2 (5), session name
// bytes (6), model version bytes (7), frame index u64 (8), acquisition, received, inferred,
// sent ns i64 (16, 24, 32, 40), N u32 (48), P u32 (52), then the name and the version.

const FORECAST_KIND = 2;
const HEADER_BYTES = 56;

function partsOf(buffer) {
  const view = new DataView(buffer);
  const parts = [];
  for (let offset = 0; offset + 4 <= buffer.byteLength; ) {
    const length = view.getUint32(offset, true);
    parts.push({ at: offset + 4, length });
    offset += 4 + length;
  }
  return parts;
}

/** { frameIndex, units, horizon, modelVersion, values: Float32Array (N * P, unit by unit) } from one message. */
export function decodeForecast(buffer) {
  const parts = partsOf(buffer);
  if (parts.length !== 3) throw new Error(`a forecast has 3 parts, this message ${parts.length}`);
  const [, header, payload] = parts;
  const view = new DataView(buffer, header.at, header.length);
  const magic = String.fromCharCode(...new Uint8Array(buffer, header.at, 4));
  if (header.length < HEADER_BYTES || magic !== "PCRT" || view.getUint8(5) !== FORECAST_KIND) {
    throw new Error("not a poco-rt forecast message");
  }
  const nameBytes = view.getUint8(6);
  const versionBytes = view.getUint8(7);
  const units = view.getUint32(48, true);
  const horizon = view.getUint32(52, true);
  if (payload.length !== units * horizon * 4) throw new Error("forecast payload size differs from N x P float32");
  const version = new Uint8Array(buffer, header.at + HEADER_BYTES + nameBytes, versionBytes);
  return {
    frameIndex: Number(view.getBigUint64(8, true)),
    units,
    horizon,
    modelVersion: String.fromCharCode(...version),
    // The payload need not be 4-byte aligned inside the message, so it is copied out before being read as float32.
    values: new Float32Array(buffer.slice(payload.at, payload.at + payload.length)),
  };
}
