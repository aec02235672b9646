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
 * Threading: call from the thread that will own the connection (the loop thread).
 */

import { spawn, type ChildProcess, type SpawnOptions, type StdioNull, type StdioPipe } from "node:child_process";
import * as net from "node:net";
import type { Stream } from "node:stream";

/** The child's end of the socketpair is always this fd (stdio index 3). */
export const SPAWN_FD = 3;

type StdioEntry = StdioNull | StdioPipe | "overlapped" | "ipc" | Stream | number | null | undefined;

/** Options of {@link spawnProcessSocket}: child_process options, with stdio limited to 0..2. */
export interface SpawnProcessOptions extends Omit<SpawnOptions, "stdio"> {
  /** stdin, stdout, stderr of the child (default: all "inherit"). Index 3 is the socketpair. */
  stdio?: [StdioEntry, StdioEntry, StdioEntry];
}

/** What {@link spawnProcessSocket} returns. */
export interface SpawnedSocket {
  child: ChildProcess;
  pid: number;
  /** The parent's end of the socketpair; owned by the caller (usually handed to a transport). */
  socket: net.Socket;
  /** The fd number the child got (always {@link SPAWN_FD}). */
  fd: number;
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
  const [stdin, stdout, stderr] = opts.stdio ?? ["inherit", "inherit", "inherit"];
  const child = spawn(command, argv, { ...opts, stdio: [stdin, stdout, stderr, "pipe"] });
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
      resolve({ child, pid: child.pid, socket, fd: SPAWN_FD });
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
  if (fdArg === undefined || !/^\d{1,9}$/.test(fdArg)) {
    throw new RangeError(`expected an inherited file descriptor number in argv, got ${JSON.stringify(fdArg)}`);
  }
  const fd = Number(fdArg);
  return new net.Socket({ fd, readable: true, writable: true });
}
