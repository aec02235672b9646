// Shared by the socket reader tests (socket-read.test.ts, idle-slab.test.ts): byte patterns and a
// real Unix socket pair one end of which reads through a SocketReader. Runs on the test's thread.
import { expect } from "vitest";
import * as net from "node:net";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SocketReader, readSocketInPlace, socketReadPath } from "@multiprocess-ts/capnp";

/** `n` bytes of a pattern that differs per `seed` and per offset. */
export function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >>> 8)) & 0xff;
  return b;
}

/** The parts, one after the other, in one new array. */
export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

/**
 * A Unix socket pair whose end `ours` is read through a SocketReader: "connected" creates it with
 * the reader's onread (as connectSocket does); "accepted" is a net.Server's socket (accepted with
 * pauseOnConnect), switched by readSocketInPlace (as listenConnections does). Closing both ends and
 * removing the socket's directory goes onto `cleanups`.
 */
export async function readerSocketPair(
  side: "connected" | "accepted",
  cleanups: (() => void | Promise<void>)[],
): Promise<{ ours: net.Socket; reader: SocketReader; peer: net.Socket }> {
  const dir = mkdtempSync(join(tmpdir(), "mpts-onread-"));
  const path = join(dir, "s.sock");
  const server = net.createServer({ pauseOnConnect: side === "accepted" });
  server.listen(path);
  await once(server, "listening");
  const accepted = once(server, "connection");
  const reader = new SocketReader();
  const connected = side === "connected" ? net.connect({ path, onread: reader.onread }) : net.connect({ path });
  await once(connected, "connect");
  const [other] = (await accepted) as [net.Socket];
  server.close();
  const [ours, peer] = side === "connected" ? [connected, other] : [other, connected];
  if (side === "accepted") expect(readSocketInPlace(ours, reader)).toBe(true);
  expect(socketReadPath(ours)).toBe("onread");
  expect(socketReadPath(peer)).toBe("stream");
  // Read through the reader: the socket never emits 'data'. (Paused first, as the transport
  // pauses it when it attaches, so that listening does not start reading.)
  ours.pause();
  ours.on("data", () => expect.unreachable("'data' on a socket read through onread"));
  cleanups.push(() => {
    ours.destroy();
    peer.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  return { ours, reader, peer };
}
