/**
 * The raw-socket floor: plain Node ping-pong over a Unix socket between two processes, with a u32
 * (little-endian) length prefix per frame and no RPC at all. A request frame's payload starts with
 * the u32 length the reply payload must have; the server answers with a frame of that length (the
 * request payload itself when the lengths match, i.e. an echo). Sizes are chosen by the bench so
 * the bytes on the wire equal those of the RPC call being compared.
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";

/** Splits a byte stream into u32-length-prefixed payloads with few copies. */
export class FrameReader {
  #chunks: Buffer[] = [];
  #have = 0;
  #need = -1; // payload length of the frame being read, or -1 while reading the header
  constructor(private readonly onFrame: (payload: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#have += chunk.length;
    for (;;) {
      if (this.#need < 0) {
        if (this.#have < 4) return;
        this.#need = this.#peekU32();
        this.#take(4);
      }
      if (this.#have < this.#need) return;
      const payload = this.#take(this.#need);
      this.#need = -1;
      this.onFrame(payload);
    }
  }

  #peekU32(): number {
    const first = this.#chunks[0]!;
    if (first.length >= 4) return first.readUInt32LE(0);
    return Buffer.concat(this.#chunks, 4).readUInt32LE(0);
  }

  /** Removes and returns the first n bytes (a view when they sit in one chunk). */
  #take(n: number): Buffer {
    this.#have -= n;
    const first = this.#chunks[0];
    if (n === 0) return Buffer.alloc(0);
    if (first!.length === n) { this.#chunks.shift(); return first!; }
    if (first!.length > n) { this.#chunks[0] = first!.subarray(n); return first!.subarray(0, n); }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.#chunks[0]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.#chunks.shift(); else this.#chunks[0] = c.subarray(k);
    }
    return out;
  }
}

function header(n: number): Buffer {
  const h = Buffer.allocUnsafe(4);
  h.writeUInt32LE(n, 0);
  return h;
}

/** Writes one frame (header + payload) with a single syscall where possible. */
export function writeFrame(socket: Socket, payload: Buffer): void {
  if (payload.length <= 4096) {
    const f = Buffer.allocUnsafe(4 + payload.length);
    f.writeUInt32LE(payload.length, 0);
    payload.copy(f, 4);
    socket.write(f);
  } else {
    socket.cork();
    socket.write(header(payload.length));
    socket.write(payload);
    socket.uncork();
  }
}

/** The floor's server: answers each frame with a frame of the requested length. */
export function startRawServer(path: string): Promise<Server> {
  const replies = new Map<number, Buffer>();
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    const reader = new FrameReader((payload) => {
      const want = payload.readUInt32LE(0);
      if (want === payload.length) { writeFrame(socket, payload); return; }
      let r = replies.get(want);
      if (r === undefined) { r = Buffer.alloc(want); replies.set(want, r); }
      writeFrame(socket, r);
    });
    socket.on("data", (c: Buffer) => reader.push(c));
    socket.on("error", () => socket.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve(server));
  });
}

/** Client side of the floor: send a frame, get a promise of the reply. Replies come in order. */
export class RawClient {
  readonly #waiting: ((b: Buffer) => void)[] = [];
  #head = 0;
  private constructor(readonly socket: Socket) {
    const reader = new FrameReader((payload) => {
      const w = this.#waiting[this.#head];
      this.#waiting[this.#head++] = undefined as never;
      if (this.#head > 1024 && this.#head * 2 > this.#waiting.length) {
        this.#waiting.splice(0, this.#head);
        this.#head = 0;
      }
      w!(payload);
    });
    socket.on("data", (c: Buffer) => reader.push(c));
  }

  static connect(path: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = createConnection(path);
      s.setNoDelay(true);
      s.once("connect", () => { s.off("error", reject); resolve(new RawClient(s)); });
      s.once("error", reject);
    });
  }

  /** A request payload of `reqBytes` asking for a reply payload of `replyBytes`. */
  static request(reqBytes: number, replyBytes: number): Buffer {
    const b = Buffer.alloc(Math.max(4, reqBytes));
    b.writeUInt32LE(replyBytes, 0);
    return b;
  }

  call(payload: Buffer): Promise<Buffer> {
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
      writeFrame(this.socket, payload);
    });
  }

  close(): void { this.socket.end(); }
}
