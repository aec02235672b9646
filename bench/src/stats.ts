import { readdirSync, readFileSync, readlinkSync } from "node:fs";
/** Percentiles and small formatting helpers shared by the bench entry and its child processes. */

export interface Latency { n: number; p50: number; p99: number; mean: number }

/** p50/p99/mean of a list of durations (µs). Nearest-rank on the sorted list. */
export function latency(us: readonly number[] | Float64Array): Latency {
  const sorted = Float64Array.from(us).sort();
  if (sorted.length === 0) throw new Error("latency: no samples");
  const pct = (p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
  let sum = 0;
  for (const v of sorted) sum += v;
  return { n: sorted.length, p50: pct(0.5), p99: pct(0.99), mean: sum / sorted.length };
}

/**
 * CPU time (µs) the calling thread has run so far, from Linux's /proc/thread-self/schedstat (ns);
 * null where that file does not exist. Lets the P3 worker report its own share of the client's CPU.
 */
export function threadCpuUs(): number | null {
  try {
    return Number(readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[0]) / 1000;
  } catch {
    return null;
  }
}

/** CPU µs (user + system) this process has used so far: one native call (process.cpuUsage). */
export function cpuUs(): number {
  const c = process.cpuUsage();
  return c.user + c.system;
}

/** Per thread of this process (by tid): CPU ns and timeslices run (switch-ins) so far. */
export type ThreadStats = Map<string, { cpuNs: number; slices: number }>;

/**
 * Every thread's /proc/self/task/TID/schedstat (CPU ns, wait ns, timeslices); empty where Linux's
 * /proc is missing. Diffing two snapshots gives each thread's CPU and how often it was switched
 * in (a wake-up, or a return after preemption) over a window.
 */
export function threadStats(): ThreadStats {
  const m: ThreadStats = new Map();
  let tids: string[];
  try {
    tids = readdirSync("/proc/self/task");
  } catch {
    return m;
  }
  for (const tid of tids) {
    try {
      const f = readFileSync(`/proc/self/task/${tid}/schedstat`, "utf8").split(" ");
      m.set(tid, { cpuNs: Number(f[0]), slices: Number(f[2]) });
    } catch {
      // the thread exited meanwhile
    }
  }
  return m;
}

/** Write-type syscalls this process made so far (/proc/self/io `syscw`), or null. */
export function writeSyscalls(): number | null {
  try {
    const m = /^syscw: (\d+)$/m.exec(readFileSync("/proc/self/io", "utf8"));
    return m === null ? null : Number(m[1]);
  } catch {
    return null;
  }
}

/** This thread's id (from /proc/thread-self), or null. */
export function threadId(): string | null {
  try {
    return readlinkSync("/proc/thread-self").split("/").pop() ?? null;
  } catch {
    return null;
  }
}

/** Times `n` sequential calls of `fn` after `warmup` untimed ones; returns per-call µs. */
export async function timeSequential(n: number, warmup: number, fn: (i: number) => Promise<unknown>): Promise<Float64Array> {
  for (let i = 0; i < warmup; i++) await fn(i);
  const us = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn(i);
    us[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  return us;
}

/**
 * Keeps `inflight` calls outstanding for `seconds` (after a short warm-up of the same shape) and
 * returns completed calls per second.
 */
export async function pipelinedRate(inflight: number, seconds: number, fn: () => Promise<unknown>, warmupSeconds = 0.5): Promise<{ calls: number; seconds: number; rate: number }> {
  const run = (secs: number): Promise<{ calls: number; seconds: number }> => new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const deadline = t0 + BigInt(Math.round(secs * 1e9));
    let calls = 0;
    let live = inflight;
    let failed = false;
    const lane = (): void => {
      fn().then(() => {
        calls++;
        if (process.hrtime.bigint() < deadline) { lane(); return; }
        if (--live === 0) resolve({ calls, seconds: Number(process.hrtime.bigint() - t0) / 1e9 });
      }, (e: unknown) => { if (!failed) { failed = true; reject(e); } });
    };
    for (let i = 0; i < inflight; i++) lane();
  });
  if (warmupSeconds > 0) await run(warmupSeconds);
  const r = await run(seconds);
  return { ...r, rate: r.calls / r.seconds };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Calls in flight for the pipelined figures (P2 and the peers'). */
export const INFLIGHT = 64;
/** Payload of the P5 echo. */
export const DATA_BYTES = 1 << 20;

/** Time-boxed sequential 1 MiB echo: payload MB/s (10^6 bytes/s, payload counted once per call). */
export async function echoRate(seconds: number, fn: () => Promise<void>): Promise<{ mbps: number; calls: number }> {
  for (let i = 0; i < 5; i++) await fn();
  const t0 = process.hrtime.bigint();
  let calls = 0;
  let el = 0;
  do {
    await fn();
    calls++;
    el = Number(process.hrtime.bigint() - t0) / 1e9;
  } while (el < seconds || calls < 10);
  return { mbps: (DATA_BYTES * calls) / el / 1e6, calls };
}

/** Read- and write-family syscalls this process made so far (Linux /proc/self/io), or null. */
export interface SyscallCounts { reads: number; writes: number }
export function syscallCounts(): SyscallCounts | null {
  try {
    const t = readFileSync("/proc/self/io", "utf8");
    const r = /syscr:\s*(\d+)/.exec(t), w = /syscw:\s*(\d+)/.exec(t);
    return r === null || w === null ? null : { reads: Number(r[1]), writes: Number(w[1]) };
  } catch {
    return null;
  }
}
