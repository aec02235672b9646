/**
 * The C++ reference for `pnpm bench`: bench/cpp/foo-bench.c++ on proto/test/foo.capnp, built with
 * `capnp compile -oc++` + `g++ -O2 $(pkg-config --cflags --libs capnp-rpc)` into bench/.build/
 * (cached under a hash of the sources, tool versions and flags). Plain Cap'n Proto RPC: C++ client
 * ↔ C++ server in two processes over a Unix socket.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { BENCH_ROOT, BUILD_DIR, cachedBinary, runTool } from "./build-cache.js";

const REPO_ROOT = join(BENCH_ROOT, "..");
const SOURCE = join(BENCH_ROOT, "cpp", "foo-bench.c++");
const PROTO = join(REPO_ROOT, "proto");
const SCHEMAS = [join(PROTO, "test", "foo.capnp"), join(PROTO, "mp", "proxy.capnp")];

const run = (tool: string, args: string[]): Promise<string> =>
  runTool(tool, args, "bench", "the C++ reference needs capnp, g++, pkg-config and libcapnp-dev");

let built: Promise<string> | undefined;

/** Builds (once, cached on disk) and returns the path of the foo-bench binary. */
export function buildCppBench(): Promise<string> {
  built ??= doBuild();
  return built;
}

async function doBuild(): Promise<string> {
  const capnpVersion = (await run("capnp", ["--version"])).trim();
  const gxx = (await run("g++", ["--version"])).split("\n")[0] ?? "";
  const flags = (await run("pkg-config", ["--cflags", "--libs", "capnp-rpc"])).trim().split(/\s+/).filter(Boolean);
  const libVersion = (await run("pkg-config", ["--modversion", "capnp-rpc"])).trim();
  const cxxFlags = ["-std=c++17", "-O2"];
  const parts = [await readFile(SOURCE), ...(await Promise.all(SCHEMAS.map((s) => readFile(s)))),
    capnpVersion, gxx, libVersion, flags.join(" "), cxxFlags.join(" ")];
  return cachedBinary("foo-bench", parts, async (out) => {
    const work = await mkdtemp(join(BUILD_DIR, "tmp-"));
    try {
      await run("capnp", ["compile", `-I${PROTO}`, `-oc++:${work}`, `--src-prefix=${PROTO}`, ...SCHEMAS]);
      const bin = join(work, "foo-bench");
      await run("g++", [...cxxFlags, `-I${work}`, "-o", bin, SOURCE,
        join(work, "test", "foo.capnp.c++"), join(work, "mp", "proxy.capnp.c++"), ...flags]);
      await rename(bin, out);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
}

export interface CppStats { n: number; p50_us: number; p99_us: number; mean_us: number }
export interface CppResult {
  add: CppStats;
  pipelined: { calls: number; seconds: number; rate: number };
  ctx: CppStats;
  callback: CppStats;
  data: { bytes: number; n: number; mbps: number };
  /** CPU µs per call of each side (/proc/PID/schedstat; null without it), timed calls only. */
  cpu: { add: CppCpu; pipelined: CppCpu; callback: CppCpu };
}
export interface CppCpu { client_us: number | null; server_us: number | null }

export interface CppRunOptions { n: number; warmup: number; seconds: number; inflight: number; dataBytes: number; dataN: number }

/** Starts `foo-bench serve`, runs `foo-bench client` against it, stops the server. */
export async function runCppReference(dir: string, o: CppRunOptions): Promise<CppResult> {
  const bin = await buildCppBench();
  const path = join(dir, "cpp.sock");
  const server: ChildProcess = spawn(bin, ["serve", "--unix", path], { stdio: ["pipe", "pipe", "pipe"] });
  let err = "";
  server.stderr!.setEncoding("utf8").on("data", (d: string) => { err += d; });
  const exited = new Promise<number | null>((resolve) => server.once("exit", (code) => resolve(code)));
  try {
    await new Promise<void>((resolve, reject) => {
      let out = "";
      server.stdout!.setEncoding("utf8").on("data", (d: string) => {
        out += d;
        if (out.includes("ready\n")) resolve();
      });
      server.once("error", reject);
      void exited.then((code) => reject(new Error(`foo-bench serve exited early (${code}): ${err}`)));
    });
    const stdout = await run(bin, ["client", "--unix", path, "--n", String(o.n), "--warmup", String(o.warmup),
      "--seconds", String(o.seconds), "--inflight", String(o.inflight), "--data-bytes", String(o.dataBytes),
      "--data-n", String(o.dataN), "--server-pid", String(server.pid ?? 0)]);
    const line = stdout.split("\n").find((l) => l.startsWith("{"));
    if (!line) throw new Error(`foo-bench client printed no result: ${stdout}`);
    return JSON.parse(line) as CppResult;
  } finally {
    server.stdin!.end();
    const code = await exited;
    if (code !== 0) process.stderr.write(`bench: foo-bench serve exited with ${code}: ${err}\n`);
  }
}
