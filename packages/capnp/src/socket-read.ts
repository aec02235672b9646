/**
 * Reading a socket the library creates itself (connectSocket's Unix/TCP sockets, a spawned
 * child's inherited socketpair end) through `net.Socket`'s public `onread` option instead of its
 * Readable stream: the kernel reads into a buffer we hand out, and a callback gets the byte
 * count. No stream machinery per read (no Buffer allocated by Node per read, no `push`, no
 * `'data'` event), and a large message is read straight into its final buffer.
 *
 * Node's contract (lib/net.js, lib/internal/stream_base_commons.js `onStreamRead`): `buffer()` is
 * called when the socket's handle is set up and again after every callback; the next read goes
 * into the buffer it returned last (a read fills at most that buffer). `callback(n, buf)` gets
 * each read of n > 0 bytes; returning false stops reading (`readStop`) until `resume()`.
 * `pause()` / `resume()` stop and restart reading; EOF still ends the Readable side (`'end'`),
 * and read errors destroy the socket (`'error'`, `'close'`) as usual.
 *
 * Where reads go:
 * - Between messages (and inside a frame's segment table, or near the end of a segment): the free
 *   part of a slab, from where the previous read ended. Small messages are decoded as views of
 *   the slab; a slab region is handed to the kernel once and never again (the next read goes
 *   after it, or into a new slab), so no message a reader still holds is ever overwritten
 *   (docs/rpc.md "Incoming messages read in place"). Slab offsets follow the stream's offsets
 *   modulo 8, so frames start word-aligned. The first slab is 1 KiB, later ones 4 KiB while
 *   reads are small ({@link ACTIVE_SLAB}: a connection of sequential calls, whose messages the
 *   engine reads in place with no copy), 64 KiB from a read that fills its whole region (more
 *   was waiting in the kernel) until {@link SMALL_AGAIN} reads in a row have been small again.
 *   A reader that read nothing for a whole period of the idle sweep ({@link sweepIdleReaders},
 *   one timer per thread) gets a 1 KiB slab again, so an idle connection holds no more.
 * - While a large message is reassembled (at least {@link DIRECT_MIN} bytes of the current
 *   segment missing): exactly the free part of that segment's buffer ({@link FrameDecoder.region},
 *   allocated under the decoder's usual allowance), so the kernel writes the payload where the
 *   engine reads it: no copy in user space.
 *
 * Before a transport is attached, a read is kept as is and reading stops (the callback returns
 * false); the transport decodes it when it attaches and restarts reading on `start()`.
 *
 * Sockets Node creates (a `net.Server`'s accepted sockets, `child_process`'s socketpair end) have
 * no `onread` option; {@link readSocketInPlace} switches one to a reader before its first read,
 * by setting exactly what the `Socket` constructor sets for the option. That uses Node internals
 * (the constructor's symbol-keyed `kBuffer` / `kBufferGen` / `kBufferCb` fields and the handle's
 * `useUserBuffer`, lib/net.js), so it is feature-detected at run time: the symbols are found on
 * a probe socket constructed with a known `onread` option and must hold what it was given, and
 * the socket must be a plain, unread `net.Socket` with a handle. Where anything differs it
 * returns false and the caller reads the socket's Readable stream as before.
 *
 * Threading: the thread that owns the socket (the loop thread, or a worker's own sockets).
 */

import { Socket, type OnReadOpts } from "node:net";

/**
 * Bytes of a slab: the first one and an idle connection's (SMALL), one a connection of small
 * reads goes on with once it has used up a slab (ACTIVE: a new ArrayBuffer costs ~1.5 µs, about
 * a call's whole transport work, so a call loop should not need one every five reads), and one
 * while reads are large (LARGE).
 */
const SMALL_SLAB = 1024;
export const ACTIVE_SLAB = 4 * 1024;
const LARGE_SLAB = 64 * 1024;
/**
 * A reader whose slab is over SMALL_SLAB and that read nothing for one to two periods of this
 * (ms) gets a small slab again (see {@link sweepIdleReaders}): one timer per thread, armed while
 * such readers exist, not per read.
 */
export const IDLE_SLAB_MS = 2000;
/**
 * Times one reader's slab may be swapped while the kernel holds its region (each swap leaves one
 * small native listener on the socket's handle until it closes, see {@link SocketReader.sweep}).
 */
const MAX_SWAPS = 16;
/** A read of at most this many bytes counts as small. */
const SMALL_READ = 256;
/** Back to small slabs after this many small reads in a row. */
const SMALL_AGAIN = 64;
/** Bytes of a segment that must still be missing for the kernel to read into it directly. */
export const DIRECT_MIN = 4 * 1024;

