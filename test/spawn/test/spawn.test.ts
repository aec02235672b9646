// Real child processes connected over a socketpair (upstream SpawnProcess / StartSpawned,
// spawn_tests.cpp), driven through the example InitInterface served by dist/spawn-child.js.
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { fileURLToPath } from "node:url";
import type { Readable } from "node:stream";
import { EventLoop, connectTransport } from "@multiprocess-ts/runtime";
import { socketReadPath, streamTransport } from "@multiprocess-ts/capnp";
import { IpcCalledAfterDisconnectError, IpcInterruptedError } from "@multiprocess-ts/runtime";
import { SpawnError, spawnProcess, spawnProcessSocket, waitProcess, type SpawnedProcess } from "@multiprocess-ts/node";
import { InitInterfaceClient } from "@multiprocess-ts/proto/example/init.capnp.js";
import { assertNoHandleLeaks, handleBaseline, type HandleBaseline } from "@multiprocess-ts/testing";

const CHILD = fileURLToPath(new URL("../dist/spawn-child.js", import.meta.url));

/** Lines of a child's piped stdout, with a way to wait for one. */
class Lines {
  readonly lines: string[] = [];
  private buf = "";
  private waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  constructor(stream: Readable) {
    stream.setEncoding("utf8");
    stream.on("data", (d: string) => {
      this.buf += d;
      let nl: number;
      while ((nl = this.buf.indexOf("\n")) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        this.lines.push(line);
        this.waiters = this.waiters.filter((w) => (w.re.test(line) ? (w.resolve(line), false) : true));
      }
    });
  }
  waitFor(re: RegExp): Promise<string> {
    const hit = this.lines.find((l) => re.test(l));
    if (hit !== undefined) return Promise.resolve(hit);
    return new Promise((resolve) => this.waiters.push({ re, resolve }));
  }
}

let baseline: HandleBaseline;
let loop: EventLoop;
let errors: string[];
beforeEach(() => {
  baseline = handleBaseline();
  errors = [];
  loop = new EventLoop("spawn-test", { log: { level: "warning", logFn: (level, msg) => level === "error" && errors.push(msg) } });
});
afterEach(async () => {
  await loop.done;
  expect(loop.numRefs).toBe(0);
  expect(errors).toEqual([]);
  await assertNoHandleLeaks(baseline);
});

async function spawnChild(extra: string[] = []): Promise<{ proc: SpawnedProcess<InitInterfaceClient>; out: Lines }> {
  const proc = await spawnProcess(process.execPath, (fd) => [CHILD, String(fd), ...extra], {
    loop,
    InitClient: InitInterfaceClient,
    stdio: ["ignore", "pipe", "inherit"],
  });
  return { proc, out: new Lines(proc.child.stdout!) };
}

