/**
 * A transport test kit: a TransportSink that records what it gets, and small self-describing
 * messages, for tests of a Transport implementation on its own (no RPC engine).
 *
 * Threading: the thread that owns the transport.
 */
import { deferred, type Transport, type TransportSink } from "@multiprocess-ts/capnp";

/** A TransportSink that records what it gets, with promises to await the next message and the end. */
export class RecordingSink implements TransportSink {
  readonly messages: Uint8Array[][] = [];
  readonly ended = deferred<Error | undefined>();
  closedCalls = 0;
  private waiters: { n: number; resolve: () => void }[] = [];

  message(segments: Uint8Array[]): void {
    if (this.closedCalls > 0) throw new Error("message after closed");
    this.messages.push(segments);
    this.waiters = this.waiters.filter((w) => {
      if (this.messages.length >= w.n) {
        w.resolve();
        return false;
      }
      return true;
    });
  }

  closed(err?: Error): void {
    this.closedCalls++;
    this.ended.resolve(err);
  }

  /** Resolves once at least `n` messages arrived. */
  waitFor(n: number): Promise<void> {
    if (this.messages.length >= n) return Promise.resolve();
    const d = deferred<void>();
    this.waiters.push({ n, resolve: () => d.resolve() });
    return d.promise;
  }
}

/** A one-segment message whose 8-byte words hold `values` (enough to check identity end to end). */
export function msg(...values: number[]): Uint8Array[] {
  const seg = new Uint8Array(8 * Math.max(1, values.length));
  const dv = new DataView(seg.buffer);
  values.forEach((v, i) => dv.setUint32(i * 8, v, true));
  return [seg];
}

/** The values of a message made by {@link msg}. */
export function msgValues(segments: Uint8Array[]): number[] {
  const out: number[] = [];
  for (const s of segments) {
    const dv = new DataView(s.buffer, s.byteOffset, s.byteLength);
    for (let i = 0; i < s.byteLength; i += 8) out.push(dv.getUint32(i, true));
  }
  return out;
}

/** Starts `t` with a fresh RecordingSink and returns the sink. */
export function startRecording(t: Transport): RecordingSink {
  const sink = new RecordingSink();
  t.start(sink);
  return sink;
}

/**
 * Counts a socket's writes as they reach its handle (the handle's native write calls:
 * `writeBuffer`, `writev` and the string writes; the stream transport writes an idle socket's
 * batch with `writeBuffer` itself, packages/capnp socket-write.ts): how many syscalls-worth of
 * writes a transport made. A socket without a handle yet counts its `_write` / `_writev` calls.
 * Returns the reader of the count.
 */
export function countWrites(socket: object): () => number {
  let writes = 0;
  const handle = (socket as { _handle?: Record<string, unknown> | null })._handle;
  if (handle !== null && typeof handle === "object" && typeof handle["writeBuffer"] === "function") {
    for (const name of ["writeBuffer", "writev", "writeUtf8String", "writeLatin1String", "writeAsciiString", "writeUcs2String"]) {
      const orig = handle[name];
      if (typeof orig !== "function") continue;
      // An own property in front of the prototype's method, for this handle only.
      handle[name] = (...a: unknown[]): unknown => (writes++, (orig as (...x: unknown[]) => unknown).apply(handle, a));
    }
    return () => writes;
  }
  const sock = socket as { _writev: (...a: unknown[]) => unknown; _write: (...a: unknown[]) => unknown };
  const origV = sock._writev.bind(socket);
  const orig = sock._write.bind(socket);
  sock._writev = (...a) => (writes++, origV(...a));
  sock._write = (...a) => (writes++, orig(...a));
  return () => writes;
}
