/**
 * Builds and runs bench/c/pingpong.c for the floor breakdown (floor.ts): `gcc -O2` into
 * bench/.build/ (cached under a hash of the source, the compiler's version and the flags), as
 * cpp.ts builds the C++ reference. A missing compiler is a loud error, never a silent skip.
 * Runs on the diagnostic's main thread (build time and run time of `node bench/dist/floor.js`).
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { access, mkdir, readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const BENCH_ROOT = fileURLToPath(new URL("..", import.meta.url));
const SOURCE = join(BENCH_ROOT, "c", "pingpong.c");
const BUILD_DIR = join(BENCH_ROOT, ".build");
const CFLAGS = ["-O2", "-Wall", "-Wextra"];

function run(tool: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(tool, args, { maxBuffer: 1 << 20, timeout: 300_000 }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        reject(new Error(code === "ENOENT"
          ? `bench floor: "${tool}" is not installed (the C ping-pong needs a C compiler: apt-get install gcc)`
          : `bench floor: \`${tool} ${args.join(" ")}\` failed: ${err.message}\n${stderr}`));
        return;
      }
      resolve(stdout);
    });
  });
}

let built: Promise<string> | undefined;

/** Builds (once, cached on disk) and returns the path of the pingpong binary. */
export function buildPingPong(): Promise<string> {
  built ??= doBuild();
  return built;
}

async function doBuild(): Promise<string> {
  const cc = (await run("gcc", ["--version"])).split("\n")[0] ?? "";
  const hash = createHash("sha256");
  for (const part of [await readFile(SOURCE), cc, CFLAGS.join(" ")]) hash.update(part).update("\0");
  const out = join(BUILD_DIR, `pingpong-${hash.digest("hex").slice(0, 16)}`);
  try {
    await access(out, constants.X_OK);
    return out;
  } catch {
    // not built yet
  }
  await mkdir(BUILD_DIR, { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  await run("gcc", [...CFLAGS, "-o", tmp, SOURCE]);
  await rename(tmp, out);
  return out;
}

export interface PingPongResult { mode: string; n: number; p50_us: number; p99_us: number; cpu_client_us: number; cpu_server_us: number }

/** One C run: `mode` "block" (blocking read/write) or "epoll" (libuv's pattern). */
export async function runPingPong(mode: "block" | "epoll", req: number, reply: number, n: number, warmup: number, pin: boolean): Promise<PingPongResult> {
  const bin = await buildPingPong();
  const args = [mode, String(req), String(reply), String(n), String(warmup)];
  const out = pin ? await run("taskset", ["-c", "0", bin, ...args]) : await run(bin, args);
  return JSON.parse(out) as PingPongResult;
}
