/**
 * A {@link Transport} over a `worker_threads` `MessagePort` (or one end of a `MessageChannel`).
 *
 * Each Cap'n Proto message is posted as one structured-clone message `{ s: ArrayBuffer[] }` whose
 * segment buffers are transferred, not copied, whenever a segment owns its whole `ArrayBuffer`
 * (except a caller's buffer adopted as a segment: see `isAdoptedBuffer` in @multiprocess-ts/capnp).
 * A graceful `close()` posts `{ end: true }` before closing the port, so the peer can tell a clean
 * end from a port that closed because its thread died (which it reports as a `DisconnectedError`).
 * State, the early-message queue and the once-only end report live in capnp's
 * `TransportLifecycle`. No write-side flow control: `postMessage` queues into the receiving
 * port, whose backlog this side cannot observe (see docs/rpc.md "Flow control").
 *
 * Threading: a port belongs to the thread that holds it; create the transport on that thread and
 * call it only there. The other end may live on any thread.
 */

import type { MessagePort } from "node:worker_threads";
import { DisconnectedError, LimitError, ProtocolError, TransportLifecycle, LinkState, isAdoptedBuffer } from "@multiprocess-ts/capnp";
import type { LifecycleHost, Transport, TransportSink } from "@multiprocess-ts/capnp";
import { DEFAULT_FRAME_LIMITS, type FrameLimits } from "./frame.js";

type Wire = { s: ArrayBuffer[] } | { end: true };

/** Options of {@link messagePortTransport}. */
export interface MessagePortTransportOptions {
  /** Per-message limits checked on receipt (defaults: 512 segments, 64 MiB). */
  limits?: Partial<FrameLimits>;
}

/**
 * Wrap `port` as a Transport. Takes ownership of the port: the transport starts it, closes it on
 * `close()`/`destroy()`/failure, and nobody else may post to or listen on it meanwhile.
 */
export function messagePortTransport(port: MessagePort, opts: MessagePortTransportOptions = {}): Transport {
  return new MessagePortTransport(port, { ...DEFAULT_FRAME_LIMITS, ...opts.limits });
}

class MessagePortTransport implements Transport, LifecycleHost {
  private readonly life = new TransportLifecycle(this);
  private peerSentEnd = false;
  private readonly portClosed: Promise<void>;

  constructor(private readonly port: MessagePort, private readonly limits: FrameLimits) {
    this.portClosed = new Promise<void>((resolve) => port.once("close", () => resolve()));
    port.on("message", (m: unknown) => this.onMessage(m));
    port.once("close", () => this.onPortClose());
    // No `messageerror` recovery: a message that cannot be deserialized breaks the protocol.
    port.on("messageerror", (e: Error) => this.fail(new ProtocolError(`MessagePort message could not be deserialized: ${e.message}`, { cause: e })));
  }

  get name(): string {
    return "MessagePortTransport";
  }

  start(sink: TransportSink): void {
    this.life.start(sink); // guard: throws when called twice; hands over early messages
  }

  send(segments: Uint8Array[]): void {
    if (!this.life.canSend) return;
    const bufs: ArrayBuffer[] = [];
    const transfer = new Set<ArrayBuffer>();
    for (const seg of segments) {
      const b = seg.buffer;
      if (b instanceof ArrayBuffer && seg.byteOffset === 0 && seg.byteLength === b.byteLength && !transfer.has(b) && !isAdoptedBuffer(b)) {
        transfer.add(b);
        bufs.push(b);
      } else {
        // A view into a larger or shared buffer, or a caller's buffer adopted as a segment (which
        // must not be detached from its owner): copy so we transfer exactly this segment.
        const copy = new ArrayBuffer(seg.byteLength);
        new Uint8Array(copy).set(seg);
        transfer.add(copy);
        bufs.push(copy);
      }
    }
    try {
      this.port.postMessage({ s: bufs } satisfies Wire, [...transfer]);
    } catch (e) {
      this.fail(new DisconnectedError(`MessagePort postMessage failed: ${(e as Error).message}`, { cause: e }));
    }
  }

  close(): Promise<void> {
    if (this.life.beginClose()) {
      try {
        this.port.postMessage({ end: true } satisfies Wire);
      } catch {
        // The port is already unusable; closing below still ends the link.
      }
      this.port.close();
    }
    return this.portClosed;
  }

  destroy(err?: Error): void {
    this.fail(err);
  }

  /** A throwing sink is an engine bug: end the link with it rather than crash the process. */
  sinkThrew(err: Error): void {
    this.fail(err);
  }

  private onMessage(m: unknown): void {
    if (!this.life.canDeliver) return;
    if (typeof m !== "object" || m === null) {
      this.fail(new ProtocolError("unexpected MessagePort message"));
      return;
    }
    if ("end" in m) {
      this.peerSentEnd = true;
      this.port.close();
      return;
    }
    const s = (m as { s?: unknown }).s;
    if (!Array.isArray(s) || s.length === 0 || !s.every((b) => b instanceof ArrayBuffer)) {
      this.fail(new ProtocolError("malformed MessagePort message: expected { s: ArrayBuffer[] }"));
      return;
    }
    if (s.length > this.limits.maxSegments) {
      this.fail(new LimitError(`message has ${s.length} segments, limit is ${this.limits.maxSegments}`));
      return;
    }
    let bytes = 0;
    for (const b of s as ArrayBuffer[]) {
      if (b.byteLength % 8 !== 0) {
        this.fail(new ProtocolError("segment length is not a multiple of 8 bytes"));
        return;
      }
      bytes += b.byteLength;
    }
    if (bytes > this.limits.maxMessageBytes) {
      this.fail(new LimitError(`message exceeds ${this.limits.maxMessageBytes} bytes`));
      return;
    }
    this.life.deliver((s as ArrayBuffer[]).map((b) => new Uint8Array(b)));
  }

  private onPortClose(): void {
    if (this.life.isEnded) return;
    // A local close() or the peer's `end` marker is a clean end; anything else means the other
    // side went away without saying goodbye (its thread exited or was terminated).
    const clean = this.life.state === LinkState.Closing || this.peerSentEnd;
    this.life.end(clean ? undefined : new DisconnectedError("MessagePort closed by peer"));
  }

  /** End now with `err` (undefined = local destroy without a reason). */
  private fail(err: Error | undefined): void {
    if (!this.life.end(err)) return;
    this.port.close();
  }
}
