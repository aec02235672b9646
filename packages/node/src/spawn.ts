/**
 * Child processes connected by a socketpair, as upstream's `SpawnProcess`/`StartSpawned`
 * (libmultiprocess src/mp/util.cpp): the parent creates an AF_UNIX socketpair, the child inherits
 * one end as a file descriptor whose NUMBER is passed in its argv, so any child that follows the
 * convention works: a Node child (see `serveSpawned`) or a libmultiprocess C++ program
 * (`mp::StartSpawned(argv[1])`).
 *
 * Node's `child_process.spawn` with a fourth stdio entry `"pipe"` makes exactly that: libuv
 * creates a Unix socketpair, the child gets one end as fd 3 (close-on-exec cleared), the parent
 * keeps the other as `child.stdio[3]`, a `net.Socket`. There is no fork() in Node, so the
 * argv callback always runs in the parent, before the child exists (upstream had to fix exactly
 * that: #237, "SpawnProcess does not run callback in child").
 *
 * With `readInPlace` (spawnProcess sets it), the parent's end is read through a `SocketReader`
 * (packages/capnp socket-read.ts `readSocketInPlace`, switched in the turn `spawn()` created it,
 * before any read; Node internals, feature-detected, else it stays a Readable stream), as the
 * child's end is in `serveSpawned`.
 *
 * Startup failures (see `spawnProcess` in connect.ts): {@link SpawnError} with the exit status
 * and the tail of the child's stderr ({@link StderrTail}).
 *
 * Threading: call from the thread that will own the connection (the loop thread).
 */

import { spawn, type ChildProcess, type SpawnOptions, type StdioNull, type StdioPipe } from "node:child_process";
import * as net from "node:net";
import { SocketReader, readSocketInPlace } from "@multiprocess-ts/capnp";
import type { Stream } from "node:stream";

/** The child's end of the socketpair is always this fd (stdio index 3). */
export const SPAWN_FD = 3;

type StdioEntry = StdioNull | StdioPipe | "overlapped" | "ipc" | Stream | number | null | undefined;

/** Options of {@link spawnProcessSocket}: child_process options, with stdio limited to 0..2. */
export interface SpawnProcessOptions extends Omit<SpawnOptions, "stdio"> {
  /** stdin, stdout, stderr of the child (default: all "inherit"). Index 3 is the socketpair. */
  stdio?: [StdioEntry, StdioEntry, StdioEntry];
  /**
   * Read the parent's end through a `SocketReader` (returned as `reader`; the socket then emits
   * no `'data'`), where Node allows the switch. Default false (spawnProcess: true).
   */
  readInPlace?: boolean;
}

/**
 * Where the child's stderr goes: `"inherit"` (given or by default) becomes a pipe copied to the
 * parent's stderr, whose tail {@link spawnProcess} reports when the child fails to start (unless
 * `captureStderr` is false); anything else is kept as given.
 */
export function stderrForCapture(opts: SpawnProcessOptions, capture: boolean): { opts: SpawnProcessOptions; captured: boolean } {
  const [stdin, stdout, stderr] = opts.stdio ?? ["inherit", "inherit", "inherit"];
  if (!capture || (stderr !== "inherit" && stderr !== undefined)) return { opts, captured: false };
  return { opts: { ...opts, stdio: [stdin, stdout, "pipe"] }, captured: true };
}

/** What {@link spawnProcessSocket} returns. */
export interface SpawnedSocket {
  child: ChildProcess;
  pid: number;
  /** The parent's end of the socketpair; owned by the caller (usually handed to a transport). */
  socket: net.Socket;
  /** The fd number the child got (always {@link SPAWN_FD}). */
  fd: number;
  /**
   * With `readInPlace`: the reader `socket` is read through (hand both to `streamTransport`; the
   * socket emits no `'data'`); undefined when it is read as a stream.
   */
  reader: SocketReader | undefined;
}

/**
 * Spawn `command` with the argv returned by `args(fd)` (called once, synchronously, in the
 * parent) and a socketpair end as fd `fd` in the child. Resolves once the child process exists
 * (Node's `spawn` event); rejects with the spawn error (e.g. ENOENT) otherwise, leaving nothing
 * open. If `args` throws, nothing is spawned and the promise rejects with that error.
 */
export async function spawnProcessSocket(
  command: string,
  args: (fd: number) => readonly string[],
  opts: SpawnProcessOptions = {},
): Promise<SpawnedSocket> {
  const argv = [...args(SPAWN_FD)];
  const { readInPlace, ...spawnOpts } = opts;
  const [stdin, stdout, stderr] = spawnOpts.stdio ?? ["inherit", "inherit", "inherit"];
  const child = spawn(command, argv, { ...spawnOpts, stdio: [stdin, stdout, stderr, "pipe"] });
  // Switched now, in the turn the socket was created: nothing has been read from it yet.
  const pair = child.stdio[SPAWN_FD];
  let reader: SocketReader | undefined;
  if (readInPlace === true && pair instanceof net.Socket) {
    reader = new SocketReader();
    if (!readSocketInPlace(pair, reader)) reader = undefined;
  }
  return new Promise<SpawnedSocket>((resolve, reject) => {
    const onError = (e: Error): void => {
      child.off("spawn", onSpawn);
      for (const s of child.stdio) (s as net.Socket | null)?.destroy();
      reject(e);
    };
    const onSpawn = (): void => {
      child.off("error", onError);
      const socket = child.stdio[SPAWN_FD];
      if (!(socket instanceof net.Socket) || child.pid === undefined) {
        child.kill("SIGKILL");
        reject(new Error("spawnProcess: child has no socketpair on fd 3"));
        return;
      }
      resolve({ child, pid: child.pid, socket, fd: SPAWN_FD, reader });
    };
    child.once("error", onError);
    child.once("spawn", onSpawn);
  });
}

