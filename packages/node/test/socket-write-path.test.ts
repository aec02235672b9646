/**
 * Which write the stream transport makes on each kind of socket this package creates or serves
 * (packages/capnp socket-write.ts, `socketWritePath`): a connected Unix or TCP socket, an accepted
 * one and a spawned child's socketpair end write an idle batch directly (the handle's
 * `writeBuffer`, no `_write`); other streams through `Writable.write()`. Messages sent that way
 * reach the peer in order (a spawned child echoes them back). Each test ends with a handle leak
 * check. Runs on the test's main thread.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import * as net from "node:net";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { socketWritePath, streamTransport, type Transport } from "@multiprocess-ts/capnp";
import { spawnProcessSocket, waitProcess } from "@multiprocess-ts/node";
import { assertNoHandleLeaks, countWrites, handleBaseline, msg, msgValues, startRecording, type HandleBaseline } from "@multiprocess-ts/testing";

const cleanups: (() => void | Promise<void>)[] = [];
let baseline: HandleBaseline;
beforeEach(() => {
  baseline = handleBaseline();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await assertNoHandleLeaks(baseline);
});

/** Counts calls of the socket's `_write` (Node's handle write, which the direct write skips). */
function countHandleWrites(s: net.Socket): () => number {
  const f = s as unknown as { _write: (...a: unknown[]) => unknown };
  const orig = f._write.bind(s);
  let n = 0;
  f._write = (...a) => (n++, orig(...a));
  return () => n;
}

/** Sends `n` messages from `t` one at a time, each after the previous one came back to `back`. */
async function sendEach(t: Transport, back: ReturnType<typeof startRecording>, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    t.send(msg(i));
    await back.waitFor(i + 1);
  }
  expect(back.messages.map((m) => msgValues(m)[0])).toEqual(Array.from({ length: n }, (_, i) => i));
}

async function unixPair(): Promise<{ connected: net.Socket; accepted: net.Socket }> {
  const dir = mkdtempSync(join(tmpdir(), "mpts-wpath-"));
  const path = join(dir, "s.sock");
  const server = net.createServer();
  server.listen(path);
  await once(server, "listening");
  const acc = once(server, "connection");
  const connected = net.connect({ path });
  await once(connected, "connect");
  const [accepted] = (await acc) as [net.Socket];
  server.close();
  cleanups.push(() => {
    connected.destroy();
    accepted.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  return { connected, accepted };
}

describe("socketWritePath", () => {
  it("connected and accepted Unix sockets write directly, both ways", async () => {
    const { connected, accepted } = await unixPair();
    expect(socketWritePath(connected)).toBe("direct");
    expect(socketWritePath(accepted)).toBe("direct");
    const tc = streamTransport(connected);
    const ta = streamTransport(accepted);
    const atServer = startRecording(ta);
    const atClient = startRecording(tc);
    const viaWrite = countHandleWrites(connected);
    const handleWrites = countWrites(connected);
    await sendEach(tc, atServer, 5);
    expect(handleWrites()).toBe(5);
    expect(viaWrite()).toBe(0);
    const back = countHandleWrites(accepted);
    ta.send(msg(7));
    await atClient.waitFor(1);
    expect(msgValues(atClient.messages[0]!)[0]).toBe(7);
    expect(back()).toBe(0);
    await tc.close();
    await ta.close();
  });

  it("a spawned child's socketpair end writes directly; the child gets every message, in order", async () => {
    // The child echoes every byte of its end (fd 3) back.
    const echo = "const s = new (require('node:net').Socket)({ fd: Number(process.argv[1]), readable: true, writable: true }); s.pipe(s);";
    const spawned = await spawnProcessSocket(process.execPath, (fd) => ["-e", echo, String(fd)], { stdio: ["ignore", "inherit", "inherit"] });
    const exited = waitProcess(spawned.child);
    cleanups.push(async () => {
      spawned.socket.destroy();
      spawned.child.kill("SIGKILL");
      await exited;
    });
    expect(socketWritePath(spawned.socket)).toBe("direct");
    const t = streamTransport(spawned.socket);
    const back = startRecording(t);
    const viaWrite = countHandleWrites(spawned.socket);
    await sendEach(t, back, 10);
    expect(viaWrite()).toBe(0);
    await t.close();
  });

  it("a socket with a timeout, a subclass and other streams do not write directly", async () => {
    const { connected } = await unixPair();
    connected.setTimeout(60_000);
    expect(socketWritePath(connected)).toBe("handle");
    connected.setTimeout(0);
    expect(socketWritePath(connected)).toBe("direct");
    class Sub extends net.Socket {}
    const sub = new Sub();
    expect(socketWritePath(sub)).toBe("stream");
    sub.destroy();
    expect(socketWritePath(new PassThrough())).toBe("stream");
    const bare = new net.Socket(); // no handle yet
    expect(socketWritePath(bare)).toBe("handle");
    bare.destroy();
  });
});
