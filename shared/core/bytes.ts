/**
 * Byte helpers.
 * @module
 */

/**
 * One `Uint8Array` from an `ArrayBuffer`, a view, or a list of chunks (the shapes a `ws`
 * `message` payload comes in). Views are wrapped without copying; chunk lists are joined.
 */
export function toBytes(data: ArrayBuffer | Uint8Array | readonly Uint8Array[]): Uint8Array {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (Array.isArray(data)) {
    const chunks = data as readonly Uint8Array[];
    const out = new Uint8Array(chunks.reduce((n, b) => n + b.length, 0));
    let at = 0;
    for (const b of chunks) {
      out.set(b, at);
      at += b.length;
    }
    return out;
  }
  const view = data as Uint8Array;
  return new Uint8Array(view.buffer, view.byteOffset, view.length);
}

/** Byte-wise equality. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}
