// Init-level RPC over the transports of @multiprocess-ts/node: Unix and TCP listeners with
// upstream's ListenConnections scenarios (listen_tests.cpp), WebSocket with token/origin checks,
// and MessagePort (in-thread and to a real worker thread).
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import * as fs from "node:fs";
import * as net from "node:net";
import { once } from "node:events";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { MessageChannel, Worker } from "node:worker_threads";
import { EventLoop, connectTransport, serveTransport, type Connection } from "@multiprocess-ts/runtime";
import {
  clientConnection,
  connectSocket,
  connectWebSocket,
  listenConnections,
  listenWebSocketConnections,
  messagePortTransport,
  WebSocketRejectedError,
  type Listener,
  type ListenTarget,
} from "@multiprocess-ts/node";
import { InitInterfaceClient, InitInterfaceServer, type InitInterface } from "@multiprocess-ts/proto/example/init.capnp.js";
import type { PrinterInterface } from "@multiprocess-ts/proto/example/printer.capnp.js";
import type { CalculatorInterface } from "@multiprocess-ts/proto/example/calculator.capnp.js";
import { assertNoHandleLeaks, handleBaseline, type HandleBaseline } from "@multiprocess-ts/testing";

/** In-process Init: printers append to `printed`. */
class RecordingInit implements InitInterface {
  readonly printed: string[] = [];
  makePrinter(): PrinterInterface {
    return { print: (text: string) => void this.printed.push(text) };
  }
  makeCalculator(): CalculatorInterface {
    throw new Error("no calculator");
  }
}

let baseline: HandleBaseline;
let serverLoop: EventLoop;
let clientLoop: EventLoop;
let errors: string[];
let dir: string;
const idle = { questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 };