/** The `onread` callbacks of every SocketReader (weakly held), for {@link socketReadPath}. */
const READER_CALLBACKS = new WeakSet<object>();

/** The transport side of a {@link SocketReader} (stream.ts). */
export interface ReadTarget {
  /** Where the next bytes go when they belong in a message being reassembled, else null. */
  readRegion(min: number): Uint8Array | null;
  /**
   * `n` bytes were read into the start of `region`; `direct`: `region` came from
   * {@link readRegion}. Returns false to stop reading.
   */
  bytesRead(region: Uint8Array, n: number, direct: boolean): boolean;
}

/**
 * The `onread` option of one socket: create the socket with `{ onread: reader.onread }`, then
 * hand both to `streamTransport(socket, limits, flow, reader)`. One reader per socket.
 */
export class SocketReader {
  /** Pass as the `onread` option when creating the socket. */
  readonly onread: OnReadOpts;
  private target: ReadTarget | null = null;
  private slab: Uint8Array | null = null;
  private slabBuf: ArrayBuffer | null = null; // the slab's buffer
  /** Next free byte of `slab`. */
  private pos = 0;
  /** Bytes read so far (only its value modulo 8 matters: the alignment of the next frame). */
  private streamPos = 0;
  /** The region last handed out came from the target (a message's own buffer). */
  private direct = false;
  /** Reads before a target was attached. */
  private early: Uint8Array[] | null = null;
  /** Size of the next new slab (SMALL_SLAB or LARGE_SLAB), and the small reads in a row. */
  private slabSize = SMALL_SLAB;
  private smallReads = 0;
  /** Sees every read after the target (see {@link tap}). */
  private tapFn: ((buf: Uint8Array, n: number) => void) | null = null;
  /** The socket read through this reader (known once attached; null for other streams). */
  private socket: Socket | null = null;
  /** `streamPos` when the idle sweep last looked (-1: not yet), and the slab swaps made. */
  private sweptPos = -1;
  private swaps = 0;
  private released = false;

  constructor() {
    this.onread = { buffer: () => this.next(), callback: (n, buf) => this.read(n, buf) };
    READER_CALLBACKS.add(this.onread.callback);
  }

  /**
   * Hand reads to `target` from now on, starting with those made before. `socket`: the socket
   * read through this reader, so that an idle one's large slab can be swapped for a small one.
   */
  attach(target: ReadTarget, socket?: Socket): void {
    if (this.target !== null) throw new Error("SocketReader.attach: already attached");
    this.target = target;
    this.socket = socket ?? null;
    const early = this.early;
    this.early = null;
    if (early !== null) for (const v of early) if (!target.bytesRead(v, v.byteLength, false)) break;
  }

  /**
   * Also hand every read to `fn` (the first `n` bytes of `buf`, valid during the call), after the
   * target had it: the listener's frame tracker (listen.ts), in place of a `'data'` listener.
   * `null` stops.
   */
  tap(fn: ((buf: Uint8Array, n: number) => void) | null): void {
    this.tapFn = fn;
  }

  /** Bytes of the slab in use (for tests). */
  get slabBytes(): number {
    return this.slab?.byteLength ?? 0;
  }

  /** Reading is over (the transport ended): the idle sweep forgets this reader. */
  release(): void {
    this.released = true;
    this.untrack();
    if (BIG_SLABS.size === 0) stopSweep();
  }

  /**
   * The idle sweep's look at this reader (its slab is over SMALL_SLAB): when nothing was read
   * since the last look, the slab goes back to SMALL_SLAB. If the kernel holds a message's own
   * buffer (a large message being reassembled), the slab is only dropped; if it holds the
   * slab's free region, that region is swapped for one in a new small slab the way Node sets the
   * first one up (the handle's `useUserBuffer` and the socket's `kBuffer` field, as
   * {@link readSocketInPlace} does), at most MAX_SWAPS times per socket: each swap pushes one
   * small native read listener on the handle that lives until the socket closes (Node has no
   * other way to change the buffer of a handle that is not reading). True when released;
   * false while the reader is busy, or when it cannot be released (then it is not looked at
   * again).
   */
  sweep(): boolean {
    const s = this.slab;
    if (this.released || s === null || s.byteLength <= SMALL_SLAB) return this.untrack();
    if (this.streamPos !== this.sweptPos) {
      this.sweptPos = this.streamPos; // read since the last look (or the first look): busy
      return false;
    }
    if (!this.direct && !this.swapRegion()) return this.untrack();
    if (this.direct) this.slab = this.slabBuf = null; // the next slab is made when the message is in
    this.slabSize = SMALL_SLAB;
    this.smallReads = 0;
    this.untrack();
    return true;
  }

