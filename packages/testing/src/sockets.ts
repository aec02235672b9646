/**
 * A connected pair of real Unix-domain sockets for transport tests: a listener on a fresh
 * temporary path, one client connected to it and the accepted server end. Runs on the test's
 * thread.
 */
import * as net from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface UnixSocketPair {
  client: net.Socket;
  /** The accepted end (paused when `pauseOnConnect` was set). */
  server: net.Socket;
  /** Destroys both ends, closes the listener and removes the temporary directory. */
  close(): Promise<void>;
}

export async function unixSocketPair(opts: { pauseOnConnect?: boolean } = {}): Promise<UnixSocketPair> {
  const dir = mkdtempSync(join(tmpdir(), "mpts-pair-"));
  const path = join(dir, "s.sock");
  const listener = net.createServer({ pauseOnConnect: opts.pauseOnConnect === true });
  const accepted = new Promise<net.Socket>((r) => listener.once("connection", r));
  await new Promise<void>((r) => listener.listen(path, r));
  const client = net.connect(path);
  await new Promise<void>((r, j) => client.once("connect", r).once("error", j));
  const server = await accepted;
  return {
    client,
    server,
    async close() {
      client.destroy();
      server.destroy();
      await new Promise<void>((r) => listener.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
