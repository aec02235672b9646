/**
 * Builds and runs bench/c/pingpong.c for the floor breakdown (floor.ts): `gcc -O2` into
 * bench/.build/ (cached under a hash of the source, the compiler's version and the flags), as
 * cpp.ts builds the C++ reference. A missing compiler is a loud error, never a silent skip.
 * Runs on the diagnostic's main thread (build time and run time of `node bench/dist/floor.js`).
 */
import { readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { BENCH_ROOT, cachedBinary, runTool } from "./build-cache.js";

const SOURCE = join(BENCH_ROOT, "c", "pingpong.c");
const CFLAGS = ["-O2", "-Wall", "-Wextra"];

const run = (tool: string, args: string[]): Promise<string> =>
  runTool(tool, args, "bench floor", "the C ping-pong needs a C compiler: apt-get install gcc", 1 << 20);

let built: Promise<string> | undefined;

/** Builds (once, cached on disk) and returns the path of the pingpong binary. */
export function buildPingPong(): Promise<string> {
  built ??= doBuild();
  return built;
}

async function doBuild(): Promise<string> {
  const cc = (await run("gcc", ["--version"])).split("\n")[0] ?? "";
  return cachedBinary("pingpong", [await readFile(SOURCE), cc, CFLAGS.join(" ")], async (out) => {
    const tmp = `${out}.tmp-${process.pid}`;
    await run("gcc", [...CFLAGS, "-o", tmp, SOURCE]);
    await rename(tmp, out);
  });
}

export interface PingPongResult { mode: string; n: number; p50_us: number; p99_us: number; cpu_client_us: number; cpu_server_us: number }

/** One C run: `mode` "block" (blocking read/write) or "epoll" (libuv's pattern). */
export async function runPingPong(mode: "block" | "epoll", req: number, reply: number, n: number, warmup: number, pin: boolean): Promise<PingPongResult> {
  const bin = await buildPingPong();
  const args = [mode, String(req), String(reply), String(n), String(warmup)];
  const out = pin ? await run("taskset", ["-c", "0", bin, ...args]) : await run(bin, args);
  return JSON.parse(out) as PingPongResult;
}
