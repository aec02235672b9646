/**
 * Bench diagnostic (not part of `pnpm bench`): the SERVER's CPU per call with its accepted sockets
 * read through `onread` (listenConnections' default, `readInPlace`) against the Readable stream
 * (`readInPlace: false`), same build, same process, alternating (issue 13, sixth session).
 *
 *   node bench/dist/server-reads.js [--n 10000] [--echo 100] [--rounds 5] [--only onread|stream]
 *
 * `--only` measures one path (e.g. under `node --cpu-prof`, one profile per path).
 * This process is the server: two `listenConnections` listeners serving `BenchFoo`, one per read
 * path. A forked client (this file with `client`) connects to both with `connectSocket` and, on
 * request, makes `n` sequential `add` calls (P1's loop) or `echo` 1 MiB `passData` calls (P5's)
 * on one of them; the server's `process.cpuUsage()` over each batch / calls is one sample.
 * Prints the median and range per path (odd rounds run the paths in the other order). Nothing is
 * asserted.
 *
 * Threading: the main (loop) thread of each process.
 */
import { fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { EventLoop } from "@multiprocess-ts/runtime";
import { connectSocket, listenConnections } from "@multiprocess-ts/node";
import { FooInterfaceClient, FooInterfaceServer } from "@multiprocess-ts/proto/test/foo.capnp.js";
import { BenchFoo } from "./foo-impl.js";

type Req = { op: "add" | "echo"; path: number; n: number } | { op: "exit" };

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : Number(process.argv[i + 1]);
};

async function client(paths: string[]): Promise<void> {
  const loop = new EventLoop("server-reads-client", { log: { level: "warning" } });
  const foos = await Promise.all(paths.map((p) => connectSocket(loop, p, FooInterfaceClient)));
  const data = new Uint8Array(1 << 20).fill(7);
  process.on("message", (m: Req) => {
    void (async () => {
      if (m.op === "exit") {
        for (const f of foos) await f.close();
        process.exit(0);
      }
      const foo = foos[m.path]!;
      if (m.op === "add") for (let i = 0; i < m.n; i++) await foo.add(i, 1);
      else for (let i = 0; i < m.n; i++) await foo.passData(data);
      process.send!("done");
    })();
  });
  process.send!("ready");
}

async function server(): Promise<void> {
  const n = arg("n", 10000);
  const echo = arg("echo", 100);
  const rounds = arg("rounds", 5);
  const dir = mkdtempSync(join(tmpdir(), "mpts-server-reads-"));
  const loop = new EventLoop("server-reads", { log: { level: "warning" } });
  const only = process.argv[process.argv.indexOf("--only") + 1];
  const modes = process.argv.includes("--only") ? [only === "onread"] : [true, false];
  const paths = modes.map((_, i) => join(dir, `s${i}.sock`));
  const listeners = await Promise.all(modes.map((readInPlace, i) => listenConnections(paths[i]!, loop, new BenchFoo(), FooInterfaceServer, { readInPlace })));
  const child = fork(fileURLToPath(import.meta.url), ["client", ...paths], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const reply = (): Promise<void> => new Promise((resolve) => child.once("message", () => resolve()));
  await reply();
  const batch = async (req: Req & { n: number }): Promise<number> => {
    const c0 = process.cpuUsage();
    child.send(req);
    await reply();
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / req.n;
  };
  // Warm-up: both paths, both loops.
  for (let p = 0; p < modes.length; p++) {
    await batch({ op: "add", path: p, n: Math.min(n, 5000) });
    await batch({ op: "echo", path: p, n: Math.min(echo, 20) });
  }
  const got: Record<string, number[]> = {};
  const add = (k: string, v: number): void => void (got[k] ??= []).push(v);
  for (let r = 0; r < rounds; r++) {
    // Odd rounds run the paths in the other order, so that neither always follows the other.
    const order = r % 2 === 0 ? modes.map((_, p) => p) : modes.map((_, p) => modes.length - 1 - p);
    for (const p of order) add(`add ${modes[p] ? "onread" : "stream"}`, await batch({ op: "add", path: p, n }));
    for (const p of order) add(`echo ${modes[p] ? "onread" : "stream"}`, await batch({ op: "echo", path: p, n: echo }));
  }
  child.send({ op: "exit" });
  await new Promise((resolve) => child.once("exit", resolve));
  await Promise.all(listeners.map((l) => l.close({ destroy: true })));
  rmSync(dir, { recursive: true, force: true });
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  process.stdout.write(`server CPU per call, µs (${rounds} rounds; add: ${n} sequential calls, echo: ${echo} 1 MiB passData)\n`);
  for (const [k, xs] of Object.entries(got)) {
    process.stdout.write(`${k.padEnd(14)} median ${med(xs).toFixed(1).padStart(8)}  range ${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}\n`);
  }
  // The same round's two paths ran back to back: their ratio is steadier than either figure.
  for (const what of ["add", "echo"]) {
    const a = got[`${what} onread`];
    const b = got[`${what} stream`];
    if (a === undefined || b === undefined) continue;
    const ratios = a.map((x, i) => x / b[i]!);
    process.stdout.write(`${what} onread / stream, per round: median ${med(ratios).toFixed(2)}× range ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}×\n`);
  }
}

if (process.argv[2] === "client") await client(process.argv.slice(3));
else await server();
