/**
 * Starting and driving the C++ reference peer (see cpp/peer.c++ for its modes). Every process
 * started here is ended by the returned handle (by its pid via ChildProcess.kill, or by closing
 * its stdin), never by name.
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { buildPeer } from "./build.js";

/** One line of `peer client` output. */
export interface CheckResult { name: string; ok: boolean; error?: string }

/** A fresh private directory for Unix sockets; remove it with the returned function. */
export async function socketDir(): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "mpts-interop-"));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

export interface CppServer {
  readonly path: string;
  readonly proc: ChildProcess;
  /** Everything the peer wrote to stderr so far. */
  stderr(): string;
  /** Closes the peer's stdin (it exits on EOF) and resolves with its exit code. */
  stop(): Promise<number | null>;
}

function exited(proc: ChildProcess): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((resolve) => proc.once("exit", (code) => resolve(code)));
}

/** `peer serve --unix path`: resolves once the peer printed "ready" (it is listening). */
export async function startCppServer(path: string): Promise<CppServer> {
  const bin = await buildPeer();
  const proc = spawn(bin, ["serve", "--unix", path], { stdio: ["pipe", "pipe", "pipe"] });
  let err = "";
  proc.stderr!.setEncoding("utf8").on("data", (d: string) => { err += d; });
  // Closing stdin of a peer that already died must not throw an unhandled EPIPE.
  proc.stdin!.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    let out = "";
    const onData = (d: string) => {
      out += d;
      if (out.includes("ready\n")) { proc.stdout!.off("data", onData); resolve(); }
    };
    proc.stdout!.setEncoding("utf8").on("data", onData);
    proc.once("error", reject);
    proc.once("exit", (code, sig) => reject(new Error(`C++ peer exited before listening (code ${code}, signal ${sig}): ${err}`)));
  });
  return {
    path, proc,
    stderr: () => err,
    stop: () => { proc.stdin!.end(); return exited(proc); },
  };
}

function runPeer(args: string[], timeoutMs: number): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return buildPeer().then((bin) => new Promise((resolve, reject) => {
    execFile(bin, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === "ENOENT") { reject(err); return; }
      if (err && err.killed) { reject(new Error(`peer ${args.join(" ")} timed out after ${timeoutMs} ms; stdout:\n${stdout}\nstderr:\n${stderr}`)); return; }
      resolve({ stdout, stderr, code: err ? (typeof err.code === "number" ? err.code : 1) : 0 });
    });
  }));
}

function jsonLines(text: string): unknown[] {
  return text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as unknown);
}

/** `peer client --unix path`: the C++ client's check list against a server at `path`. */
export async function runCppClient(path: string): Promise<{ checks: CheckResult[]; done: boolean; stderr: string; code: number | null }> {
  const r = await runPeer(["client", "--unix", path], 120_000);
  const lines = jsonLines(r.stdout) as (CheckResult & { done?: boolean })[];
  return { checks: lines.filter((l) => typeof l.name === "string"), done: lines.some((l) => l.done === true), stderr: r.stderr, code: r.code };
}

export type MalformedKind = "framing" | "segment-size" | "pointer" | "bad-target" | "unknown";
export interface MalformedResult {
  kind: MalformedKind; eof: boolean;
  got: { abort?: string; type?: string; unimplemented?: number; afterwards?: string; other?: number; error?: string }[];
}

/** `peer malformed --unix path --kind K`: what the server at `path` answered to garbage. */
export async function runMalformed(path: string, kind: MalformedKind): Promise<MalformedResult> {
  const r = await runPeer(["malformed", "--unix", path, "--kind", kind], 30_000);
  const [line] = jsonLines(r.stdout);
  if (!line) throw new Error(`peer malformed printed nothing (code ${r.code}): ${r.stderr}`);
  return line as MalformedResult;
}

export interface BenchResult { n: number; p50_us: number; p99_us: number; mean_us: number }

/** `peer bench`: n sequential add calls from a C++ client to the server at `path`. */
export async function runCppBench(path: string, n: number, warmup: number): Promise<BenchResult> {
  const r = await runPeer(["bench", "--unix", path, "--n", String(n), "--warmup", String(warmup)], 300_000);
  const [line] = jsonLines(r.stdout);
  if (!line) throw new Error(`peer bench printed nothing (code ${r.code}): ${r.stderr}`);
  return line as BenchResult;
}

/** `peer client --fd 3`: the C++ client's check list over an inherited socketpair; `socket` is our
 * end (serve on it), `result` settles when the peer exits. */
export async function spawnFdClient(): Promise<{ proc: ChildProcess; socket: Duplex; result: Promise<{ checks: CheckResult[]; done: boolean; stderr: string; code: number | null }> }> {
  const bin = await buildPeer();
  const proc = spawn(bin, ["client", "--fd", "3"], { stdio: ["ignore", "pipe", "pipe", "pipe"] });
  let out = "";
  let err = "";
  proc.stdout!.setEncoding("utf8").on("data", (d: string) => { out += d; });
  proc.stderr!.setEncoding("utf8").on("data", (d: string) => { err += d; });
  const result = exited(proc).then((code) => {
    const lines = jsonLines(out) as (CheckResult & { done?: boolean })[];
    return { checks: lines.filter((l) => typeof l.name === "string"), done: lines.some((l) => l.done === true), stderr: err, code };
  });
  return { proc, socket: proc.stdio[3] as Duplex, result };
}

/** `peer serve --fd 3` on an inherited socketpair (Node's stdio 'pipe' is a Unix socketpair),
 * the way libmultiprocess spawns its children. */
export async function spawnFdServer(): Promise<{ proc: ChildProcess; socket: Duplex; stderr(): string; exited: Promise<number | null> }> {
  const bin = await buildPeer();
  const proc = spawn(bin, ["serve", "--fd", "3"], { stdio: ["ignore", "ignore", "pipe", "pipe"] });
  let err = "";
  proc.stderr!.setEncoding("utf8").on("data", (d: string) => { err += d; });
  const socket = proc.stdio[3] as Duplex;
  return { proc, socket, stderr: () => err, exited: exited(proc) };
}
