/**
 * Processes: upstream spawn_tests.cpp's "SpawnProcess does not run callback in child", and ours:
 * a spawned child killed with SIGKILL in the middle of a call; the parent's calls reject with the
 * disconnect errors and nothing leaks. The SIGKILLed child runs one bundle of its built JS with a
 * V8 code cache (bundle.ts `cachedChildArgv`), and is spawned ahead of use (spare.ts): each
 * iteration takes the child spawned during an earlier one, which started up and began serving
 * its socketpair end in the background, connects to it (spawnProcessSocket + connectStream, the
 * two halves of spawnProcess) and kills it. The SpawnProcess child is a shell.
 *
 * Threading: main thread of the mptest process.
 */

import type * as net from "node:net";
import { createInterface } from "node:readline";
import { deferred } from "@multiprocess-ts/capnp";
import { EventLoop } from "@multiprocess-ts/runtime";
import { FooInterfaceClient } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { clientConnection, connectStream, spawnProcessSocket, waitProcess, type SpawnedSocket } from "@multiprocess-ts/node";
import { assertRpcIdle, expectReject } from "@multiprocess-ts/testing";
import type { Scenario } from "../scenario.js";
import { cachedChildArgv } from "../bundle.js";
import { Spare } from "../spare.js";
import { CALLED_AFTER_DISCONNECT, INTERRUPTED_BY_DISCONNECT, check, checkEq } from "./util.js";

// The child runs as one bundle of its built JS, with its code cache (bundle.ts): it starts and
// serves in ~100 ms of CPU instead of ~350 ms module by module (~145 ms as a plain ES bundle).
const CHILD_JS = new URL("../children/foo-server.js", import.meta.url);

/**
 * The child's environment: ours without NODE_EXTRA_CA_CERTS, which makes every Node process read
 * and parse that certificate file at startup (~40 ms of CPU); the child only serves a socketpair.
 */
function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  return env;
}

/** A spawned child: the spawn (settles at Node's `spawn` event) and, once known, the process. */
interface ChildSlot {
  spawned: Promise<SpawnedSocket>;
  sp?: SpawnedSocket;
  dead: boolean;
  parked: boolean;
}

/** Referenced or not: the child process, its socketpair end and its stdout/stderr pipes. */
function setRef(sp: SpawnedSocket, ref: boolean): void {
  // The stdio pipes of a child are net.Sockets (typed as plain streams).
  const pipes = [sp.child.stdout, sp.child.stderr] as (net.Socket | null)[];
  for (const h of [sp.child, sp.socket, ...pipes]) {
    if (h === null) continue;
    if (ref) h.ref();
    else h.unref();
  }
}

/** The next SIGKILL victim, spawned while earlier iterations run. */
const childSpare = new Spare<ChildSlot>({
  start() {
    const childArgv = cachedChildArgv(CHILD_JS);
    const slot: ChildSlot = { dead: false, parked: false, spawned: undefined as unknown as Promise<SpawnedSocket> };
    slot.spawned = spawnProcessSocket(process.execPath, (fd: number) => [...childArgv, String(fd)], {
      stdio: ["ignore", "pipe", "pipe"],
      env: childEnv(),
    });
    slot.spawned.then(
      (sp) => {
        slot.sp = sp;
        sp.child.once("exit", () => (slot.dead = true));
        if (slot.parked) setRef(sp, false);
      },
      () => (slot.dead = true),
    );
    return slot;
  },
  park(slot) {
    slot.parked = true;
    if (slot.sp !== undefined) setRef(slot.sp, false);
  },
  unpark(slot) {
    slot.parked = false;
    if (slot.sp !== undefined) setRef(slot.sp, true);
  },
  alive: (slot) => !slot.dead,
  async discard(slot) {
    const sp = await slot.spawned.catch(() => undefined);
    if (sp === undefined) return;
    const exited = waitProcess(sp.child);
    sp.child.kill("SIGKILL");
    sp.socket.destroy();
    sp.child.stdout?.destroy();
    sp.child.stderr?.destroy();
    await exited;
  },
});

/** Spawned children handed out already started (`warm`) or spawned on the spot (`cold`). */
export function childSpareStats(): { warm: number; cold: number } {
  const { warm, cold } = childSpare.stats;
  return { warm, cold };
}

