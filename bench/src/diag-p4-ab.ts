/**
 * Bench diagnostic (not part of `pnpm bench`): P4 (`callbackSaved`: the server calls the client's
 * saved callback during the call) of two builds of this repository, A/B in the SAME two processes
 * under the same load (issue 13, ninth session; bench/README.md "P4 (ninth session)").
 *
 *   node bench/dist/diag-p4-ab.js --a DIR --b DIR [--n 2000] [--blocks 20] [--warm 3] [--print] [--p4b]
 *   taskset -c 0 node bench/dist/diag-p4-ab.js ...      # pinned: both processes on one CPU
 *
 * DIR is a built checkout (e.g. the baseline worktree and this one). Both processes load each
 * build's runtime, node package, generated FooInterface and bench impl (two module graphs side by
 * side, each with its own capnp-ts). The forked server child serves one socket per build; this
 * process connects one client per build to it (`initThreadMap`, `saveCallback` as the bench does)
 * and runs blocks of `n` sequential `callbackSaved` calls alternating between the builds (the
 * order flips every block). Per block: the p50, this process's CPU per call, the server's CPU per
 * call (its `process.cpuUsage()` read over IPC right before and after the block) and write
 * syscalls per call of each side. `--p4b`: P4b instead (`callback(cb, i)`: a fresh callback
 * exported per call, which the server destroys before it returns). Prints each build's medians and the median of the per-block
 * paired differences B − A. Promise hooks are process-wide: a change that decides whether one
 * build turns them on (the task frames' AsyncLocalStorage) is not seen fairly here (the other
 * build's hooks slow both); compare such changes with whole runs. Nothing is asserted.
 *
 * Threading: the main (loop) thread of each process.
 */
import { fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { cpuUs, loadBuild, printAb, serveBuilds, serverCpu, writeCount } from "./ab-builds.js";

const opt = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : process.argv[i + 1]!;
};

async function main(): Promise<void> {
  const dirs = [opt("a", "."), opt("b", ".")];
  if (process.argv[2] === "server") {
    await serveBuilds(process.argv.slice(3, 5), process.argv.slice(5, 7));
    return;
  }
  const n = Number(opt("n", "2000"));
  const blocks = Number(opt("blocks", "20"));
  const warm = Number(opt("warm", "3"));
  const tmp = mkdtempSync(join(tmpdir(), "mpts-p4-ab-"));
  const paths = dirs.map((_, i) => join(tmp, `s${i}.sock`));
  const child = fork(fileURLToPath(import.meta.url), ["server", ...dirs, ...paths], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  await new Promise((ok) => child.once("message", ok));
  const p4b = process.argv.includes("--p4b");
  const cb = { call: (arg: number) => arg * 2 };
  const clients: { callbackSaved(i: number): Promise<number>; callback(c: typeof cb, i: number): Promise<number>; close(): Promise<void> }[] = [];
  for (let i = 0; i < dirs.length; i++) {
    const m = await loadBuild(dirs[i]!);
    const loop = new m.rt.EventLoop(`diag-p4-ab-client ${i}`, { log: { level: "warning" } });
    const foo = await m.nd.connectSocket(loop, paths[i]!, m.foo.FooInterfaceClient);
    await foo.initThreadMap();
    await foo.saveCallback({ call: (arg: number) => arg * 2 });
    clients.push(foo);
  }
  type Row = { p50: number; client: number; server: number; cw: number; sw: number };
  const block = async (k: number, calls: number): Promise<Row> => {
    const foo = clients[k]!;
    const us = new Float64Array(calls);
    const s0 = await serverCpu(child);
    const w0 = writeCount("self");
    const sw0 = writeCount(child.pid!);
    const c0 = cpuUs();
    for (let i = 0; i < calls; i++) {
      const t0 = performance.now();
      if ((await (p4b ? foo.callback(cb, i) : foo.callbackSaved(i))) !== i * 2) throw new Error("diag-p4-ab: wrong callback result");
      us[i] = (performance.now() - t0) * 1000;
    }
    const c1 = cpuUs();
    const w1 = writeCount("self");
    const sw1 = writeCount(child.pid!);
    const s1 = await serverCpu(child);
    us.sort();
    return { p50: us[calls >> 1]!, client: (c1 - c0) / calls, server: (s1 - s0) / calls, cw: (w1 - w0) / calls, sw: (sw1 - sw0) / calls };
  };
  for (let w = 0; w < warm; w++) for (let k = 0; k < dirs.length; k++) await block(k, Math.max(n, 3000));
  const got: Row[][] = [[], []];
  for (let b = 0; b < blocks; b++) {
    for (const k of b % 2 === 0 ? [0, 1] : [1, 0]) got[k]!.push(await block(k, n));
  }
  for (const c of clients) await c.close();
  child.send("exit");
  await new Promise((ok) => child.once("exit", ok));
  rmSync(tmp, { recursive: true, force: true });
  process.stdout.write(`${p4b ? "P4b callback(cb, i)" : "P4 callbackSaved"}, ${blocks} blocks of ${n} calls per build, alternating; µs (cw/sw: write syscalls per call, client/server)\n`);
  printAb(dirs, got, ["p50", "client", "server", "cw", "sw"], process.argv.includes("--print"));
}

await main();
