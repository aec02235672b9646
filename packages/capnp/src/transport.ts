/**
 * The seam between the RPC engine and whatever carries its bytes.
 *
 * A {@link Transport} moves whole Cap'n Proto messages, each a list of segments (the frame's
 * segment table is the transport's business). Implementations: {@link memoryTransportPair}
 * (tests), {@link streamTransport} (any Node `Duplex`: sockets, pipes), and a `MessagePort`
 * transport in `@multiprocess-ts/node`, plus a WebSocket one there. All of them keep their state,
 * early messages and end report in one `TransportLifecycle` (transport-lifecycle.ts); the byte
 * carriers add write-side flow control (write-flow.ts). See docs/rpc.md.
 *
 * Threading: a transport belongs to one event loop (the thread that created it); every method
 * must be called from that thread, and the sink is only ever called from it.
 */

/** Receives what a transport reads. Given to {@link Transport.start} by the RPC engine. */
export interface TransportSink {
  /**
   * One complete incoming message. The transport hands over ownership of `segments`: it never
   * touches them again. The segments are framing-checked (counts and sizes within the limits)
   * but their pointers are not validated; run `validateMessage` before decoding.
   * Never called after {@link closed}.
   */
  message(segments: Uint8Array[]): void;
  /**
   * The transport has ended, exactly once, for any reason: the peer closed (`err` undefined),
   * a transport or decode error (`err` set: a `ProtocolError`/`LimitError` for bad input, a
   * `DisconnectedError` or the underlying I/O error otherwise), or a local `close()`/`destroy()`.
   * Always called asynchronously (never from inside `send`/`close`/`destroy`), so the engine may
   * call back into the transport from it.
   *
   * When `err` is a `ProtocolError`/`LimitError` raised by the transport's own reading (bad
   * framing, a limit), reading has stopped but the write side still works until `close()` or
   * `destroy()`: the engine sends Abort (as the C++ reference does), then calls `close()`.
   */
  closed(err?: Error): void;
}

/** A message pipe to one peer. */
export interface Transport {
  /** Called once by the RpcConnection; messages that arrived earlier are delivered after it. */
  start(sink: TransportSink): void;
  /**
   * Queue one message for the peer. Takes ownership of `segments` (the caller must not modify
   * them afterwards). Never throws for I/O reasons; after close/destroy/failure it drops the
   * message silently (the sink's `closed` tells the engine what happened).
   */
  send(segments: Uint8Array[]): void;
  /**
   * Optional: like {@link send}, for a message that may wait a little (the engine's Finish after a
   * Return): it goes out with the next message sent, or by the end of the current turn of the
   * event loop at the latest, so a call loop's Finish and next Call share one write (and the
   * peer one read). Order with other messages is kept. Transports without it get {@link send}.
   */
  sendLazy?(segments: Uint8Array[]): void;
  /**
   * Optional: like {@link send}, but returns true when the transport copied the bytes before
   * returning (or dropped the message): the caller may then reuse the segments' buffers at
   * once. False: the transport took ownership, as with `send`. Transports without it get `send`.
   */
  sendCopy?(segments: Uint8Array[]): boolean;
  /** Flush queued writes, then end the link. Idempotent; resolves once ended, never rejects. */
  close(): Promise<void>;
  /** End the link at once, dropping queued writes. Idempotent. */
  destroy(err?: Error): void;
}
