/**
 * Bench diagnostic (not part of `pnpm bench`): the SERVER's CPU per P1 call of two builds of this
 * repository, A/B in the SAME two processes under the same load (issue 13, eighth session).
 *
 *   node bench/dist/diag-server-ab.js --a DIR --b DIR [--n 2000] [--blocks 20] [--pipe 0] [--floor]
 *                                     [--warm 3] [--print] [--marks] [--clients | --both] [--bench-loop]
 *   taskset -c 1 node bench/dist/diag-server-ab.js ...      # pinned: both processes on one CPU
 *
 * DIR is a built checkout (e.g. a main worktree and this one). This process is the server: it
 * loads each build's runtime, node package, generated FooInterface and bench impl (two module
 * graphs side by side, each with its own capnp-ts) and serves one socket per build with
 * `listenConnections`. A forked client (this build's FooInterfaceClient) connects to both and,
 * on request, makes `n` sequential `add` calls (P1's loop: `await foo.add()` in a loop; with
 * `--bench-loop` the bench's own shape, pair-client.ts: an async function per call awaited by the
 * loop, two promise hops from the Return to the next call), or `--pipe K` calls with K in flight
 * (P2's), on one of them. Blocks alternate between the builds (the order flips every block);
 * each block's server `process.cpuUsage()` over its calls is one sample. Prints each build's
 * median and range and the median of the per-block paired difference B − A: wall-clock runs of
 * the whole bench drift on a shared machine by more than a 1 µs change; paired blocks do not.
 * Nothing is asserted.
 *
 * Threading: the main (loop) thread of each process.
 */
import { fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { EventLoop } from "@multiprocess-ts/runtime";
import { connectAddClients } from "./add-clients.js";
import { RawClient, startRawServer } from "./raw.js";

type Req = { op: "add"; path: number; n: number; pipe: number; benchLoop: boolean } | { op: "raw"; n: number } | { op: "exit" };

/** P1's `add` on the wire (a Finish riding with each Call): request / reply frame payloads. */
const RAW_REQ = 156;
const RAW_REPLY = 76;

const opt = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : process.argv[i + 1]!;
};

/** The calls a block made, as the client saw them: its CPU per call and per-call wall-clock quantiles. */
interface ClientBlock { cpu: number; p25: number; p50: number }

async function client(args: string[]): Promise<void> {
  // `--clients`: each socket is called by its own build's client (both sides A/B), else by this build's.
  const dirs = JSON.parse(args.shift()!) as string[] | null;
  const paths = args;
  const loop = new EventLoop("diag-server-ab-client", { log: { level: "warning" } });
  const rawPath = paths.length > 2 ? paths.pop()! : undefined;
  const foos = await connectAddClients(dirs, paths, loop, "diag-server-ab-client");
  const raw = rawPath === undefined ? undefined : await RawClient.connect(rawPath);
  const rawReq = RawClient.request(RAW_REQ, RAW_REPLY);
  const cpu = (): number => {
    const u = process.cpuUsage();
    return u.user + u.system;
  };
  process.on("message", (m: Req) => {
    void (async () => {
      if (m.op === "exit") {
        for (const f of foos) await f.close();
        raw?.close();
        process.exit(0);
      }
      const n = m.n;
      const us = new Float64Array(n);
      const c0 = cpu();
      if (m.op === "raw") {
        for (let i = 0; i < n; i++) {
          const t0 = performance.now();
          await raw!.call(rawReq);
          us[i] = (performance.now() - t0) * 1000;
        }
      } else if (m.pipe <= 1 && m.benchLoop) {
        // The bench's own loop shape (pair-client.ts, stats.ts timeSequential): an async function
        // per call, awaited by the loop, so the next call starts two promise hops after the Return.
        const foo = foos[m.path]!;
        const add = async (i: number): Promise<void> => {
          if ((await foo.add(i, 1)) !== i + 1) throw new Error("diag-server-ab: wrong sum");
        };
        for (let i = 0; i < n; i++) {
          const t0 = performance.now();
          await add(i);
          us[i] = (performance.now() - t0) * 1000;
        }
      } else if (m.pipe <= 1) {
        const foo = foos[m.path]!;
        for (let i = 0; i < n; i++) {
          const t0 = performance.now();
          await foo.add(i, 1);
          us[i] = (performance.now() - t0) * 1000;
        }
      } else {
        const foo = foos[m.path]!;
        let next = 0;
        const lane = async (): Promise<void> => {
          while (next < n) await foo.add(next++, 1);
        };
        await Promise.all(Array.from({ length: m.pipe }, lane));
      }
      const c = (cpu() - c0) / n;
      us.sort();
      process.send!({ cpu: c, p25: us[n >> 2]!, p50: us[n >> 1]! } satisfies ClientBlock);
    })();
  });
  process.send!("ready");
}

