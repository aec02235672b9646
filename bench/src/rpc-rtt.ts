/**
 * Sequential small-call round trip (`Calc.add`) over a Unix socket, p50/p99 in µs:
 *
 *   TS client  → TS server (second Node process)
 *   TS client  → C++ server (test/interop's reference peer, Debian libcapnp-rpc)
 *   C++ client → TS server (second Node process)
 *   C++ client → C++ server
 *
 * Usage: `node bench/dist/rpc-rtt.js [--n 5000] [--warmup 500] [--json]`. The C++ peer is
 * built on first use (needs capnp, g++, pkg-config; fails loudly without them).
 * Internal: `--serve PATH` runs the TS server side until stdin reaches EOF.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Capability } from "@multiprocess-ts/capnp";
import {
  add,
  connectUnix,
  runCppBench,
  socketDir,
  startCppServer,
  startTsServer,
} from "@multiprocess-ts/test-interop";

interface Row { path: string; n: number; p50_us: number; p99_us: number; mean_us: number }

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${name} needs a positive integer`);
  return v;
}

function summarize(path: string, us: number[]): Row {
  const sorted = [...us].sort((a, b) => a - b);
  const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  const r1 = (x: number) => Math.round(x * 10) / 10;
  return { path, n: sorted.length, p50_us: r1(pct(0.5)), p99_us: r1(pct(0.99)), mean_us: r1(mean) };
}

/** n sequential add calls after `warmup` untimed ones, each timed on its own. */
async function tsClientRun(path: string, label: string, n: number, warmup: number): Promise<Row> {
  const { rpc } = await connectUnix(path, "bench-client");
  const calc: Capability = rpc.bootstrap();
  try {
    for (let i = 0; i < warmup; i++) {
      if ((await add(calc, i, 1)) !== i + 1) throw new Error("wrong sum");
    }
    const us: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint();
      const sum = await add(calc, i, 1);
      const t1 = process.hrtime.bigint();
      if (sum !== i + 1) throw new Error("wrong sum");
      us.push(Number(t1 - t0) / 1000);
    }
    return summarize(label, us);
  } finally {
    calc.close();
    await rpc.close();
  }
}

/** Starts `node rpc-rtt.js --serve path` and resolves once it listens. */
async function startTsServerProcess(path: string): Promise<{ proc: ChildProcess; stop(): Promise<void> }> {
  const self = fileURLToPath(import.meta.url);
  const proc = spawn(process.execPath, [self, "--serve", path], { stdio: ["pipe", "pipe", "inherit"] });
  proc.stdin!.on("error", () => {}); // closing stdin of a server that already died: no EPIPE crash
  await new Promise<void>((resolve, reject) => {
    let out = "";
    proc.stdout!.setEncoding("utf8").on("data", (d: string) => {
      out += d;
      if (out.includes("ready\n")) resolve();
    });
    proc.once("error", reject);
    proc.once("exit", (code) => reject(new Error(`TS server process exited early (code ${code})`)));
  });
  return {
    proc,
    stop: () => new Promise<void>((resolve) => {
      if (proc.exitCode !== null) { resolve(); return; }
      proc.once("exit", () => resolve());
      proc.stdin!.end();
    }),
  };
}

async function serve(path: string): Promise<void> {
  const server = await startTsServer(path);
  process.stdout.write("ready\n");
  process.stdin.resume();
  await new Promise<void>((resolve) => process.stdin.once("end", () => resolve()));
  await server.close();
}

async function main(): Promise<void> {
  const si = process.argv.indexOf("--serve");
  if (si >= 0) {
    await serve(process.argv[si + 1]!);
    return;
  }
  const n = arg("--n", 5000);
  const warmup = arg("--warmup", 500);
  const rows: Row[] = [];
  const dir = await socketDir();
  try {
    const tsServer = await startTsServerProcess(join(dir.dir, "ts.sock"));
    const cppServer = await startCppServer(join(dir.dir, "cpp.sock"));
    try {
      rows.push(await tsClientRun(join(dir.dir, "ts.sock"), "TS client  -> TS server (2 Node processes)", n, warmup));
      rows.push(await tsClientRun(cppServer.path, "TS client  -> C++ server", n, warmup));
      rows.push({ path: "C++ client -> TS server (2 processes)", ...(await runCppBench(join(dir.dir, "ts.sock"), n, warmup)) });
      rows.push({ path: "C++ client -> C++ server", ...(await runCppBench(cppServer.path, n, warmup)) });
    } finally {
      await tsServer.stop();
      const code = await cppServer.stop();
      if (code !== 0) throw new Error(`C++ server exited with ${code}: ${cppServer.stderr()}`);
    }
  } finally {
    await dir.remove();
  }
  if (process.argv.includes("--json")) {
    process.stdout.write(JSON.stringify(rows) + "\n");
    return;
  }
  process.stdout.write(`Sequential Calc.add round trip over a Unix socket (${n} calls after ${warmup} warm-up; µs)\n`);
  const w = Math.max(...rows.map((r) => r.path.length));
  process.stdout.write(`${"path".padEnd(w)}  ${"p50".padStart(8)}  ${"p99".padStart(8)}  ${"mean".padStart(8)}\n`);
  for (const r of rows) {
    process.stdout.write(`${r.path.padEnd(w)}  ${r.p50_us.toFixed(1).padStart(8)}  ${r.p99_us.toFixed(1).padStart(8)}  ${r.mean_us.toFixed(1).padStart(8)}\n`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`rpc-rtt: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exitCode = 1;
});
