// A .npy file of C-order little-endian float32 (numpy's format, versions 1 to 3), as
// GET /v1/sessions/{name}/forecast sends it with `Accept: application/x-npy`: the magic
// "\x93NUMPY", the version, the header's length, a Python-dict header, then the values.
// Binary rather than JSON: the server writes the array's bytes as they are, with no per-value work.

/** { shape, values: Float32Array } from the file's bytes. */
export function readFloat32Npy(buffer) {
  const bytes = new Uint8Array(buffer);
  if (String.fromCharCode(...bytes.subarray(1, 6)) !== "NUMPY") throw new Error("not a .npy file");
  const view = new DataView(buffer);
  const major = bytes[6];
  const headerBytes = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const dataAt = (major === 1 ? 10 : 12) + headerBytes; // numpy pads the header to a multiple of 64 bytes
  const header = new TextDecoder().decode(bytes.subarray(dataAt - headerBytes, dataAt));
  if (!header.includes("'descr': '<f4'") || header.includes("'fortran_order': True")) {
    throw new Error(`expected C-order float32, got ${header.trim()}`);
  }
  const shape = header
    .match(/'shape': \(([^)]*)\)/)[1]
    .split(",")
    .filter((size) => size.trim())
    .map(Number);
  return { shape, values: new Float32Array(buffer, dataAt, shape.reduce((a, b) => a * b, 1)) };
}