/** Kills the spare child, if any (end of a test run; the CLI process just exits). */
export async function closeChildSpare(): Promise<void> {
  await childSpare.close();
}

export const spawnScenarios: Scenario[] = [
  {
    name: "SpawnProcess does not run callback in child",
    origin: "upstream spawn_tests.cpp:50 (#237)",
    async run(ctx) {
      // Upstream holds a mutex in another thread at fork time: a callback run in the post-fork
      // child would deadlock. Node has no fork(); the test keeps the claim: the argv callback runs
      // exactly once, in the parent (our pid, our module state), before the child exists, and the
      // child then runs normally and exits 0. The child need not be a Node process (starting one
      // costs ~80 ms of CPU, most of this scenario's time): a shell checks that it got the fd
      // number 3 and that fd 3 is its end of the socket pair.
      const parentState = { spawned: false };
      const calls: { pid: number; spawnedAlready: boolean; fd: number }[] = [];
      const sp = await spawnProcessSocket(
        "/bin/sh",
        (fd: number) => {
          calls.push({ pid: process.pid, spawnedAlready: parentState.spawned, fd });
          return ["-c", '[ "$1" = 3 ] && [ -S /dev/fd/3 ]', "mptest-spawn-child", String(fd)];
        },
        { stdio: ["ignore", "ignore", "inherit"] },
      );
      parentState.spawned = true;
      sp.socket.destroy();
      const status = await waitProcess(sp.child);
      ctx.log(`child ${sp.pid} exited ${JSON.stringify(status)}`);
      checkEq(calls.length, 1, "callback calls");
      checkEq(calls[0]!.pid, process.pid, "callback ran in the parent");
      checkEq(calls[0]!.spawnedAlready, false, "callback ran before the child existed");
      checkEq(status.code, 0, "child exit code (it checked it got fd number 3, a socket)");
      check(sp.pid !== process.pid, "child is another process");
    },
  },
];

export const processScenarios: Scenario[] = [
  {
    name: "Spawned child killed with SIGKILL in the middle of a call",
    origin: "ours: processes",
    async run(ctx) {
      const errors: string[] = [];
      const loop = new EventLoop("mptest-parent", {
        log: { level: "warning", logFn: (level, msg) => (ctx.log(`[parent] ${level}: ${msg}`), level === "error" && errors.push(msg)) },
      });
      const sp = await childSpare.take().spawned;
      const exited = waitProcess(sp.child);
      const foo = await connectStream(loop, sp.socket, FooInterfaceClient);
      const connection = clientConnection(foo);
      const { stdout, stderr } = sp.child;
      check(stdout !== null && stderr !== null, "child stdout/stderr are pipes");
      const lines = createInterface({ input: stdout });
      // The child's stderr goes to the iteration log: if it dies on its own, the failure says why.
      const errLines = createInterface({ input: stderr });
      errLines.on("line", (l) => ctx.log(`[child stderr] ${l}`));
      void exited.then((st) => ctx.log(`child exited: ${JSON.stringify(st)}`));
      try {
        const inCall = deferred<void>();
        lines.on("line", (l) => l === "in-call" && inCall.resolve());
        checkEq(await foo.add(1, 2), 3, "add before the kill");
        const call = foo.callFn();
        await inCall.promise; // the child is inside callFn
        // A few more calls in flight at the moment of the kill (seed-chosen count).
        const extra = Array.from({ length: ctx.rng.int(3) }, (_, i) => foo.add(i, i));
        sp.child.kill("SIGKILL");
        await expectReject(call, INTERRUPTED_BY_DISCONNECT);
        for (const p of extra) await expectReject(p, INTERRUPTED_BY_DISCONNECT);
        const after = await expectReject(foo.add(1, 2), /IPC client method call/);
        check(after.message === CALLED_AFTER_DISCONNECT || after.message === INTERRUPTED_BY_DISCONNECT, `after-kill error: ${after.message}`);
        const status = await exited;
        checkEq(status.signal, "SIGKILL", "child was killed");
      } finally {
        lines.close();
        errLines.close();
        sp.child.stdout?.destroy();
        sp.child.stderr?.destroy();
        await foo.close();
        await connection.disconnected;
        await loop.done;
      }
      assertRpcIdle(connection, "parent connection");
      checkEq(loop.numRefs, 0, "parent loop refs");
      check(errors.length === 0, `parent error logs: ${errors.join("; ")}`);
    },
  },
];