/** How a child ended: exactly one of `code`/`signal` is non-null. */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * Resolve when `child` has exited (upstream `WaitProcess`). Works whether or not it has already
 * exited. Never rejects.
 */
export function waitProcess(child: ChildProcess): Promise<ExitStatus> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise<ExitStatus>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
}

/**
 * Child side: open the inherited socketpair end named by `fdArg` (the argv string the parent put
 * there, upstream `StartSpawned`). Throws a RangeError for anything that is not a small
 * non-negative integer. The returned socket owns the fd.
 */
export function openSpawnedSocket(fdArg: string | undefined): net.Socket {
  return new net.Socket({ fd: spawnedFd(fdArg), readable: true, writable: true });
}

/**
 * {@link openSpawnedSocket} for `serveSpawned`: the socket is read through `reader` (its
 * `onread` option, packages/capnp socket-read.ts), so it delivers no `'data'` events; hand both
 * to `streamTransport`.
 */
export function openSpawnedReader(fdArg: string | undefined): { socket: net.Socket; reader: SocketReader } {
  const fd = spawnedFd(fdArg);
  const reader = new SocketReader();
  // The Socket constructor reads `onread` (Node's lib/net.js; documented with `new net.Socket()`
  // in later Node docs); @types/node lists it with connect()'s options only.
  const opts: net.SocketConstructorOpts & { onread: net.OnReadOpts } = { fd, readable: true, writable: true, onread: reader.onread };
  return { socket: new net.Socket(opts), reader };
}

function spawnedFd(fdArg: string | undefined): number {
  if (fdArg === undefined || !/^\d{1,9}$/.test(fdArg)) {
    throw new RangeError(`expected an inherited file descriptor number in argv, got ${JSON.stringify(fdArg)}`);
  }
  return Number(fdArg);
}

/** Bytes of the child's stderr {@link StderrTail} keeps by default. */
export const STDERR_TAIL_BYTES = 4096;

/**
 * The last bytes a child wrote to stderr, for error reports, while the bytes still reach the
 * parent's stderr: the child's stderr is a pipe whose data is copied to `process.stderr` as it
 * arrives (so it is not a TTY in the child). Capturing stops at {@link stop} (forwarding goes on).
 */
export class StderrTail {
  #chunks: Buffer[] = [];
  #size = 0;
  #capturing = true;
  readonly #max: number;

  constructor(stream: NodeJS.ReadableStream, max = STDERR_TAIL_BYTES) {
    this.#max = max;
    stream.on("data", (chunk: Buffer) => {
      process.stderr.write(chunk);
      if (!this.#capturing) return;
      this.#chunks.push(chunk);
      this.#size += chunk.length;
      while (this.#size - this.#chunks[0]!.length >= this.#max) this.#size -= this.#chunks.shift()!.length;
    });
  }

  /** The captured tail (at most the limit, decoded as UTF-8). */
  get text(): string {
    const all = Buffer.concat(this.#chunks);
    return all.subarray(Math.max(0, all.length - this.#max)).toString("utf8");
  }

  /** Stops capturing and drops what was kept (the startup went well). */
  stop(): void {
    this.#capturing = false;
    this.#chunks = [];
    this.#size = 0;
  }
}

/**
 * `spawnProcess` failed: the child did not serve its Init object. `code` is `MP_ERR_SPAWN_TIMEOUT`
 * (the `startupTimeout` elapsed; the child was killed) or `MP_ERR_SPAWN_FAILED` (the child exited,
 * or connecting failed; the child was killed if still running). `exitCode` / `signal` say how the
 * child ended, `stderr` is the tail of its stderr when it was captured, `cause` the connection's
 * error.
 */
export class SpawnError extends Error {
  readonly code: "MP_ERR_SPAWN_TIMEOUT" | "MP_ERR_SPAWN_FAILED";
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stderr: string | undefined;

  constructor(
    message: string,
    code: SpawnError["code"],
    status: ExitStatus,
    stderr: string | undefined,
    cause?: unknown,
  ) {
    const tail = stderr === undefined || stderr === "" ? "" : `\n--- child stderr (tail) ---\n${stderr.trimEnd()}`;
    super(`${message}${tail}`, cause === undefined ? undefined : { cause });
    this.name = "SpawnError";
    this.code = code;
    this.exitCode = status.code;
    this.signal = status.signal;
    this.stderr = stderr;
  }
}

/** "exited with code 3" / "was killed by SIGKILL". */
export function describeExit(status: ExitStatus): string {
  return status.signal !== null ? `was killed by ${status.signal}` : `exited with code ${String(status.code)}`;
}
