/**
 * `pnpm bench [--rounds R] [--pin | --pin-only] [--peers] [--json FILE] [--quick] [--only P1,...]
 *  [--no-cpp] [--profile DIR] [--n N] [--warmup W] [--seconds S] [--conns C] [--stream-reads]
 *  [--server-stream-reads] [--pair-block B] [--pair-warmup W]`
 * `pnpm bench --hostile [...]` / `pnpm bench --fuzz-frames N`: the hostile-peer benchmark and the
 * seeded fuzz run instead (bench/src/hostile.ts).
 *
 * The orchestrator (main thread of the `pnpm bench` process): runs R rounds of run.js, each a
 * fresh client process with its own server children, in each mode (unpinned; pinned = the whole
 * round under `taskset -c 0`, so client, server and worker share one CPU and latency ≈ CPU per
 * call), alternating the modes within each round; then prints one table per mode with the median
 * and range of every row over the rounds. See bench/README.md.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { here, log } from "./children.js";
import { aggregate, pairedLines, tableLines, type Figure } from "./figures.js";
import type { RunOptions } from "./run.js";

const argv = process.argv.slice(2);
function opt(name: string): string | undefined {
  const i = argv.indexOf(name);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  if (v === undefined || v.startsWith("--")) throw new Error(`${name} needs a value`);
  return v;
}
const has = (name: string): boolean => argv.includes(name);
const quick = has("--quick");
const jsonFile = opt("--json");
const rounds = Number(opt("--rounds") ?? (quick ? 1 : 3));
const modes: ("unpinned" | "pinned")[] = has("--pin-only") ? ["pinned"] : has("--pin") ? ["unpinned", "pinned"] : ["unpinned"];
const base: Omit<RunOptions, "tag" | "out"> = {
  n: Number(opt("--n") ?? (quick ? 2000 : 10_000)),
  warmup: Number(opt("--warmup") ?? (quick ? 500 : 2000)),
  seconds: Number(opt("--seconds") ?? (quick ? 1 : 3)),
  conns: Number(opt("--conns") ?? (quick ? 300 : 1000)),
  only: (opt("--only") ?? "P1,P2,P3,P4,P5,P6").toUpperCase().split(","),
  cpp: !has("--no-cpp"),
  quick,
  peers: has("--peers"),
  streamReads: has("--stream-reads"),
  serverStreamReads: has("--server-stream-reads"),
  pairBlock: Number(opt("--pair-block") ?? (quick ? 500 : 2000)),
  pairWarmup: Number(opt("--pair-warmup") ?? (quick ? 2000 : 10_000)),
};
if (!(Number.isInteger(base.pairBlock) && base.pairBlock! > 0)) throw new Error("--pair-block needs a positive integer");
if (!(Number.isInteger(base.pairWarmup) && base.pairWarmup! >= 0)) throw new Error("--pair-warmup needs a non-negative integer");
const profileDir = opt("--profile");
if (profileDir !== undefined) base.profileDir = profileDir;

interface RoundResult { figures: Figure[]; info: Record<string, unknown>; cpp: unknown }

function runRound(mode: "unpinned" | "pinned", tag: string, out: string): Promise<void> {
  const opts: RunOptions = { ...base, tag, out };
  const nodeArgs = [...(process.env.BENCH_NODE_FLAGS?.split(" ").filter(Boolean) ?? []), ...(profileDir !== undefined ? ["--cpu-prof", "--cpu-prof-dir", profileDir] : []), here("./run.js"), JSON.stringify(opts)];
  const [cmd, args] = mode === "pinned" ? ["taskset", ["-c", "0", process.execPath, ...nodeArgs]] : [process.execPath, nodeArgs];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "inherit", "inherit"] });
    child.once("error", reject);
    child.once("exit", (code, sig) => (code === 0 ? resolve() : reject(new Error(`bench round ${tag} failed (${sig ?? code})`))));
  });
}

async function main(): Promise<void> {
  if (modes.includes("pinned") && spawnSync("taskset", ["-c", "0", "true"]).status !== 0) {
    throw new Error("--pin needs taskset (util-linux) and CPU 0");
  }
  const started = new Date();
  const loadBefore = loadavg();
  const dir = await mkdtemp(join(tmpdir(), "mpts-bench-main-"));
  const results = new Map<string, RoundResult[]>(modes.map((m) => [m, []]));
  try {
    for (let r = 1; r <= rounds; r++) {
      for (const mode of r % 2 === 1 ? modes : [...modes].reverse()) {
        const tag = `${mode}-${r}`;
        log(`round ${r}/${rounds}, ${mode} (load ${loadavg().map((x) => x.toFixed(1)).join(" ")})`);
        const out = join(dir, `${tag}.json`);
        await runRound(mode, tag, out);
        results.get(mode)!.push(JSON.parse(await readFile(out, "utf8")) as RoundResult);
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const loadAfter = loadavg();
  const machine = {
    node: process.version, platform: `${process.platform}-${process.arch}`, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? "unknown",
    memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    loadBefore: loadBefore.map((x) => Math.round(x * 100) / 100), loadAfter: loadAfter.map((x) => Math.round(x * 100) / 100),
  };
  const elapsed = (Date.now() - started.getTime()) / 1000;
  const out: string[] = [
    `multiprocess-ts bench — ${started.toISOString()} — node ${machine.node}, ${machine.cpus} CPUs (${machine.cpuModel}), load ${machine.loadBefore.join(" ")} → ${machine.loadAfter.join(" ")}`,
    `TS client and TS server in two processes over a Unix socket, generated FooInterface proxies; n=${base.n} (+${base.warmup} warm-up), ${base.seconds} s pipelined; ${rounds} round(s) per mode, median and range of ours; ${elapsed.toFixed(0)} s total`,
    "floor = raw Node u32-length-prefixed ping-pong of the same bytes, 2 processes, same socket kind; C++ ref = libcapnp-rpc C++ client ↔ C++ server, same schema",
    "CPU per call = process.cpuUsage() of each side / calls (the client's includes its worker threads)",
    ...(base.peers ? [`paired (--peers) = ours and birpc in the same round, each client in its own process, ${base.pairWarmup} warm-up calls each, then alternating blocks of ${base.pairBlock} sequential calls (P1) and 0.5 s windows (P2); targets against birpc scored on the median of the per-round ratios`] : []),
  ];
  const json: Record<string, unknown> = { date: started.toISOString(), elapsedSeconds: elapsed, machine, params: { ...base, rounds, modes }, modes: {} };
  for (const mode of modes) {
    const rs = results.get(mode)!;
    const rows = aggregate(rs.map((x) => x.figures));
    out.push("", `== ${mode}${mode === "pinned" ? " (taskset -c 0: client, server and workers on one CPU)" : ""} ==`, ...tableLines(rows), ...pairedLines(rows));
    const paired = rows.filter((f) => f.paired === true).map((f) => ({
      name: f.name, unit: f.unit, ours: f.ours, peer: f.floor, ratioPerRound: f.ratios ?? [], ratioMedian: f.ratio, ratioRange: f.ratioRange ?? null, target: f.target, met: f.met,
    }));
    (json["modes"] as Record<string, unknown>)[mode] = { figures: rows, paired, rounds: rs };
  }
  process.stdout.write(out.join("\n") + "\n");
  if (jsonFile !== undefined) {
    await writeFile(jsonFile, JSON.stringify(json, null, 2) + "\n");
    log(`wrote ${jsonFile}`);
  }
}

// `--hostile` / `--fuzz-frames N` run the hostile-peer benchmark and the seeded fuzz run instead
// (bench/src/hostile.ts); the process exits when that run is over (loop handles may linger).
const run = has("--hostile") || has("--fuzz-frames")
  ? import("./hostile.js").then(async (h) => { await h.hostileMain(argv); process.exit(process.exitCode ?? 0); })
  : main();
run.catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
