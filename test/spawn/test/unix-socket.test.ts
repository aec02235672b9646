// Issue 3, "done when": a TS client and a TS server in two processes exchange calls, callbacks and
// capabilities over a Unix socket with the libmultiprocess conventions (construct, makeThread,
// Context, destroy). The server is a real child process listening on a real Unix socket.
import { describe, it, expect } from "vitest";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import { fileURLToPath } from "node:url";
import { EventLoop } from "@multiprocess-ts/runtime";
import { connectSocket, waitProcess } from "@multiprocess-ts/node";
import { InitInterfaceClient } from "@multiprocess-ts/proto/example/init.capnp.js";
import type { PrinterInterface } from "@multiprocess-ts/proto/example/printer.capnp.js";
import { assertNoHandleLeaks, handleBaseline } from "@multiprocess-ts/testing";

const CHILD = fileURLToPath(new URL("../dist/unix-child.js", import.meta.url));
const idle = { questions: 0, answers: 0, imports: 0, exports: 0, embargoes: 0 };

/** Reads the child's JSON event lines; `next(name)` resolves with the first unread event of that name. */
function events(stream: NodeJS.ReadableStream): { next(name: string): Promise<Record<string, unknown>>; seen: string[] } {
  const seen: string[] = [];
  const queued: Record<string, unknown>[] = [];
  const waiters: { name: string; resolve(e: Record<string, unknown>): void }[] = [];
  readline.createInterface({ input: stream }).on("line", (line) => {
    const e = JSON.parse(line) as Record<string, unknown>;
    seen.push(String(e.event));
    const i = waiters.findIndex((w) => w.name === e.event);
    if (i >= 0) waiters.splice(i, 1)[0]!.resolve(e);
    else queued.push(e);
  });
  return {
    seen,
    next(name) {
      const i = queued.findIndex((e) => e.event === name);
      if (i >= 0) return Promise.resolve(queued.splice(i, 1)[0]!);
      return new Promise((resolve) => waiters.push({ name, resolve }));
    },
  };
}

describe("two processes over a Unix socket (libmultiprocess conventions)", () => {
  it("construct, makeThread, Context, a callback into the client, capabilities both ways, destroy", async () => {
    const baseline = handleBaseline();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mp-unix-"));
    const socketPath = path.join(dir, "calc.sock");
    const child = spawn(process.execPath, [CHILD, socketPath], { stdio: ["ignore", "pipe", "inherit"] });
    const ev = events(child.stdout!);
    await ev.next("listening");

    const errors: string[] = [];
    const loop = new EventLoop("client", { log: { level: "warning", logFn: (l, m) => void (l === "error" && errors.push(m)) } });
    // The printer callback runs in this process, on a thread-mapped request from the child.
    let callbackRequests = 0;
    loop.hooks.asyncRequestStart = () => void callbackRequests++;
    const printed: string[] = [];
    const printer: PrinterInterface = { print: (text) => void printed.push(text) };

    // connectSocket bootstraps Init and runs the `construct` ThreadMap exchange.
    const init = await connectSocket(loop, socketPath, InitInterfaceClient);
    const calc = await init.makeCalculator(printer); // our Printer crosses as a capability
    await calc.solveEquation("6 * 7"); // the child calls printer.print back during the call
    await calc.solveEquation("2 * 3 * 4");
    expect(printed).toEqual(["6 * 7 = 42", "2 * 3 * 4 = 24"]);
    // Our calls carried a Context: the child made one server Thread for this client thread
    // (makeThread, once per thread and connection) and ran each request on it.
    expect(ev.seen.filter((e) => e === "makeThread")).toHaveLength(1);
    expect(ev.seen.filter((e) => e === "asyncRequestStart").length).toBeGreaterThanOrEqual(3);
    // The child's print calls carried a Context too, naming our callback Thread.
    expect(callbackRequests).toBe(2);

    await calc.close(); // remote destroy: the implementation is gone before close() returns
    expect(ev.seen).toContain("calculator-destroyed");
    await init.close(); // closes the connection; the child's listener closes and it exits
    const done = await ev.next("done");
    expect(done.stats).toEqual(idle);
    expect(await waitProcess(child)).toMatchObject({ code: 0 });

    await loop.done;
    expect(errors).toEqual([]);
    fs.rmSync(dir, { recursive: true, force: true });
    await assertNoHandleLeaks(baseline);
  });
});
