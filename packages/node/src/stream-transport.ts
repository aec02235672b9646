/**
 * A {@link Transport} over any Node `Duplex` carrying the Cap'n Proto stream framing (sockets,
 * socketpairs, pipes), using capnp's `encodeFrame`/`FrameDecoder`.
 *
 * TODO(cleanup): contracts.md §1 puts `streamTransport` in @multiprocess-ts/capnp. It had not
 * landed when this package needed it, so this is the node-side implementation of the same
 * contract; switch `connect.ts` to capnp's once it is exported, and delete this file.
 *
 * Threading: the thread that owns the stream.
 */

import type { Duplex } from "node:stream";
import { DisconnectedError, FrameDecoder, ProtocolError, RpcError, encodeFrame } from "@multiprocess-ts/capnp";
import type { Transport, TransportSink } from "@multiprocess-ts/capnp";
import type { FrameLimits } from "./frame.js";

/** Limits accepted by {@link duplexTransport} (capnp's ReaderLimits; only these two are checked here). */
export type StreamLimits = Partial<FrameLimits> & Record<string, unknown>;

/**
 * Wrap `stream` as a Transport. Takes ownership: `close()` ends the writable side after queued
 * writes and resolves once the stream has closed (the peer answers our end with its own);
 * `destroy()` destroys it at once. End of input inside a message is a `ProtocolError`; a stream
 * error (EPIPE, ECONNRESET...) ends the link with a `DisconnectedError` carrying it as `cause`.
 */
export function duplexTransport(stream: Duplex, limits?: StreamLimits): Transport {
  return new DuplexTransport(stream, limits);
}

class DuplexTransport implements Transport {
  private sink: TransportSink | undefined;
  private readonly decoder: FrameDecoder;
  private ended = false;
  private reported = false;
  private closing = false;
  private error: Error | undefined;
  private readonly streamClosed: Promise<void>;

  constructor(private readonly stream: Duplex, limits?: StreamLimits) {
    this.decoder = new FrameDecoder(limits as ConstructorParameters<typeof FrameDecoder>[0]);
    const alreadyClosed = (stream as { closed?: boolean }).closed === true;
    if (alreadyClosed) {
      this.ended = true;
      this.error = new DisconnectedError("stream was already closed");
    }
    this.streamClosed = new Promise<void>((resolve) => {
      if (alreadyClosed) resolve();
      else stream.once("close", () => resolve());
    });
    // Attach error/close now so nothing is missed before start(); data flows only after start().
    stream.on("error", (e: Error) => {
      this.error ??= new DisconnectedError(`stream error: ${e.message}`, { cause: e });
    });
    stream.once("close", () => this.onClose());
  }

  start(sink: TransportSink): void {
    if (this.sink !== undefined) throw new Error("Transport.start called twice");
    this.sink = sink;
    if (this.ended) {
      this.report();
      return;
    }
    this.stream.on("data", (chunk: Buffer | string) => this.onData(chunk));
    this.stream.once("end", () => this.onEnd());
    this.stream.resume();
  }

  send(segments: Uint8Array[]): void {
    if (this.ended || this.closing || this.stream.destroyed || this.stream.writableEnded) return;
    const parts = encodeFrame(segments);
    this.stream.cork();
    for (const p of parts) this.stream.write(p);
    process.nextTick(() => this.stream.uncork());
  }

  close(): Promise<void> {
    if (!this.ended && !this.closing) {
      this.closing = true;
      if (!this.stream.writableEnded) this.stream.end();
    }
    return this.streamClosed;
  }

  destroy(err?: Error): void {
    if (this.ended) return;
    if (err !== undefined) this.error ??= err;
    this.closing = true;
    this.stream.destroy();
  }

  private onData(chunk: Buffer | string): void {
    if (this.ended || this.error !== undefined) return;
    if (typeof chunk === "string") {
      this.fail(new ProtocolError("stream delivered text; set no encoding on a Cap'n Proto stream"));
      return;
    }
    let messages: Uint8Array[][];
    try {
      // A plain Uint8Array view, not the Buffer: Buffer#slice/subarray do not copy and the
      // engine relies on Uint8Array semantics for the segments it is handed.
      messages = this.decoder.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    } catch (e) {
      this.fail(e instanceof RpcError ? e : new ProtocolError(String(e)));
      return;
    }
    for (const m of messages) {
      if (this.ended || this.error !== undefined) return;
      this.sink!.message(m);
    }
  }

  private onEnd(): void {
    try {
      this.decoder.end();
    } catch (e) {
      this.error ??= e as Error;
    }
    // Answer the peer's end with ours (sockets do this themselves unless allowHalfOpen).
    if (!this.stream.writableEnded) this.stream.end();
  }

  private fail(err: Error): void {
    this.error ??= err;
    this.stream.destroy();
  }

  private onClose(): void {
    if (this.ended) return;
    this.ended = true;
    this.report();
  }

  private report(): void {
    const sink = this.sink;
    if (sink === undefined || this.reported) return;
    this.reported = true;
    const err = this.error;
    queueMicrotask(() => sink.closed(err));
  }
}
