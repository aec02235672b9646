/**
 * Connection plumbing for the conformance tests and the benchmark: a transport wrapper that
 * records segment counts, a TS Calc server on a Unix socket, and a TS client connection.
 */
import { createConnection, createServer, type Server as NetServer, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import {
  RpcConnection,
  describeRpcMessage,
  localCapability,
  type RpcConnectionOptions,
  type Transport,
  type TransportSink,
} from "@multiprocess-ts/capnp";
import { CalcServer, Tracker } from "./servers.js";
import { streamTransport } from "./stream.js";

/** One message seen by {@link CountingTransport}: its rpc.capnp Message union member (and the
 * Return variant for returns). */
export interface WireEntry { dir: "in" | "out"; which: string; variant?: string }

/**
 * Wraps a transport and records the largest segment count of messages in each direction, and
 * (with `wire`) the kind of every message in order, for assertions about the protocol itself.
 */
export class CountingTransport implements Transport {
  maxSegmentsIn = 0;
  maxSegmentsOut = 0;
  messagesIn = 0;
  messagesOut = 0;
  readonly wire: WireEntry[] | null;
  constructor(private readonly inner: Transport, opts: { wire?: boolean } = {}) {
    this.wire = opts.wire === true ? [] : null;
  }
  private record(dir: "in" | "out", segments: Uint8Array[]): void {
    if (this.wire === null) return;
    const d = describeRpcMessage(segments);
    const e: WireEntry = { dir, which: d.which };
    if (d.variant !== undefined) e.variant = d.variant;
    this.wire.push(e);
  }
  start(sink: TransportSink): void {
    this.inner.start({
      message: (segments) => {
        this.messagesIn++;
        this.maxSegmentsIn = Math.max(this.maxSegmentsIn, segments.length);
        this.record("in", segments);
        sink.message(segments);
      },
      closed: (err) => sink.closed(err),
    });
  }
  send(segments: Uint8Array[]): void {
    this.messagesOut++;
    this.maxSegmentsOut = Math.max(this.maxSegmentsOut, segments.length);
    this.record("out", segments);
    this.inner.send(segments);
  }
  /**
   * Transport.sendCopy, passed through (a stream transport's: the engine then sends its own
   * Calls and Returns as in production, flat Calls as bytes from one reused buffer).
   */
  sendCopy(segments: Uint8Array[]): boolean {
    const inner = this.inner;
    if (inner.sendCopy === undefined) {
      this.send(segments);
      return false;
    }
    this.messagesOut++;
    this.maxSegmentsOut = Math.max(this.maxSegmentsOut, segments.length);
    this.record("out", segments);
    return inner.sendCopy(segments);
  }
  close(): Promise<void> { return this.inner.close(); }
  destroy(err?: Error): void { this.inner.destroy(err); }
  /** The wire log from index `from` on, as "in call", "out return/results", ... */
  wireSince(from = 0): string[] {
    return (this.wire ?? []).slice(from).map((e) => `${e.dir} ${e.which}${e.variant !== undefined ? "/" + e.variant : ""}`);
  }
}

/** Optional wire/engine logging, enabled with MPTS_INTEROP_TRACE=1. */
export function traceLog(prefix: string): RpcConnectionOptions["log"] {
  if (process.env["MPTS_INTEROP_TRACE"] !== "1") return undefined;
  return (level, msg) => { process.stderr.write(`[${prefix}] ${level}: ${msg}\n`); };
}

export interface ServedConnection {
  readonly name: string;
  readonly rpc: RpcConnection;
  readonly calc: CalcServer;
  readonly transport: CountingTransport;
  /** Settles with the reason the connection ended (undefined = clean). */
  readonly closed: Promise<Error | undefined>;
}

export interface TsServer {
  readonly path: string;
  readonly tracker: Tracker;
  readonly connections: ServedConnection[];
  /** Resolves with the n-th accepted connection (0-based), now or when it arrives. */
  connection(n: number): Promise<ServedConnection>;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** Serves a new CalcServer (bootstrap) on one byte stream (a socket or socketpair end). */
export function serveConnection(stream: Duplex, name: string, tracker: Tracker): ServedConnection {
  const calc = new CalcServer(tracker);
  const bootstrap = localCapability(calc);
  const transport = new CountingTransport(streamTransport(stream), { wire: true });
  const opts: RpcConnectionOptions = { bootstrap, name };
  const log = traceLog(name);
  if (log) opts.log = log;
  const rpc = new RpcConnection(transport, opts);
  // The connection keeps its own reference to the bootstrap; ours goes when it ends.
  rpc.onClose(() => bootstrap.close());
  return { name, rpc, calc, transport, closed: rpc.closed };
}

/** A TS Calc server on a Unix socket: one CalcServer (bootstrap) per connection. */
export async function startTsServer(path: string): Promise<TsServer> {
  const tracker = new Tracker();
  const connections: ServedConnection[] = [];
  const waiters = new Map<number, ((c: ServedConnection) => void)[]>();
  const net: NetServer = createServer((socket: Socket) => {
    const served = serveConnection(socket, `ts-server#${connections.length}`, tracker);
    const n = connections.push(served) - 1;
    for (const w of waiters.get(n) ?? []) w(served);
    waiters.delete(n);
  });
  await new Promise<void>((resolve, reject) => {
    net.once("error", reject);
    net.listen(path, () => { net.off("error", reject); resolve(); });
  });
  return {
    path, tracker, connections,
    connection(n) {
      const c = connections[n];
      if (c) return Promise.resolve(c);
      return new Promise((resolve) => { waiters.set(n, [...(waiters.get(n) ?? []), resolve]); });
    },
    async close() {
      await new Promise<void>((resolve) => { net.close(() => resolve()); });
      await Promise.all(connections.map((c) => c.rpc.close()));
    },
  };
}

/** Connects to a Unix socket and starts an RpcConnection (no bootstrap of ours). */
export async function connectUnix(path: string, name = "ts-client", opts: { wire?: boolean } = {}): Promise<{ rpc: RpcConnection; transport: CountingTransport; socket: Socket }> {
  const socket = createConnection(path);
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => { socket.off("error", reject); resolve(); });
    socket.once("error", reject);
  });
  const transport = new CountingTransport(streamTransport(socket), opts);
  const rpcOpts: RpcConnectionOptions = { name };
  const log = traceLog(name);
  if (log) rpcOpts.log = log;
  return { rpc: new RpcConnection(transport, rpcOpts), transport, socket };
}
