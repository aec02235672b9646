/**
 * Single-message Cap'n Proto framing for message-oriented carriers (WebSocket frames), where the
 * carrier already delimits messages: one frame = segment table + segments, nothing more.
 *
 * Byte streams use capnp's `streamTransport` (an incremental decoder); this file exists because a
 * message carrier must also reject a frame whose length does not match its table exactly, which a
 * stream decoder cannot tell from "more bytes to come".
 *
 * Threading: pure functions, no shared state; any thread (in practice the socket's loop thread).
 */

import { LimitError, ProtocolError } from "@multiprocess-ts/capnp";

/** Limits checked on every incoming frame (the engine checks traversal/nesting on decode). */
export interface FrameLimits {
  maxSegments: number;
  maxMessageBytes: number;
}

/** Same numbers as capnp's DEFAULT_LIMITS: 512 segments, 64 MiB. */
export const DEFAULT_FRAME_LIMITS: FrameLimits = { maxSegments: 512, maxMessageBytes: 64 * 1024 * 1024 };

/** Encode one message (segment list) into one contiguous frame. */
export function encodeSingleFrame(segments: readonly Uint8Array[]): Uint8Array {
  const n = segments.length;
  if (n === 0) throw new RangeError("a Cap'n Proto message has at least one segment");
  const tableWords = Math.ceil((1 + n) / 2); // (n+1) uint32, padded to a word
  let total = tableWords * 8;
  for (const s of segments) {
    if (s.byteLength % 8 !== 0) throw new RangeError("segment length is not a multiple of 8 bytes");
    total += s.byteLength;
  }
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, n - 1, true);
  segments.forEach((s, i) => dv.setUint32(4 + i * 4, s.byteLength / 8, true));
  let off = tableWords * 8;
  for (const s of segments) {
    out.set(s, off);
    off += s.byteLength;
  }
  return out;
}

/**
 * Decode one frame that must hold exactly one message. The returned segments are views into
 * `frame` (the caller hands ownership of `frame` over). Throws {@link LimitError} when a limit is
 * exceeded, {@link ProtocolError} when the frame is malformed.
 */
export function decodeSingleFrame(frame: Uint8Array, limits: FrameLimits = DEFAULT_FRAME_LIMITS): Uint8Array[] {
  if (frame.byteLength < 8) throw new ProtocolError(`frame of ${frame.byteLength} bytes is shorter than a segment table`);
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const n = dv.getUint32(0, true) + 1;
  if (n > limits.maxSegments) throw new LimitError(`message has ${n} segments, limit is ${limits.maxSegments}`);
  const tableBytes = Math.ceil((1 + n) / 2) * 8;
  if (frame.byteLength < tableBytes) throw new ProtocolError("frame is shorter than its segment table");
  let off = tableBytes;
  let body = 0;
  const sizes: number[] = [];
  for (let i = 0; i < n; i++) {
    const bytes = dv.getUint32(4 + i * 4, true) * 8;
    body += bytes;
    if (body > limits.maxMessageBytes) {
      throw new LimitError(`message exceeds ${limits.maxMessageBytes} bytes`);
    }
    sizes.push(bytes);
  }
  if (tableBytes + body !== frame.byteLength) {
    throw new ProtocolError(`frame is ${frame.byteLength} bytes but its segment table says ${tableBytes + body}`);
  }
  const segments: Uint8Array[] = [];
  for (const bytes of sizes) {
    segments.push(frame.subarray(off, off + bytes));
    off += bytes;
  }
  return segments;
}