beforeEach(() => {
  baseline = handleBaseline();
  errors = [];
  const logFn = (level: string, msg: string): void => void (level === "error" && errors.push(msg));
  serverLoop = new EventLoop("server", { log: { level: "warning", logFn } });
  clientLoop = new EventLoop("client", { log: { level: "warning", logFn } });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "mp-transports-"));
});
afterEach(async () => {
  for (const c of served) {
    await c.disconnected;
    expect(c.rpc.stats()).toEqual(idle);
  }
  served = [];
  await Promise.all([serverLoop.done, clientLoop.done]);
  expect(serverLoop.numRefs).toBe(0);
  expect(clientLoop.numRefs).toBe(0);
  expect(errors).toEqual([]);
  await assertNoHandleLeaks(baseline);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** One round trip through the server: make a printer, print, release the printer. */
async function call(init: InitInterfaceClient, text: string): Promise<void> {
  const printer = await init.makePrinter();
  try {
    await printer.print(text);
  } finally {
    await printer.close();
  }
}

/** Close a client and check its RPC tables are empty. */
async function closeClient(init: InitInterfaceClient): Promise<void> {
  const conn: Connection = clientConnection(init);
  await init.close();
  expect(conn.rpc.stats()).toEqual(idle);
}

function next(l: Listener, ev: "serve" | "park" | "release"): Promise<number> {
  return new Promise((resolve) => l.once(ev, (id: number) => resolve(id)));
}

/** Server connections of the current test; all must end with empty RPC tables. */
let served: Connection[] = [];
const track = { onConnection: (c: Connection): void => void served.push(c) };

const kinds: { name: string; target: () => ListenTarget }[] = [
  { name: "unix", target: () => path.join(dir, "init.sock") },
  { name: "tcp", target: () => 0 },
];

for (const kind of kinds) {
  describe(`listenConnections (${kind.name})`, () => {
    const where = (l: Listener): ListenTarget => ("path" in l.address ? l.address.path : { port: l.address.port, host: l.address.host });

    it("accepts incoming connections", async () => {
      const impl = new RecordingInit();
      const l = await listenConnections(kind.target(), serverLoop, impl, InitInterfaceServer, track);
      const init = await connectSocket(clientLoop, where(l), InitInterfaceClient);
      await call(init, "hello");
      expect(impl.printed).toEqual(["hello"]);
      const released = next(l, "release");
      await closeClient(init);
      await released;
      await l.close();
    });

    it("enforces a local connection limit of 1 and reuses the slot", async () => {
      const impl = new RecordingInit();
      const l = await listenConnections(kind.target(), serverLoop, impl, InitInterfaceServer, { ...track, maxConnections: 1 });
      const a = await connectSocket(clientLoop, where(l), InitInterfaceClient);
      await call(a, "a1");
      const parked = next(l, "park");
      let bReady = false;
      const bPromise = connectSocket(clientLoop, where(l), InitInterfaceClient).then((b) => ((bReady = true), b));
      await parked;
      // b's construct exchange cannot complete while a holds the only slot: a keeps working.
      await call(a, "a2");
      expect(bReady).toBe(false);
      expect(l.connections).toBe(1);
      expect(l.pending).toBe(1);
      await closeClient(a);
      const b = await bPromise;
      await call(b, "b1");
      const releasedB = next(l, "release");
      await closeClient(b);
      await releasedB;
      // The slot is free again: a third client is served at once.
      const c = await connectSocket(clientLoop, where(l), InitInterfaceClient);
      await call(c, "c1");
      await closeClient(c);
      expect(impl.printed).toEqual(["a1", "a2", "b1", "c1"]);
      await l.close();
    });

    it("accepts multiple connections (limit 2); a third waits for a disconnect", async () => {
      const impl = new RecordingInit();
      const l = await listenConnections(kind.target(), serverLoop, impl, InitInterfaceServer, { ...track, maxConnections: 2 });
      const a = await connectSocket(clientLoop, where(l), InitInterfaceClient);
      const b = await connectSocket(clientLoop, where(l), InitInterfaceClient);
      await Promise.all([call(a, "a"), call(b, "b")]);
      const parked = next(l, "park");
      let cReady = false;
      const cPromise = connectSocket(clientLoop, where(l), InitInterfaceClient).then((c) => ((cReady = true), c));
      await parked;
      await call(b, "b2");
      expect(cReady).toBe(false);
      await closeClient(a);
      const c = await cPromise;
      await call(c, "c");
      expect(l.connections).toBe(2);
      await closeClient(b);
      await closeClient(c);
      expect(impl.printed.sort()).toEqual(["a", "b", "b2", "c"]);
      await l.close();
    });

    it("handles a client that disconnects before being accepted", async () => {
      const impl = new RecordingInit();
      const l = await listenConnections(kind.target(), serverLoop, impl, InitInterfaceServer, { ...track, maxConnections: 1 });
      const a = await connectSocket(clientLoop, where(l), InitInterfaceClient);
      await call(a, "a");
      // A raw client connects and hangs up while parked (upstream: immediate close before accept).
      const parked = next(l, "park");
      const t = where(l);
      const quitter = typeof t === "string" ? net.connect({ path: t }) : net.connect(t as { port: number; host: string });
      await once(quitter, "connect");
      await parked;
      const quitterClosed = once(quitter, "close");
      quitter.destroy();
      await quitterClosed;
      // When a's slot frees, the parked connection is served, sees the hang-up, and is released.
      const releasedQuitter = new Promise<void>((resolve) => l.on("release", (id) => id === 2 && resolve()));
      await closeClient(a);
      await releasedQuitter;
      expect(l.connections).toBe(0);
      // The slot is not leaked.
      const d = await connectSocket(clientLoop, where(l), InitInterfaceClient);
      await call(d, "d");
      await closeClient(d);
      expect(impl.printed).toEqual(["a", "d"]);
      await l.close();
    });
  });
}

describe("listenConnections socket files", () => {
  it("creates a 0600 socket, replaces a stale one, and refuses a live one", async () => {
    const p = path.join(dir, "init.sock");
    const impl = new RecordingInit();
    const first = await listenConnections(p, serverLoop, impl, InitInterfaceServer, track);
    expect(fs.statSync(p).mode & 0o777).toBe(0o600);
    await expect(listenConnections(p, serverLoop, impl, InitInterfaceServer, track)).rejects.toThrow(/another process is listening/);
    await first.close();
    // Leave a stale socket file behind, as a crashed server would.
    const { spawnSync } = await import("node:child_process");
    const r = spawnSync(process.execPath, ["-e", `require("net").createServer().listen(${JSON.stringify(p)}, () => process.exit(0))`]);
    expect(r.status).toBe(0);
    expect(fs.lstatSync(p).isSocket()).toBe(true);
    const second = await listenConnections(p, serverLoop, impl, InitInterfaceServer, track);
    const init = await connectSocket(clientLoop, p, InitInterfaceClient);
    await call(init, "after stale");
    await closeClient(init);
    await second.close();
    expect(impl.printed).toEqual(["after stale"]);
  });
});

describe("connectSocket errors", () => {
  it("rejects with the socket error when nothing listens", async () => {
    const missing = await connectSocket(clientLoop, path.join(dir, "nobody.sock"), InitInterfaceClient).catch((e: unknown) => e);
    expect((missing as NodeJS.ErrnoException).code).toBe("ENOENT");
    const l = await listenConnections(0, serverLoop, new RecordingInit(), InitInterfaceServer);
    const port = "port" in l.address ? l.address.port : 0;
    await l.close();
    const refused = await connectSocket(clientLoop, port, InitInterfaceClient).catch((e: unknown) => e);
    expect((refused as NodeJS.ErrnoException).code).toBe("ECONNREFUSED");
  });
});

describe("WebSocket Init connections", () => {
  it("serves calls over ws with a bearer token; rejects a wrong token (401) and a bad origin (403)", async () => {
    const impl = new RecordingInit();
    const served: Connection[] = [];
    const l = await listenWebSocketConnections(serverLoop, impl, InitInterfaceServer, {
      token: "tok",
      allowedOrigins: ["https://ok.example"],
      onConnection: (c) => served.push(c),
    });
    const init = await connectWebSocket(clientLoop, l.url, InitInterfaceClient, { token: "tok", origin: "https://ok.example" });
    await call(init, "over ws");
    await call(init, "again");
    expect(impl.printed).toEqual(["over ws", "again"]);
    const bad = await connectWebSocket(clientLoop, l.url, InitInterfaceClient, { token: "wrong", origin: "https://ok.example" }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(WebSocketRejectedError);
    expect((bad as WebSocketRejectedError).status).toBe(401);
    const origin = await connectWebSocket(clientLoop, `${l.url}?token=tok`, InitInterfaceClient, { origin: "https://evil.example" }).catch((e: unknown) => e);
    expect((origin as WebSocketRejectedError).status).toBe(403);
    expect(served.length).toBe(1);
    await closeClient(init);
    await served[0]!.disconnected;
    expect(served[0]!.rpc.stats()).toEqual(idle);
    await l.close();
  });

  it("closing the ws listener disconnects its clients; their calls then fail", async () => {
    const impl = new RecordingInit();
    const l = await listenWebSocketConnections(serverLoop, impl, InitInterfaceServer, { token: "tok" });
    const init = await connectWebSocket(clientLoop, l.url, InitInterfaceClient, { token: "tok" });
    await call(init, "x");
    await l.close();
    await clientConnection(init).disconnected;
    await expect(init.makePrinter()).rejects.toThrow("IPC client method called after disconnect.");
    await init.close();
  });
});

describe("MessagePort Init connections", () => {
  it("serves calls over a MessageChannel in one thread", async () => {
    const impl = new RecordingInit();
    const { port1, port2 } = new MessageChannel();
    const server = serveTransport(serverLoop, messagePortTransport(port2), impl, InitInterfaceServer);
    const init = await connectTransport(clientLoop, messagePortTransport(port1), InitInterfaceClient);
    await call(init, "port");
    expect(impl.printed).toEqual(["port"]);
    await closeClient(init);
    await server.disconnected;
    expect(server.rpc.stats()).toEqual(idle);
  });

  it("serves calls from a real worker thread; disconnecting ends the worker's loop", async () => {
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(fileURLToPath(new URL("../dist/port-worker.js", import.meta.url)), {
      workerData: { port: port2 },
      transferList: [port2],
    });
    const printed: string[] = [];
    const done = new Promise<{ stats: unknown }>((resolve, reject) => {
      worker.on("message", (m: { printed?: string; done?: boolean; stats?: unknown }) => {
        if (m.printed !== undefined) printed.push(m.printed);
        if (m.done) resolve({ stats: m.stats });
      });
      worker.once("error", reject);
    });
    const exited = new Promise<number>((resolve) => worker.once("exit", resolve));
    const init = await connectTransport(clientLoop, messagePortTransport(port1), InitInterfaceClient);
    await call(init, "to the worker");
    await closeClient(init);
    expect((await done).stats).toEqual(idle);
    expect(await exited).toBe(0);
    expect(printed).toEqual(["to the worker"]);
  });

  it("a worker that dies mid-call fails the call with the disconnect error", async () => {
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(fileURLToPath(new URL("../dist/port-worker.js", import.meta.url)), {
      workerData: { port: port2 },
      transferList: [port2],
    });
    const exited = new Promise<number>((resolve) => worker.once("exit", resolve));
    const init = await connectTransport(clientLoop, messagePortTransport(port1), InitInterfaceClient);
    const printer = await init.makePrinter();
    await worker.terminate();
    await exited;
    await expect(printer.print("too late")).rejects.toThrow(/IPC client method call(ed after| interrupted by) disconnect/);
    await printer.close();
    await init.close();
  });
});
