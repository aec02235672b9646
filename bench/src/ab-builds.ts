/**
 * Shared by the paired two-build diagnostics (diag-p3-ab.ts, diag-p4-ab.ts; not part of
 * `pnpm bench`): loading one build of this repository by directory (its own module graph, its own
 * capnp-ts), the server child that serves each build on its own socket and reports its CPU time
 * over IPC, and per-process counters.
 *
 * Threading: the main thread of the diagnostic's processes.
 */
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

/** The modules of one build that the diagnostics use. */
export interface BuildMods {
  rt: typeof import("@multiprocess-ts/runtime");
  nd: typeof import("@multiprocess-ts/node");
  foo: typeof import("@multiprocess-ts/proto/test/foo.capnp.js");
  impl: typeof import("./foo-impl.js");
  /** Absolute path of the build's bench/dist/worker.js. */
  workerJs: string;
}

/** Loads the build at `dir` (a built checkout) as a module graph of its own. */
export async function loadBuild(dir: string): Promise<BuildMods> {
  const abs = (p: string): string => join(resolve(dir), p);
  const url = (p: string): string => pathToFileURL(abs(p)).href;
  return {
    rt: (await import(url("packages/runtime/dist/index.js"))) as BuildMods["rt"],
    nd: (await import(url("packages/node/dist/index.js"))) as BuildMods["nd"],
    foo: (await import(url("proto/dist/test/foo.capnp.js"))) as BuildMods["foo"],
    impl: (await import(url("bench/dist/foo-impl.js"))) as BuildMods["impl"],
    workerJs: abs("bench/dist/worker.js"),
  };
}

/** Write-family syscalls of process `pid` so far (Linux /proc/PID/io), or NaN. */
export function writeCount(pid: number | "self"): number {
  try {
    const m = /^syscw: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, "utf8"));
    return m === null ? NaN : Number(m[1]);
  } catch {
    return NaN;
  }
}

/** This process's CPU time, µs. */
export function cpuUs(): number {
  const c = process.cpuUsage();
  return c.user + c.system;
}

/**
 * The server child's body: serves build `dirs[i]`'s BenchFoo on `paths[i]`; answers each IPC
 * message with its CPU time (µs), and "exit" by closing and exiting.
 */
export async function serveBuilds(dirs: string[], paths: string[]): Promise<void> {
  const listeners: { close(o: { destroy: boolean }): Promise<void> }[] = [];
  for (let i = 0; i < dirs.length; i++) {
    const m = await loadBuild(dirs[i]!);
    const loop = new m.rt.EventLoop(`ab-server ${i}`, { log: { level: "warning" } });
    listeners.push(await m.nd.listenConnections(paths[i]!, loop, new m.impl.BenchFoo(), m.foo.FooInterfaceServer));
  }
  process.on("message", (r: string) => {
    if (r === "exit") {
      void Promise.all(listeners.map((l) => l.close({ destroy: true }))).then(() => process.exit(0));
      return;
    }
    process.send!(cpuUs());
  });
  process.send!("ready");
}

/** The server child's CPU time now (µs). */
export function serverCpu(child: ChildProcess): Promise<number> {
  return new Promise((ok) => {
    child.once("message", (m) => ok(m as number));
    child.send("cpu");
  });
}

/** Median of `xs`. */
export function median(xs: readonly number[]): number {
  return [...xs].sort((x, y) => x - y)[xs.length >> 1]!;
}

/** Prints each build's medians of `keys` and the median per-block difference B − A. */
export function printAb<R extends Record<string, number>>(dirs: string[], got: R[][], keys: readonly (keyof R & string)[], print: boolean): void {
  if (print) {
    got[0]!.forEach((_, b) => {
      process.stdout.write(`block ${b}: ${[0, 1].map((k) => `${"AB"[k]} ${keys.map((x) => got[k]![b]![x].toFixed(1)).join(" ")}`).join("   ")}\n`);
    });
  }
  for (const k of [0, 1]) {
    process.stdout.write(`${"AB"[k]} ${dirs[k]!.padEnd(20)} ${keys.map((x) => `${x} ${median(got[k]!.map((r) => r[x])).toFixed(2)}`).join("  ")}\n`);
  }
  const diff = keys.map((x) => {
    const d = got[1]!.map((r, b) => r[x] - got[0]![b]![x]);
    return `${x} ${median(d).toFixed(2)} (B<A in ${d.filter((v) => v < 0).length}/${d.length})`;
  });
  process.stdout.write(`B − A per block, median: ${diff.join("  ")}\n`);
}