  private untrack(): false {
    BIG_SLABS.delete(this);
    this.sweptPos = -1;
    return false;
  }

  /** The kernel's next read goes into a new small slab instead of the current region (see sweep). */
  private swapRegion(): boolean {
    const socket = this.socket;
    const k = onreadSlots();
    if (socket === null || k === null || this.swaps >= MAX_SWAPS || socket.destroyed) return false;
    const f = socket as unknown as Fields & { _handle?: Partial<UserBufferHandle> | null };
    const h = f._handle;
    if (h === null || typeof h !== "object" || typeof h.useUserBuffer !== "function") return false;
    const cur = f[k.buffer]; // must be the slab's free region, the one next() handed out last
    if (f[k.cb] !== this.onread.callback || !(cur instanceof Uint8Array) || cur.buffer !== this.slabBuf || cur.byteOffset !== this.pos) return false;
    const slab = new Uint8Array(SMALL_SLAB);
    const pos = this.streamPos & 7;
    const region = slab.subarray(pos);
    try {
      h.useUserBuffer(region);
    } catch {
      return false;
    }
    f[k.buffer] = region; // keeps it alive while the handle holds it, as Node's own field does
    this.swaps++;
    this.slab = slab;
    this.slabBuf = slab.buffer as ArrayBuffer;
    this.pos = pos;
    return true;
  }

  private next(): Uint8Array {
    const t = this.target;
    const d = t === null ? null : t.readRegion(DIRECT_MIN);
    if (d !== null) {
      this.direct = true;
      return d;
    }
    this.direct = false;
    let s = this.slab;
    let size = this.slabSize;
    // A slab with less than a quarter of the wanted size left (or a small one while reads are
    // large, or a large one once they are small again) is replaced by a new one.
    if (s === null || s.byteLength - this.pos < size >>> 2 || s.byteLength !== size) {
      // A small slab used up: ACTIVE_SLAB from now on (while slabSize is SMALL_SLAB the slab is
      // null or small). Branch-free: a new connection's first replacement must not take a path
      // that a warm process's replacements never took (no type feedback there: the optimised
      // function would be thrown away, bench/README "Cold start (tenth session)").
      size = size === SMALL_SLAB && s !== null ? ACTIVE_SLAB : size;
      this.slabSize = size;
      // Zeroed: a message read in place may see the buffer around it (never past its own end).
      this.slab = s = new Uint8Array(size);
      this.slabBuf = s.buffer as ArrayBuffer;
      this.pos = this.streamPos & 7;
      if (size > SMALL_SLAB) track(this);
    }
    // A view made from the buffer: about half the cost of subarray() (its species lookup).
    const pos = this.pos;
    return new Uint8Array(this.slabBuf!, pos, s.byteLength - pos);
  }

  private read(n: number, buf: Uint8Array): boolean {
    const direct = this.direct;
    this.streamPos += n;
    if (!direct && buf.buffer === this.slabBuf) {
      this.pos = buf.byteOffset + n;
      if (n === buf.byteLength) {
        this.slabSize = LARGE_SLAB; // the region was filled: more was waiting
        this.smallReads = 0;
      } else if (n > SMALL_READ) this.smallReads = 0;
      else if (++this.smallReads >= SMALL_AGAIN) this.slabSize = ACTIVE_SLAB;
    }
    const t = this.target;
    let more = false;
    if (t === null) (this.early ??= []).push(buf.subarray(0, n));
    else more = t.bytesRead(buf, n, direct);
    const tap = this.tapFn;
    if (tap !== null) tap(buf, n);
    return more;
  }
}

/** Readers whose slab is over SMALL_SLAB: what the idle sweep looks at. */
const BIG_SLABS = new Set<SocketReader>();
let sweepTimer: NodeJS.Timeout | null = null;

function track(r: SocketReader): void {
  BIG_SLABS.add(r);
  sweepTimer ??= setInterval(SWEEP, IDLE_SLAB_MS).unref();
}

function SWEEP(): void {
  sweepIdleReaders();
}

/**
 * One look of the idle sweep at every reader with a large slab (the timer's, every
 * {@link IDLE_SLAB_MS}; tests call it to stand for the timer): a reader that read nothing since
 * the previous look gets a small slab again ({@link SocketReader.sweep}). Returns how many did.
 * The timer stops once no reader has a large slab.
 */
