/**
 * Newline-delimited string messages over a `net` socket: the framing of the peer rows of
 * `pnpm bench --peers` (birpc with JSON lines, and capnweb's string RpcTransport, whose messages
 * are JSON without raw newlines). Runs on the main thread of the bench client and of the peer
 * server children.
 */
import type { Socket } from "node:net";

export interface LineChannel {
  send(line: string): void;
  onLine(fn: (line: string) => void): void;
  onClose(fn: (err?: Error) => void): void;
}

/** Wraps `socket`: each `send` writes one line; each complete received line goes to `onLine`. */
export function lineChannel(socket: Socket): LineChannel {
  socket.setEncoding("utf8");
  socket.setNoDelay?.(true);
  let parts: string[] = [];
  let onLine: (line: string) => void = () => undefined;
  socket.on("data", (chunk: string) => {
    let at = 0;
    for (let nl = chunk.indexOf("\n"); nl >= 0; nl = chunk.indexOf("\n", at)) {
      const piece = chunk.slice(at, nl);
      at = nl + 1;
      if (parts.length === 0) onLine(piece);
      else { parts.push(piece); const line = parts.join(""); parts = []; onLine(line); }
    }
    if (at < chunk.length) parts.push(chunk.slice(at));
  });
  return {
    send: (line) => { socket.write(line + "\n"); },
    onLine: (fn) => { onLine = fn; },
    onClose: (fn) => {
      socket.once("error", (e) => fn(e));
      socket.once("close", () => fn());
    },
  };
}
