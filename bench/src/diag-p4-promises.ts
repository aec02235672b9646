/**
 * Bench diagnostic (not part of `pnpm bench`): the promises each side creates per P4 round trip
 * (`callbackSaved(i)`: the server calls the client's saved FooCallback during the call) or per
 * P4b call (`callback(cb, i)`: a fresh callback per call), in two processes over a Unix socket, as
 * the bench runs them (bench/README.md, "P4 (tenth session)").
 *
 *   node bench/dist/diag-p4-promises.js [--lib DIR] [--n 2000] [--p4b] [--where]
 *
 * DIR is a built checkout (default: this one); both processes load its runtime, node package,
 * generated FooInterface and bench impl. After a warm-up both processes turn on an `async_hooks`
 * init hook and count the PROMISE resources created over `n` sequential calls (the client: this
 * process; the server: a forked child, its count read over IPC). With `--where` each side also
 * groups the promises of 100 calls by where they were made (the first frames of the stack below
 * V8's promise constructor), so the counts can be traced to code. The counting hook itself keeps
 * Node's promise hooks on in both processes (as the task frames' AsyncLocalStorage does while a
 * P4 runs); it changes no count. Nothing is asserted.
 *
 * Threading: the main (loop) thread of each process.
 */
import { fork, type ChildProcess } from "node:child_process";
import { createHook } from "node:async_hooks";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadBuild } from "./ab-builds.js";

const opt = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : process.argv[i + 1]!;
};

/** Counts PROMISE inits while on; with `where`, also by the stack frames that made them. */
class PromiseCounter {
  count = 0;
  /** Other async resources (Microtask, TickObject, Immediate, ...) by type: they pay the hooks too. */
  others = new Map<string, number>();
  where: Map<string, number> | null = null;
  readonly #hook = createHook({
    init: (_id, type) => {
      if (type !== "PROMISE") {
        this.others.set(type, (this.others.get(type) ?? 0) + 1);
        return;
      }
      this.count++;
      if (this.where !== null) {
        const at = origin(new Error().stack ?? "");
        this.where.set(at, (this.where.get(at) ?? 0) + 1);
      }
    },
  });
  on(): void {
    this.#hook.enable();
  }
  off(): void {
    this.#hook.disable();
  }
}

/** The first frames of a promise's stack outside Node's async_hooks (who made it). */
function origin(stack: string): string {
  const lines = stack.split("\n").slice(1).map((l) => l.trim().replace(/^at /, ""));
  const own = lines.filter((l) => !l.includes("node:internal/async_hooks") && !l.includes("diag-p4-promises"));
  return own
    .slice(0, 4)
    .map((l) => l.replace(/\(?file:\/\/\S*?\/(packages|proto|bench)\//, "($1/"))
    .join(" < ");
}

function printWhere(side: string, where: [string, number][], calls: number): void {
  process.stdout.write(`${side}, per call, by origin:\n`);
  for (const [at, n] of where.sort((a, b) => b[1] - a[1])) process.stdout.write(`  ${(n / calls).toFixed(2)}  ${at}\n`);
}

async function server(dir: string, path: string): Promise<void> {
  const m = await loadBuild(dir);
  const loop = new m.rt.EventLoop("diag-p4-promises server", { log: { level: "warning" } });
  const listener = await m.nd.listenConnections(path, loop, new m.impl.BenchFoo(), m.foo.FooInterfaceServer);
  const counter = new PromiseCounter();
  process.on("message", (r: string) => {
    if (r === "on" || r === "where") {
      counter.count = 0;
      counter.others.clear();
      counter.where = r === "where" ? new Map() : null;
      counter.on();
      process.send!("ok");
    } else if (r === "off") {
      counter.off();
      process.send!({ count: counter.count, others: [...counter.others], where: counter.where === null ? [] : [...counter.where] });
    } else if (r === "exit") {
      void listener.close({ destroy: true }).then(() => process.exit(0));
    }
  });
  process.send!("ready");
}

function ask<T>(child: ChildProcess, what: string): Promise<T> {
  return new Promise((ok) => {
    child.once("message", (m) => ok(m as T));
    child.send(what);
  });
}

async function main(): Promise<void> {
  if (process.argv[2] === "server") {
    await server(process.argv[3]!, process.argv[4]!);
    return;
  }
  const dir = opt("lib", ".");
  const n = Number(opt("n", "2000"));
  const p4b = process.argv.includes("--p4b");
  const tmp = mkdtempSync(join(tmpdir(), "mpts-p4-promises-"));
  const path = join(tmp, "s.sock");
  const child = fork(fileURLToPath(import.meta.url), ["server", dir, path], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  await new Promise((ok) => child.once("message", ok));
  const m = await loadBuild(dir);
  const loop = new m.rt.EventLoop("diag-p4-promises client", { log: { level: "warning" } });
  const foo = await m.nd.connectSocket(loop, path, m.foo.FooInterfaceClient);
  await foo.initThreadMap();
  const cb = { call: (arg: number) => arg * 2 };
  await foo.saveCallback(cb);
  const one = p4b ? (i: number) => foo.callback(cb, i) : (i: number) => foo.callbackSaved(i);
  const run = async (calls: number): Promise<void> => {
    for (let i = 0; i < calls; i++) if ((await one(i)) !== i * 2) throw new Error("diag-p4-promises: wrong result");
  };
  await run(Math.max(3000, n));
  const counter = new PromiseCounter();
  const measure = async (calls: number, mode: "on" | "where") => {
    await ask(child, mode);
    counter.count = 0;
    counter.others.clear();
    counter.where = mode === "where" ? new Map() : null;
    counter.on();
    await run(calls);
    counter.off();
    const s = await ask<{ count: number; others: [string, number][]; where: [string, number][] }>(child, "off");
    const per = (xs: [string, number][]): string => xs.map(([t, k]) => `${t} ${(k / calls).toFixed(2)}`).join(", ") || "none";
    return { client: counter.count / calls, server: s.count / calls, co: per([...counter.others]), so: per(s.others), cw: [...(counter.where ?? [])], sw: s.where };
  };
  const r = await measure(n, "on");
  const name = p4b ? "P4b callback(cb, i)" : "P4 callbackSaved(i)";
  process.stdout.write(`${name}, build ${dir}: promises per call, client ${r.client.toFixed(2)}, server ${r.server.toFixed(2)} (${n} calls)\n`);
  process.stdout.write(`  other async resources per call: client ${r.co}; server ${r.so}\n`);
  if (process.argv.includes("--where")) {
    const w = await measure(100, "where");
    printWhere("client", w.cw, 100);
    printWhere("server", w.sw, 100);
  }
  await foo.close();
  child.send("exit");
  await new Promise((ok) => child.once("exit", ok));
  rmSync(tmp, { recursive: true, force: true });
}

await main();
