/**
 * Builds the C++ reference peer (cpp/peer.c++ + schema/conformance.capnp) against the system's
 * libcapnp-rpc: `capnp compile -oc++` then `g++ ... $(pkg-config --cflags --libs capnp-rpc)`.
 *
 * The binary is cached in test/interop/.build/ under a hash of the sources, the compiler command
 * and the library version, so only the first test file of a run pays the ~3 s. Concurrent
 * callers (vitest runs files in parallel forks) each build into a private directory and rename
 * the finished binary into place; rename is atomic, so a reader never sees a partial file.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { access, mkdir, readFile, rename, rm, mkdtemp } from "node:fs/promises";
import { constants } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** test/interop/ (this file runs from test/interop/dist/). */
export const INTEROP_ROOT = fileURLToPath(new URL("..", import.meta.url));
export const SCHEMA_PATH = join(INTEROP_ROOT, "schema", "conformance.capnp");
export const PEER_SOURCE = join(INTEROP_ROOT, "cpp", "peer.c++");
export const BUILD_DIR = join(INTEROP_ROOT, ".build");

const TOOL_HINT: Record<string, string> = {
  capnp: "apt-get install capnproto",
  "g++": "apt-get install g++",
  "pkg-config": "apt-get install pkg-config libcapnp-dev",
};

interface RunResult { stdout: string; stderr: string }

function run(tool: string, args: string[], opts: { cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(tool, args, { cwd: opts.cwd, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT") {
          reject(new Error(`interop: required tool "${tool}" is not installed or not on PATH ` +
            `(${TOOL_HINT[tool] ?? "install it"}); the C++ conformance peer cannot be built`));
        } else {
          reject(new Error(`interop: \`${tool} ${args.join(" ")}\` failed: ${err.message}\n${stderr}`));
        }
        return;
      }
      resolve({ stdout, stderr });
    });
  });
}

let cached: Promise<string> | undefined;

/** Builds the peer if needed and returns the path of its binary. Throws an Error naming the
 * missing tool when capnp, g++ or pkg-config is absent, or carrying the compiler output. */
export function buildPeer(): Promise<string> {
  cached ??= doBuild().catch((e: unknown) => { cached = undefined; throw e; });
  return cached;
}

async function doBuild(): Promise<string> {
  // Check every tool up front so the error names the first missing one.
  const capnpVersion = (await run("capnp", ["--version"])).stdout.trim();
  const gxxVersion = (await run("g++", ["--version"])).stdout.split("\n")[0] ?? "";
  await run("pkg-config", ["--version"]);
  let flags: string[];
  let libVersion: string;
  try {
    flags = (await run("pkg-config", ["--cflags", "--libs", "capnp-rpc"])).stdout.trim().split(/\s+/).filter(Boolean);
    libVersion = (await run("pkg-config", ["--modversion", "capnp-rpc"])).stdout.trim();
  } catch (e) {
    throw new Error(`interop: pkg-config does not know capnp-rpc (apt-get install libcapnp-dev): ${(e as Error).message}`);
  }

  const compileArgs = ["-std=c++17", "-O1"];
  const hash = createHash("sha256");
  for (const part of [await readFile(SCHEMA_PATH), await readFile(PEER_SOURCE), capnpVersion, gxxVersion,
    libVersion, flags.join(" "), compileArgs.join(" ")]) {
    hash.update(part).update("\0");
  }
  const out = join(BUILD_DIR, `peer-${hash.digest("hex").slice(0, 16)}`);
  try {
    await access(out, constants.X_OK);
    return out;
  } catch {
    // not built yet
  }

  await mkdir(BUILD_DIR, { recursive: true });
  const work = await mkdtemp(join(BUILD_DIR, "tmp-"));
  try {
    await run("capnp", ["compile", `-oc++:${work}`, `--src-prefix=${join(INTEROP_ROOT, "schema")}`, SCHEMA_PATH]);
    const bin = join(work, "peer");
    await run("g++", [...compileArgs, `-I${work}`, "-o", bin, PEER_SOURCE, join(work, "conformance.capnp.c++"), ...flags]);
    await rename(bin, out);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return out;
}