/** What the server needs from one build (loaded by absolute path). */
interface Build {
  listen(path: string): Promise<{ close(o: { destroy: boolean }): Promise<void> }>;
}

async function loadBuild(dir: string): Promise<Build> {
  const url = (p: string): string => pathToFileURL(join(resolve(dir), p)).href;
  const rt = (await import(url("packages/runtime/dist/index.js"))) as typeof import("@multiprocess-ts/runtime");
  const nd = (await import(url("packages/node/dist/index.js"))) as typeof import("@multiprocess-ts/node");
  const foo = (await import(url("proto/dist/test/foo.capnp.js"))) as typeof import("@multiprocess-ts/proto/test/foo.capnp.js");
  const impl = (await import(url("bench/dist/foo-impl.js"))) as typeof import("./foo-impl.js");
  const loop = new rt.EventLoop(`diag-server-ab ${dir}`, { log: { level: "warning" } });
  return { listen: (path) => nd.listenConnections(path, loop, new impl.BenchFoo(), foo.FooInterfaceServer) };
}

async function server(): Promise<void> {
  const dirs = [opt("a", "."), opt("b", ".")];
  const n = Number(opt("n", "2000"));
  const blocks = Number(opt("blocks", "20"));
  const pipe = Number(opt("pipe", "0"));
  const floor = process.argv.includes("--floor") && pipe <= 1;
  const benchLoop = process.argv.includes("--bench-loop");
  // A build whose modules this harness imports itself runs faster here than an identical copy
  // (ninth session: 0.3-0.65 µs per call in favour of that side, in 20 of 20 blocks): say so.
  const HARNESS_ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
  for (const d of dirs) {
    if (resolve(d) === HARNESS_ROOT) process.stderr.write(`note: ${d} is this harness's own checkout, which the A/B favours; compare two other copies, in both orders\n`);
  }
  const builds = [];
  for (const d of dirs) builds.push(await loadBuild(d));
  const tmp = mkdtempSync(join(tmpdir(), "mpts-server-ab-"));
  const paths = dirs.map((_, i) => join(tmp, `s${i}.sock`));
  const listeners = await Promise.all(builds.map((b, i) => b.listen(paths[i]!)));
  const rawPath = join(tmp, "raw.sock");
  const rawServer = floor ? await startRawServer(rawPath) : undefined;
  const clientDirs = process.argv.includes("--clients") || process.argv.includes("--both") ? dirs.map((d) => resolve(d)) : null;
  const child = fork(fileURLToPath(import.meta.url), ["client", JSON.stringify(clientDirs), ...paths, ...(floor ? [rawPath] : [])], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const reply = (): Promise<unknown> => new Promise((ok) => child.once("message", ok));
  await reply();
  const seen: ClientBlock[][] = [[], [], []];
  /** One block on build `path` (0, 1), or on the raw floor (2). */
  const block = async (path: number, calls: number): Promise<number> => {
    const c0 = process.cpuUsage();
    child.send((path === 2 ? { op: "raw", n: calls } : { op: "add", path, n: calls, pipe, benchLoop }) satisfies Req);
    const got = (await reply()) as ClientBlock;
    const c = process.cpuUsage(c0);
    seen[path]!.push(got);
    return (c.user + c.system) / calls;
  };
  const modes = floor ? [0, 1, 2] : [0, 1];
  const warm = Number(opt("warm", "3"));
  for (let w = 0; w < warm; w++) for (const p of modes) await block(p, Math.max(n, 3000)); // warm-up
  const got: number[][] = [[], [], []];
  for (const xs of seen) xs.length = 0; // the warm-up's
  const marks = process.argv.includes("--marks");
  for (let b = 0; b < blocks; b++) {
    if (marks) process.stdout.write(`#block ${b}\n`); // between V8's trace lines (--trace-opt, ...)
    // Rotate which mode goes first, and reverse every other block, so none always follows another.
    const rot = modes.map((_, j) => modes[(b + j) % modes.length]!);
    for (const p of b % 2 === 0 ? rot : rot.reverse()) got[p]!.push(await block(p, n));
  }
  child.send({ op: "exit" } satisfies Req);
  await new Promise((ok) => child.once("exit", ok));
  await Promise.all(listeners.map((l) => l.close({ destroy: true })));
  await new Promise((ok) => (rawServer === undefined ? ok(undefined) : rawServer.close(ok)));
  rmSync(tmp, { recursive: true, force: true });
  const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;
  const what = pipe > 1 ? `add, ${pipe} in flight` : "sequential add";
  process.stdout.write(`server CPU per call, µs (${blocks} blocks of ${n} ${what}, alternating)\n`);
  const names = [...dirs, "raw floor"];
  if (process.argv.includes("--print")) {
    for (let b = 0; b < blocks; b++) process.stdout.write(`block ${b}: ${modes.map((i) => `${"ABF"[i]} ${got[i]![b]!.toFixed(1)}`).join("  ")}\n`);
  }
  modes.forEach((i) => {
    const xs = got[i]!;
    process.stdout.write(`${"ABF"[i]} ${names[i]!.padEnd(24)} median ${med(xs).toFixed(2).padStart(7)}  range ${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}\n`);
  });
  if (floor) {
    for (const i of [0, 1]) {
      const over = got[i]!.map((x, k) => x - got[2]![k]!);
      process.stdout.write(`${"AB"[i]} minus floor per block: median ${med(over).toFixed(2)} µs, range ${Math.min(...over).toFixed(2)}–${Math.max(...over).toFixed(2)}\n`);
    }
  }
  const paired = (what: string, xs: number[][]): void => {
    const diff = xs[1]!.map((x, i) => x - xs[0]![i]!);
    const below = diff.filter((d) => d < 0).length;
    process.stdout.write(`${what} B − A per block: median ${med(diff).toFixed(2)} µs, range ${Math.min(...diff).toFixed(2)}–${Math.max(...diff).toFixed(2)}; B lower in ${below} of ${diff.length} blocks\n`);
  };
  paired("server CPU:", got);
  // The client's side of the same blocks (its own build's client with --clients, else this build's).
  const clientRows: [string, (b: ClientBlock) => number][] = [["client CPU", (b) => b.cpu]];
  if (pipe <= 1) clientRows.push(["wall p25", (b) => b.p25], ["wall p50", (b) => b.p50]);
  for (const [what, pick] of clientRows) {
    const xs = seen.map((bs) => bs.map(pick));
    process.stdout.write(`${what.padEnd(10)} medians: ${modes.map((i) => `${"ABF"[i]} ${med(xs[i]!).toFixed(2)}`).join("  ")}\n`);
    paired(`${what}:`, xs);
  }
}

if (process.argv[2] === "client") await client(process.argv.slice(3));
else await server();