export function sweepIdleReaders(): number {
  let released = 0;
  for (const r of [...BIG_SLABS]) if (r.sweep()) released++;
  if (BIG_SLABS.size === 0) stopSweep();
  return released;
}

function stopSweep(): void {
  if (sweepTimer !== null) clearInterval(sweepTimer);
  sweepTimer = null;
}

/** The symbols a net.Socket keeps its `onread` option under (lib/net.js). */
interface OnreadSlots {
  buffer: symbol;
  gen: symbol;
  cb: symbol;
}

/** Found once per process; null when this Node keeps the option some other way. */
let slots: OnreadSlots | null | undefined;

type Fields = Record<symbol, unknown>;

/**
 * The symbols found on a handle-less probe socket constructed with a known `onread` option: each
 * described as Node names it, present once, and holding what the option gave (`kBuffer` true for
 * a buffer function). Anything else: null.
 */
function onreadSlots(): OnreadSlots | null {
  if (slots !== undefined) return slots;
  slots = null;
  try {
    const gen = (): Uint8Array => new Uint8Array(8);
    const cb = (): boolean => true;
    const opts = { onread: { buffer: gen, callback: cb } } as unknown as ConstructorParameters<typeof Socket>[0];
    const probe = new Socket(opts); // no handle, no fd: nothing is opened
    const syms = Object.getOwnPropertySymbols(probe);
    const one = (d: string): symbol | null => {
      const found = syms.filter((x) => x.description === d);
      return found.length === 1 ? found[0]! : null;
    };
    const buffer = one("kBuffer");
    const g = one("kBufferGen");
    const c = one("kBufferCb");
    const f = probe as unknown as Fields;
    if (buffer !== null && g !== null && c !== null && f[buffer] === true && f[g] === gen && f[c] === cb) slots = { buffer, gen: g, cb: c };
    probe.destroy();
  } catch {
    slots = null;
  }
  return slots;
}

/** What {@link readSocketInPlace} needs of a socket's handle. */
interface UserBufferHandle {
  useUserBuffer(buf: Uint8Array): void;
  readStop(): number;
  readStart(): number;
}

/**
 * Read `socket`, a `net.Socket` Node created (accepted by a `net.Server`, a `child_process` stdio
 * pipe), through `reader` from now on, as if it had been created with `{ onread: reader.onread }`:
 * sets the fields the Socket constructor sets for that option and hands the handle the first
 * buffer (lib/net.js `initSocketHandle`). Only while nothing has been read through its Readable
 * stream yet: call it before the socket's first read (with `pauseOnConnect`, or in the same turn
 * the socket was created) and before anyone listens for `'data'`.
 *
 * Returns false, changing nothing, when the Node internals it relies on are not as expected
 * (see the file comment) or the socket is not a plain unread socket with a handle; the caller
 * then reads the Readable stream. One reader per socket.
 */
export function readSocketInPlace(socket: Socket, reader: SocketReader): boolean {
  const k = onreadSlots();
  if (k === null || Object.getPrototypeOf(socket) !== Socket.prototype) return false;
  const f = socket as unknown as Fields & { _handle?: Partial<UserBufferHandle> | null };
  const h = f._handle;
  if (h === null || typeof h !== "object" || typeof h.useUserBuffer !== "function" || typeof h.readStop !== "function") return false;
  if (socket.destroyed || socket.connecting || !socket.readable || socket.readableLength !== 0 || socket.listenerCount("data") !== 0) return false;
  if (f[k.buffer] !== null || f[k.gen] !== null || f[k.cb] !== null) return false;
  const gen = reader.onread.buffer as () => Uint8Array;
  const first = gen();
  try {
    h.useUserBuffer(first);
  } catch {
    return false;
  }
  f[k.gen] = gen;
  f[k.cb] = reader.onread.callback;
  f[k.buffer] = first;
  return true;
}

/**
 * How `socket` is read: `"onread"` when a {@link SocketReader}'s callback is its `onread` callback
 * (created with the option, or switched by {@link readSocketInPlace}), else `"stream"` (its Readable
 * stream; also when the internals are not found). For tests and diagnostics.
 */
export function socketReadPath(socket: Socket): "onread" | "stream" {
  const k = onreadSlots();
  if (k === null) return "stream";
  const cb = (socket as unknown as Fields)[k.cb];
  return typeof cb === "function" && READER_CALLBACKS.has(cb) ? "onread" : "stream";
}
