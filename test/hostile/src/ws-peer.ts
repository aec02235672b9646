/**
 * The WebSocket side of the hostile suite: FooInterface served by `listenWebSocketConnections`
 * on 127.0.0.1 with counters (listener `limit`/`park`/`drop` events, calls that reached the
 * implementation), a well-behaved client over `connectWebSocket`, and a raw attacking peer on a
 * plain TCP socket that speaks just enough HTTP and RFC 6455 framing to trickle a request, an
 * upgrade or a message. Threading: the loop thread of the test or benchmark.
 */

import * as net from "node:net";
import { randomBytes } from "node:crypto";
import { EventLoop, type Connection } from "@multiprocess-ts/runtime";
import { FooInterfaceClient, FooInterfaceServer } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { connectWebSocket, listenWebSocketConnections, type WebSocketConnectionsOptions, type WebSocketListener } from "@multiprocess-ts/node";
import { CountingFoo } from "./server.js";

export const WS_TOKEN = "hostile-token";

/** Listener options the suite varies. */
export type WsServerOptions = Pick<
  WebSocketConnectionsOptions,
  "maxConnections" | "maxPending" | "frameTimeoutMs" | "firstMessageTimeoutMs" | "upgradeTimeoutMs" | "parkTimeoutMs" | "frameBudget" | "flow"
>;

export class HostileWsServer {
  /** Listener `limit` reasons, in order. */
  readonly limits: string[] = [];
  /** The errors of those `limit` events. */
  readonly limitErrors: Error[] = [];
  parks = 0;
  drops = 0;

  private constructor(
    readonly loop: EventLoop,
    readonly impl: CountingFoo,
    readonly listener: WebSocketListener,
    /** Every connection served, in order (their `error` says how each ended). */
    readonly connections: Connection[],
  ) {}

  static async start(opts: WsServerOptions = {}): Promise<HostileWsServer> {
    const loop = new EventLoop("hostile-ws-server", { log: { level: "error", logFn: () => {} } });
    const impl = new CountingFoo();
    const connections: Connection[] = [];
    const listener = await listenWebSocketConnections(loop, impl, FooInterfaceServer, { token: WS_TOKEN, ...opts, onConnection: (c) => connections.push(c) });
    const s = new HostileWsServer(loop, impl, listener, connections);
    listener.events.on("limit", (reason, err) => {
      s.limits.push(reason);
      s.limitErrors.push(err);
    });
    listener.events.on("park", () => s.parks++);
    listener.events.on("drop", () => s.drops++);
    return s;
  }

  /** Resolves once the listener has closed at least `n` connections for a limit. */
  limitsReached(n: number): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.limits.length >= n) resolve();
        else this.listener.events.once("limit", () => queueMicrotask(check));
      };
      check();
    });
  }

  async close(): Promise<void> {
    await this.listener.close();
    await this.loop.done;
  }
}

/** A well-behaved WebSocket client of FooInterface on its own loop. */
export async function connectGoodWs(url: string): Promise<{ loop: EventLoop; client: FooInterfaceClient }> {
  const loop = new EventLoop("hostile-ws-good-client");
  const client = await connectWebSocket(loop, url, FooInterfaceClient, { token: WS_TOKEN });
  return { loop, client };
}

/** One client→server WebSocket frame header (masked with a zero key, so the payload is sent as is). */
export function wsFrameHeader(opcode: number, fin: boolean, payloadBytes: number): Uint8Array {
  const ext = payloadBytes < 126 ? 0 : payloadBytes < 65536 ? 2 : 8;
  const h = new Uint8Array(2 + ext + 4);
  h[0] = (fin ? 0x80 : 0) | opcode;
  const dv = new DataView(h.buffer);
  if (ext === 0) h[1] = 0x80 | payloadBytes;
  else if (ext === 2) {
    h[1] = 0x80 | 126;
    dv.setUint16(2, payloadBytes);
  } else {
    h[1] = 0x80 | 127;
    dv.setUint32(2, Math.floor(payloadBytes / 2 ** 32));
    dv.setUint32(6, payloadBytes >>> 0);
  }
  return h; // mask key: 4 zero bytes
}

/** A raw TCP peer of the WebSocket listener. */
export class RawWsPeer {
  /** Resolves when the server closed (or reset) the socket. */
  readonly closed: Promise<void>;
  private received = Buffer.alloc(0);
  private waiter: (() => void) | null = null;

  private constructor(readonly socket: net.Socket) {
    socket.on("error", () => {});
    socket.on("data", (c: Buffer) => {
      this.received = Buffer.concat([this.received, c]);
      this.waiter?.();
    });
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
  }

  static async connect(port: number): Promise<RawWsPeer> {
    const socket = net.connect({ port, host: "127.0.0.1" });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return new RawWsPeer(socket);
  }

  /** The upgrade request (authorised); `cut` bytes short of its end when given. */
  static request(cut = 0): string {
    const key = randomBytes(16).toString("base64");
    const text =
      `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${WS_TOKEN}\r\n\r\n`;
    return text.slice(0, text.length - cut);
  }

  /** Send the upgrade request and wait for the 101 answer (parked upgrades wait here). */
  async upgrade(): Promise<void> {
    this.socket.write(RawWsPeer.request());
    while (!this.received.includes("\r\n\r\n")) {
      if (this.socket.destroyed) throw new Error("closed before the upgrade completed");
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        this.socket.once("close", resolve);
      });
      this.waiter = null;
    }
    const head = this.received.subarray(0, this.received.indexOf("\r\n")).toString();
    if (!head.startsWith("HTTP/1.1 101")) throw new Error(`upgrade answered ${head}`);
  }

  write(bytes: Uint8Array | string): Promise<void> {
    return new Promise((resolve) => this.socket.write(bytes, () => resolve()));
  }

  /** The server's close frame code, if one arrived. */
  closeCode(): number | undefined {
    const i = this.received.indexOf("\r\n\r\n");
    const frames = i < 0 ? this.received : this.received.subarray(i + 4);
    // Server frames are unmasked; find an opcode-8 frame at a frame boundary.
    let off = 0;
    while (off + 2 <= frames.length) {
      const op = frames[off]! & 0x0f;
      let len = frames[off + 1]! & 0x7f;
      let hdr = 2;
      if (len === 126) {
        len = frames.readUInt16BE(off + 2);
        hdr = 4;
      } else if (len === 127) {
        len = Number(frames.readBigUInt64BE(off + 2));
        hdr = 10;
      }
      if (op === 8 && len >= 2 && off + hdr + 2 <= frames.length) return frames.readUInt16BE(off + hdr);
      off += hdr + len;
    }
    return undefined;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
