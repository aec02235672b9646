// Socket-level tests of the accept loop behind listenConnections: upstream's four
// ListenConnections scenarios (listen_tests.cpp) on Unix sockets and TCP, with raw echo handlers,
// each with served sockets read as streams and read in place (`readInPlace`, a SocketReader);
// `parkTimeoutMs` (parked sockets closed after waiting that long) under vitest's fake clock.
import { describe, it, expect, beforeEach, afterEach, vi } from "vitest";
import * as net from "node:net";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { once } from "node:events";
import { listenSockets, AddressInUseError, type Listener, type ListenTarget } from "@multiprocess-ts/node";
import { socketReadPath, type SocketReader } from "@multiprocess-ts/capnp";
import { assertNoHandleLeaks, handleBaseline, type HandleBaseline } from "@multiprocess-ts/testing";

let baseline: HandleBaseline;
let dir: string;
beforeEach(() => {
  seen = [];
  baseline = handleBaseline();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "mp-listen-"));
});
afterEach(async () => {
  vi.useRealTimers();
  await assertNoHandleLeaks(baseline);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** How each served socket was read, in serve order. */
let seen: string[] = [];

/** Echo handler: resolves when the client hangs up. Reads through `reader` when given one. */
async function echo(socket: net.Socket, reader?: SocketReader): Promise<void> {
  seen.push(`${socketReadPath(socket)}${reader === undefined ? "" : " reader"}`);
  if (reader === undefined) socket.on("data", (d) => socket.write(d));
  else reader.attach({ readRegion: () => null, bytesRead: (b, n) => socket.write(b.slice(0, n)) || true });
  socket.on("error", () => {});
  socket.on("end", () => socket.end());
  socket.resume();
  await once(socket, "close");
}

function connectTo(l: Listener): net.Socket {
  const a = l.address;
  return "path" in a ? net.connect({ path: a.path }) : net.connect({ port: a.port, host: a.host });
}

async function connected(l: Listener): Promise<net.Socket> {
  const s = connectTo(l);
  await once(s, "connect");
  return s;
}

/** Round trip one line through the echo server ("a call"). */
async function call(s: net.Socket, text: string): Promise<string> {
  const got = once(s, "data");
  s.write(text);
  return String((await got)[0]);
}

async function hangUp(s: net.Socket): Promise<void> {
  const closed = once(s, "close");
  s.end();
  await closed;
}

/** Next occurrence of a listener event, as its id. */
function next(l: Listener, ev: "serve" | "park" | "release" | "drop"): Promise<number> {
  return new Promise((resolve) => l.once(ev, (id: number) => resolve(id)));
}

const kinds: { name: string; target: () => ListenTarget }[] = [
  { name: "unix", target: () => path.join(dir, "mp.sock") },
  { name: "tcp", target: () => 0 },
];

for (const kind of kinds) for (const readInPlace of [false, true]) {
  const readPath = readInPlace ? "onread reader" : "stream";
  describe(`listenSockets (${kind.name}, ${readPath})`, () => {
    it("accepts incoming connections", async () => {
      const l = await listenSockets(kind.target(), echo, { readInPlace });
      const s = await connected(l);
      expect(await call(s, "ping")).toBe("ping");
      expect(seen).toEqual([readPath]);
      const released = next(l, "release");
      await hangUp(s);
      await released;
      expect(l.connections).toBe(0);
      await l.close();
    });

    it("enforces a connection limit of 1 and reuses the slot", async () => {
      const l = await listenSockets(kind.target(), echo, { maxConnections: 1, readInPlace });
      const log: string[] = [];
      for (const ev of ["serve", "park", "release"] as const) l.on(ev, (id) => log.push(`${ev}:${id}`));
      const a = await connected(l);
      expect(await call(a, "a")).toBe("a");
      const parked = next(l, "park");
      const b = await connected(l); // connect succeeds (backlog), but nobody serves it yet
      await parked;
      expect(l.pending).toBe(1);
      const bReply = call(b, "b"); // cannot complete while `a` holds the only slot
      expect(await call(a, "a2")).toBe("a2");
      expect(log).toEqual(["serve:1", "park:2"]);
      await hangUp(a);
      expect(await bReply).toBe("b");
      expect(log).toEqual(["serve:1", "park:2", "release:1", "serve:2"]);
      expect(seen).toEqual([readPath, readPath]); // the parked socket too, once served
      // Slot reuse: after b leaves, a third client is served at once.
      const releasedB = next(l, "release");
      await hangUp(b);
      await releasedB;
      const c = await connected(l);
      expect(await call(c, "c")).toBe("c");
      expect(log.slice(-2)).toEqual(["release:2", "serve:3"]);
      await hangUp(c);
      await l.close();
    });

    it("accepts two connections with limit 2; a third waits for a disconnect", async () => {
      const l = await listenSockets(kind.target(), echo, { maxConnections: 2, readInPlace });
      const a = await connected(l);
      const b = await connected(l);
      expect(await call(a, "a")).toBe("a");
      expect(await call(b, "b")).toBe("b");
      expect(l.connections).toBe(2);
      const parked = next(l, "park");
      const c = await connected(l);
      expect(await parked).toBe(3);
      const cReply = call(c, "c");
      let cDone = false;
      void cReply.then(() => (cDone = true));
      expect(await call(b, "b2")).toBe("b2");
      expect(cDone).toBe(false);
      const servedC = next(l, "serve");
      await hangUp(a);
      expect(await servedC).toBe(3);
      expect(await cReply).toBe("c");
      expect(l.connections).toBe(2);
      await hangUp(b);
      await hangUp(c);
      await l.close();
      expect(l.connections).toBe(0);
    });

    it("handles a client that disconnects before being accepted", async () => {
      const l = await listenSockets(kind.target(), echo, { maxConnections: 1, readInPlace });
      const a = await connected(l);
      expect(await call(a, "a")).toBe("a");
      const parked = next(l, "park");
      const quitter = connectTo(l);
      await once(quitter, "connect");
      await parked;
      // Gone before the listener ever served it (destroy: an orderly end() would wait for the
      // server's FIN, which a parked, unread socket never sends).
      const quitterClosed = once(quitter, "close");
      quitter.destroy();
      await quitterClosed;
      // When a's slot frees, the parked socket is served, ends at once and frees its slot again.
      const releasedQuitter = new Promise<void>((resolve) => l.on("release", (id) => id === 2 && resolve()));
      await hangUp(a);
      await releasedQuitter;
      expect(l.connections).toBe(0);
      const c = await connected(l);
      expect(await call(c, "c")).toBe("c");
      await hangUp(c);
      await l.close();
    });

    it("close() drops parked sockets and can cut served ones", async () => {
      const l = await listenSockets(kind.target(), echo, { maxConnections: 1, readInPlace });
      const a = await connected(l);
      expect(await call(a, "a")).toBe("a");
      const parked = next(l, "park");
      const b = await connected(l);
      await parked;
      const aClosed = once(a, "close");
      const bClosed = once(b, "close");
      a.on("error", () => {});
      b.on("error", () => {});
      await l.close({ destroy: true });
      await aClosed;
      await bClosed;
      expect(l.connections).toBe(0);
      expect(l.pending).toBe(0);
    });
  });
}

/** Listener events in order, as "event:id" (limit: "limit:id:reason"). */
function record(l: Listener): string[] {
  const log: string[] = [];
  for (const ev of ["serve", "park", "release", "drop"] as const) l.on(ev, (id) => log.push(`${ev}:${id}`));
  l.on("limit", (id, reason) => log.push(`limit:${id}:${reason}`));
  return log;
}

/** Connect and wait until the listener has parked the socket. */
async function parkedClient(l: Listener): Promise<net.Socket> {
  const parked = next(l, "park");
  const s = await connected(l);
  s.on("error", () => {}); // the listener may reset it when it closes it
  await parked;
  return s;
}

const parkReason = (max: number, t: number): string => `the socket stayed parked at maxConnections = ${max} for parkTimeoutMs = ${t} without getting a slot`;

for (const kind of kinds) {
  // Only setTimeout/clearTimeout and Date are faked (the park timer and its clock); sockets run
  // on real I/O. Frame timeouts are off so their sweeper does not run.
  const fake = (): void => void vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
  const noFrameTimeouts = { frameTimeoutMs: 0, firstMessageTimeoutMs: 0 };

  describe(`listenSockets parkTimeoutMs (${kind.name})`, () => {
    it("a socket parked for parkTimeoutMs without a slot is closed (limit, drop) and leaves the queue; one timer follows the head", async () => {
      fake();
      const l = await listenSockets(kind.target(), echo, { maxConnections: 1, parkTimeoutMs: 1000, ...noFrameTimeouts });
      const log = record(l);
      const a = await connected(l);
      expect(await call(a, "a")).toBe("a");
      const b = await parkedClient(l); // parked at t = 0
      expect(vi.getTimerCount()).toBe(1);
      vi.advanceTimersByTime(400);
      const c = await parkedClient(l); // parked at t = 400
      expect(vi.getTimerCount()).toBe(1); // one timer for the queue, not one per socket
      vi.advanceTimersByTime(599);
      expect(l.pending).toBe(2);
      expect(log).toEqual(["serve:1", "park:2", "park:3"]);
      const bClosed = once(b, "close");
      vi.advanceTimersByTime(1); // t = 1000: b's deadline
      expect(log.slice(3)).toEqual([`limit:2:${parkReason(1, 1000)}`, "drop:2"]);
      expect(l.pending).toBe(1);
      await bClosed;
      expect(vi.getTimerCount()).toBe(1); // re-armed for c
      vi.advanceTimersByTime(399);
      expect(l.pending).toBe(1);
      const cClosed = once(c, "close");
      vi.advanceTimersByTime(1); // t = 1400: c's deadline
      expect(log.slice(5)).toEqual([`limit:3:${parkReason(1, 1000)}`, "drop:3"]);
      await cClosed;
      expect(l.pending).toBe(0);
      expect(vi.getTimerCount()).toBe(0);
      // The served connection was not touched, and its slot still goes to the next client.
      expect(await call(a, "a2")).toBe("a2");
      expect(l.connections).toBe(1);
      const d = await parkedClient(l);
      const dReply = call(d, "d");
      await hangUp(a);
      expect(await dReply).toBe("d");
      expect(vi.getTimerCount()).toBe(0); // served: nothing parked, nothing timed
      await hangUp(d);
      await l.close();
      expect(log.filter((e) => e.startsWith("limit")).length).toBe(2);
    });

    it("a parked socket served before its deadline is not closed; the next head is timed from its own park", async () => {
      fake();
      const l = await listenSockets(kind.target(), echo, { maxConnections: 1, parkTimeoutMs: 1000, ...noFrameTimeouts });
      const log = record(l);
      const a = await connected(l);
      expect(await call(a, "a")).toBe("a");
      const b = await parkedClient(l); // t = 0
      vi.advanceTimersByTime(500);
      const c = await parkedClient(l); // t = 500
      const served = next(l, "serve");
      await hangUp(a);
      expect(await served).toBe(2);
      vi.advanceTimersByTime(999); // t = 1499: past b's old deadline, before c's
      expect(l.pending).toBe(1);
      expect(await call(b, "b")).toBe("b");
      const cClosed = once(c, "close");
      vi.advanceTimersByTime(1); // t = 1500
      await cClosed;
      expect(log.filter((e) => e.startsWith("limit") || e.startsWith("drop"))).toEqual([`limit:3:${parkReason(1, 1000)}`, "drop:3"]);
      expect(l.pending).toBe(0);
      expect(vi.getTimerCount()).toBe(0);
      await hangUp(b);
      await l.close();
    });

    it("a parked socket that closes by itself leaves the queue (no drop, no limit); the timer follows the new head", async () => {
      fake();
      const l = await listenSockets(kind.target(), echo, { maxConnections: 1, parkTimeoutMs: 1000, ...noFrameTimeouts });
      const log = record(l);
      // The listener's side of each accepted socket. A parked socket is not read, so a peer's
      // hangup is not seen there; closing it locally is how one "closes by itself" (listen.ts).
      const accepted: net.Socket[] = [];
      (l as unknown as { server: net.Server }).server.on("connection", (s) => accepted.push(s));
      const a = await connected(l);
      expect(await call(a, "a")).toBe("a");
      const b = await parkedClient(l); // t = 0
      vi.advanceTimersByTime(300);
      const c = await parkedClient(l); // t = 300
      const bServerSide = accepted[1]!;
      const gone = once(bServerSide, "close");
      bServerSide.destroy();
      await gone;
      expect(l.pending).toBe(1);
      expect(vi.getTimerCount()).toBe(1);
      vi.advanceTimersByTime(999); // t = 1299: past b's deadline, before c's
      expect(l.pending).toBe(1);
      expect(log).toEqual(["serve:1", "park:2", "park:3"]);
      const cClosed = once(c, "close");
      vi.advanceTimersByTime(1); // t = 1300
      await cClosed;
      expect(log.slice(3)).toEqual([`limit:3:${parkReason(1, 1000)}`, "drop:3"]);
      expect(vi.getTimerCount()).toBe(0);
      b.destroy();
      await hangUp(a);
      await l.close();
    });

    it("defaults to 30 s; 0 disables it (no timer); close() clears the timer and drops what is parked", async () => {
      fake();
      const l = await listenSockets(kind.target(), echo, { maxConnections: 1, ...noFrameTimeouts });
      const log = record(l);
      const a = await connected(l);
      expect(await call(a, "a")).toBe("a");
      const b = await parkedClient(l);
      vi.advanceTimersByTime(29_999);
      expect(l.pending).toBe(1);
      const bClosed = once(b, "close");
      vi.advanceTimersByTime(1);
      await bClosed;
      expect(log.slice(-2)).toEqual([`limit:2:${parkReason(1, 30_000)}`, "drop:2"]);
      const c = await parkedClient(l);
      expect(vi.getTimerCount()).toBe(1);
      const cClosed = once(c, "close");
      a.on("error", () => {});
      await l.close({ destroy: true });
      await cClosed;
      expect(vi.getTimerCount()).toBe(0);
      expect(log.slice(log.indexOf("park:3"))).toEqual(["park:3", "drop:3", "release:1"]); // dropped, not timed out
      expect(l.pending).toBe(0);

      const off = await listenSockets(kind.target(), echo, { maxConnections: 1, parkTimeoutMs: 0, ...noFrameTimeouts });
      const offLog = record(off);
      const x = await connected(off);
      expect(await call(x, "x")).toBe("x");
      const y = await parkedClient(off);
      expect(vi.getTimerCount()).toBe(0);
      vi.advanceTimersByTime(10 * 24 * 3600 * 1000);
      expect(off.pending).toBe(1);
      const yReply = call(y, "y");
      await hangUp(x);
      expect(await yReply).toBe("y");
      await hangUp(y);
      await off.close();
      expect(offLog.some((e) => e.startsWith("limit") || e.startsWith("drop"))).toBe(false);
    });
  });
}

describe("listenSockets option checks", () => {
  it("parkTimeoutMs and maxPending are checked before listening (RangeError)", async () => {
    const where = path.join(dir, "mp.sock");
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      await expect(listenSockets(where, echo, { parkTimeoutMs: bad })).rejects.toThrow(new RangeError("parkTimeoutMs must be a non-negative number of milliseconds"));
    }
    for (const bad of [-1, 1.5, Number.NaN]) {
      await expect(listenSockets(where, echo, { maxPending: bad })).rejects.toThrow(new RangeError("maxPending must be a non-negative integer"));
    }
    expect(fs.existsSync(where)).toBe(false);
  });
});

describe("listenSockets Unix socket files", () => {
  it("creates the socket with mode 0600 and removes it on close", async () => {
    const p = path.join(dir, "mode.sock");
    const l = await listenSockets(p, echo);
    const st = fs.statSync(p);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    await l.close();
    expect(fs.existsSync(p)).toBe(false);
  });

  it("removes a stale socket file (exists, nothing listens)", async () => {
    const p = path.join(dir, "stale.sock");
    // Make a stale socket: bind a listener, then close its fd without unlinking (as a crashed
    // process would leave it). A child process that exits without cleanup does exactly that.
    const { spawnSync } = await import("node:child_process");
    const r = spawnSync(process.execPath, ["-e", `require("net").createServer().listen(${JSON.stringify(p)}, () => process.exit(0))`]);
    expect(r.status).toBe(0);
    expect(fs.lstatSync(p).isSocket()).toBe(true);
    const l = await listenSockets(p, echo);
    const s = await connected(l);
    expect(await call(s, "x")).toBe("x");
    await hangUp(s);
    await l.close();
  });

  it("refuses a path where a live server listens, and a path that is not a socket", async () => {
    const p = path.join(dir, "live.sock");
    const first = await listenSockets(p, echo);
    const err = await listenSockets(p, echo).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AddressInUseError);
    expect(String(err)).toMatch(/another process is listening/);
    // The live server still works.
    const s = await connected(first);
    expect(await call(s, "still here")).toBe("still here");
    await hangUp(s);
    await first.close();

    const f = path.join(dir, "file");
    fs.writeFileSync(f, "data");
    await expect(listenSockets(f, echo)).rejects.toThrow(/not a socket/);
    expect(fs.readFileSync(f, "utf8")).toBe("data");
  });

  it("TCP binds 127.0.0.1 by default", async () => {
    const l = await listenSockets(0, echo);
    expect(l.address).toMatchObject({ host: "127.0.0.1" });
    await l.close();
  });
});

describe("listenSockets readInPlace fallback", () => {
  it("where the switch is refused (here: a handle without useUserBuffer), the handler gets no reader and the socket is read as a stream", async () => {
    const l = await listenSockets(path.join(dir, "fallback.sock"), echo, { readInPlace: true });
    // Before the listener's own 'connection' listener: hide the handle's useUserBuffer, as a Node
    // without it would have.
    const server = (l as unknown as { server: net.Server }).server;
    server.prependListener("connection", (s: net.Socket) => {
      (s as unknown as { _handle: { useUserBuffer?: unknown } })._handle.useUserBuffer = undefined;
    });
    const s = await connected(l);
    expect(await call(s, "ping")).toBe("ping");
    expect(seen).toEqual(["stream"]);
    const released = next(l, "release");
    await hangUp(s);
    await released;
    await l.close();
  });
});