function expectRpcIdle(proc: SpawnedProcess<unknown>): void {
  expect(proc.connection.rpc.stats()).toEqual({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
}

describe("spawnProcess", () => {
  it("spawns a child, calls it, and the child exits 0 when the parent disconnects", async () => {
    const { proc, out } = await spawnChild();
    const hello = JSON.parse(await out.waitFor(/^\{/)) as { argv: string[]; pid: number };
    expect(hello).toEqual({ argv: ["3"], pid: proc.pid });
    const printer = await proc.init.makePrinter();
    await printer.print("hello");
    expect(await out.waitFor(/^printed:/)).toBe("printed: hello");
    await printer.close();
    await proc.init.close(); // parent disconnects: the child's loop ends
    expect(await proc.exited).toEqual({ code: 0, signal: null });
    // The child's loop ended on its own, with its RPC tables empty.
    const done = await out.waitFor(/^loop done /);
    expect(JSON.parse(done.slice("loop done ".length))).toEqual({ questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 });
    expect(proc.connection.state).toBe("closed");
    expectRpcIdle(proc);
  });

  it("the child exiting disconnects the connection and fails the call in flight", async () => {
    const { proc } = await spawnChild();
    const printer = await proc.init.makePrinter();
    const call = printer.print("exit:3");
    const err = await call.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IpcInterruptedError);
    expect(String((err as Error).message)).toBe("IPC client method call interrupted by disconnect.");
    await proc.connection.disconnected;
    expect(await proc.exited).toEqual({ code: 3, signal: null });
    // Later calls fail fast with the "called after disconnect" error.
    await expect(printer.print("late")).rejects.toBeInstanceOf(IpcCalledAfterDisconnectError);
    await printer.close();
    await proc.init.close();
    expectRpcIdle(proc);
  });

  it("SIGKILL of the child mid-call rejects the parent's call with the disconnect error", async () => {
    const { proc, out } = await spawnChild();
    const printer = await proc.init.makePrinter();
    const call = printer.print("hang");
    await out.waitFor(/^hanging$/); // the child is inside print() now
    proc.child.kill("SIGKILL");
    const err = await call.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IpcInterruptedError);
    expect((err as Error).message).toBe("IPC client method call interrupted by disconnect.");
    expect(await proc.exited).toEqual({ code: null, signal: "SIGKILL" });
    await proc.connection.disconnected;
    await printer.close();
    await proc.init.close();
    expectRpcIdle(proc);
  });

  it("a parent killed with SIGKILL: the child sees the disconnect, ends its loop and exits", async () => {
    // parent (this test) → intermediate (spawn-parent.js) → child (spawn-child.js). The child
    // shares the intermediate's stdout pipe, so EOF on it means both have exited.
    const { spawn } = await import("node:child_process");
    const mid = spawn(process.execPath, [fileURLToPath(new URL("../dist/spawn-parent.js", import.meta.url))], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const out = new Lines(mid.stdout!);
    const eof = new Promise<void>((resolve) => mid.stdout!.once("end", () => resolve()));
    const ready = await out.waitFor(/^parent ready \d+$/);
    const childPid = Number(ready.split(" ")[2]);
    expect(out.lines).toContain("printed: from the intermediate parent");
    mid.kill("SIGKILL");
    expect(await waitProcess(mid)).toEqual({ code: null, signal: "SIGKILL" });
    await eof; // the child has exited too (it held the pipe's other write end)
    const done = out.lines.find((l) => l.startsWith("loop done "));
    expect(done, `child ${childPid} output: ${out.lines.join(" | ")}`).toBeDefined();
    // (Its exit status went to whoever reaped the orphan, so "loop done" + EOF is what we see.)
  });

  it("runs the argv callback once, in the parent, before the child exists (upstream spawn_tests.cpp)", async () => {
    // Upstream #237: SpawnProcess evaluated the callback after fork(), in the child, where a
    // mutex held by another parent thread deadlocked it. Here the callback must run in this
    // process, synchronously, with the fd number, and its result must be the child's argv.
    const calls: { pid: number; fd: number }[] = [];
    const { child, socket, pid } = await spawnProcessSocket(process.execPath, (fd) => {
      calls.push({ pid: process.pid, fd });
      return [CHILD, String(fd), "from-callback"];
    }, { stdio: ["ignore", "pipe", "inherit"] });
    expect(calls).toEqual([{ pid: process.pid, fd: 3 }]);
    const out = new Lines(child.stdout!);
    const hello = JSON.parse(await out.waitFor(/^\{/)) as { argv: string[]; pid: number };
    expect(hello).toEqual({ argv: ["3", "from-callback"], pid });
    expect(pid).not.toBe(process.pid);
    // Closing our end without any RPC: the child's connection ends and it exits 0.
    socket.destroy();
    expect(await waitProcess(child)).toEqual({ code: 0, signal: null });
  });

  it("a throwing argv callback spawns nothing; a missing executable rejects", async () => {
    await expect(spawnProcessSocket(process.execPath, () => {
      throw new Error("no argv for you");
    })).rejects.toThrow("no argv for you");
    const err = await spawnProcessSocket("/nonexistent/mp-child", () => []).catch((e: unknown) => e);
    expect((err as NodeJS.ErrnoException).code).toBe("ENOENT");
  });

  it("rejects and reaps the child when it exits before serving", async () => {
    const err = await spawnProcess(process.execPath, () => ["-e", "process.exit(5)"], { loop, InitClient: InitInterfaceClient }).catch((e: unknown) => e);
    // A SpawnError with the child's exit status; the connection's error is its cause.
    expect(err).toBeInstanceOf(SpawnError);
    expect(err).toMatchObject({ code: "MP_ERR_SPAWN_FAILED", exitCode: 5, signal: null });
    expect(((err as SpawnError).cause as { kind?: string }).kind).toBe("disconnected");
  });

  it.each([true, false])("readInPlace %s: the parent's end is read through a SocketReader (onread) or as a stream; calls work either way", async (readInPlace) => {
    const { child, socket, reader } = await spawnProcessSocket(process.execPath, (fd) => [CHILD, String(fd)], {
      stdio: ["ignore", "pipe", "inherit"],
      readInPlace,
    });
    expect(reader !== undefined).toBe(readInPlace);
    expect(socketReadPath(socket)).toBe(readInPlace ? "onread" : "stream");
    const out = new Lines(child.stdout!);
    const init = await connectTransport(loop, streamTransport(socket, undefined, undefined, reader), InitInterfaceClient);
    const printer = await init.makePrinter();
    await printer.print(`read ${String(readInPlace)}`);
    expect(await out.waitFor(/^printed:/)).toBe(`printed: read ${String(readInPlace)}`);
    await printer.close();
    await init.close();
    expect(await waitProcess(child)).toEqual({ code: 0, signal: null });
  });

  it("waitProcess works after the child already exited", async () => {
    const { child, socket } = await spawnProcessSocket(process.execPath, () => ["-e", "process.exit(7)"]);
    const first = await waitProcess(child);
    expect(first).toEqual({ code: 7, signal: null });
    expect(await waitProcess(child)).toEqual(first);
    socket.destroy();
  });
});
