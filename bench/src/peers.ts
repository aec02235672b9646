/**
 * The peer rows of `pnpm bench --peers`: birpc (JSON lines) and capnweb (its string
 * `RpcTransport`, one JSON message per line) over the same kind of Unix socket as our figures,
 * serving the same three methods as the bench's FooInterface use: `add(a, b)`, `passData(bytes)`
 * (an echo). Server halves run in the `server.js birpc|capnweb PATH` children, client halves in
 * the bench client's main thread.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { createBirpc } from "birpc";
import { RpcSession, RpcTarget, type RpcTransport } from "capnweb";
import { lineChannel, type LineChannel } from "./lines.js";

/** What the bench loops call on every peer. */
export interface PeerClient {
  add(a: number, b: number): Promise<number>;
  passData(data: Uint8Array): Promise<Uint8Array>;
  close(): void;
}
export type PeerKind = "birpc" | "capnweb";

interface FooFns {
  add(a: number, b: number): number;
  passData(d: Uint8Array): Uint8Array;
}
const fooFns: FooFns = { add: (a, b) => a + b, passData: (d) => d };

// birpc: JSON with byte arrays as base64 (a Uint8Array has no JSON form of its own).
const replacer = (_k: string, v: unknown): unknown =>
  v instanceof Uint8Array ? { $u8: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") } : v;
const reviver = (_k: string, v: unknown): unknown =>
  v !== null && typeof v === "object" && typeof (v as { $u8?: unknown }).$u8 === "string"
    ? new Uint8Array(Buffer.from((v as { $u8: string }).$u8, "base64")) : v;

function birpcOver(ch: LineChannel, fns: Record<string, unknown>): unknown {
  return createBirpc<FooFns>(fns, {
    post: (data: string) => ch.send(data),
    on: (fn) => ch.onLine(fn),
    serialize: (v) => JSON.stringify(v, replacer),
    deserialize: (s: string) => JSON.parse(s, reviver) as unknown,
  });
}

/** capnweb's string transport over a line channel. */
class LineTransport implements RpcTransport {
  #queue: string[] = [];
  #waiting: { resolve(s: string): void; reject(e: Error): void } | undefined;
  #closed: Error | undefined;
  constructor(private readonly ch: LineChannel, private readonly socket: Socket) {
    ch.onLine((line) => {
      const w = this.#waiting;
      if (w !== undefined) { this.#waiting = undefined; w.resolve(line); } else this.#queue.push(line);
    });
    ch.onClose((e) => {
      this.#closed = e ?? new Error("socket closed");
      const w = this.#waiting;
      this.#waiting = undefined;
      w?.reject(this.#closed);
    });
  }
  send(message: string): void { this.ch.send(message); }
  receive(): Promise<string> {
    const next = this.#queue.shift();
    if (next !== undefined) return Promise.resolve(next);
    if (this.#closed !== undefined) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => { this.#waiting = { resolve, reject }; });
  }
  abort(): void { this.socket.destroy(); }
}

class FooTarget extends RpcTarget {
  add(a: number, b: number): number { return a + b; }
  passData(d: Uint8Array): Uint8Array { return d; }
}

/** Starts a peer server on `path`. */
export function startPeerServer(kind: PeerKind, path: string, onConn: (s: Socket) => void): Promise<Server> {
  const server = createServer((socket) => {
    onConn(socket);
    const ch = lineChannel(socket);
    if (kind === "birpc") birpcOver(ch, fooFns as unknown as Record<string, unknown>);
    else new RpcSession(new LineTransport(ch, socket), new FooTarget());
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve(server));
  });
}

/** Connects a peer client to `path`. */
export async function connectPeer(kind: PeerKind, path: string): Promise<PeerClient> {
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = connect({ path });
    s.once("connect", () => { s.off("error", reject); resolve(s); });
    s.once("error", reject);
  });
  const ch = lineChannel(socket);
  const close = (): void => { socket.destroy(); };
  if (kind === "birpc") {
    const rpc = birpcOver(ch, {}) as { add(a: number, b: number): Promise<number>; passData(d: Uint8Array): Promise<Uint8Array>; $close(): void };
    return { add: (a, b) => rpc.add(a, b), passData: (d) => rpc.passData(d), close: () => { rpc.$close(); close(); } };
  }
  const session = new RpcSession<FooTarget>(new LineTransport(ch, socket));
  const stub = session.getRemoteMain() as unknown as { add(a: number, b: number): Promise<number>; passData(d: Uint8Array): Promise<Uint8Array> };
  return { add: async (a, b) => await stub.add(a, b), passData: async (d) => await stub.passData(d), close };
}
