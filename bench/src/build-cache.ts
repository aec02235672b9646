/**
 * The bench's native helpers (the C++ reference in cpp.ts, the C ping-pong in floor-c.ts): running
 * their tools, and building each binary once into bench/.build/, cached under a hash of everything
 * that went into it (sources, tool versions, flags). A missing tool is a loud error naming what to
 * install, never a silent skip. Main thread of the bench and its diagnostics.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { access, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const BENCH_ROOT = fileURLToPath(new URL("..", import.meta.url));
export const BUILD_DIR = join(BENCH_ROOT, ".build");

/**
 * Runs `tool` and resolves with its stdout. `label` prefixes errors ("bench", "bench floor"); `needs`
 * says what a missing tool means ("the C++ reference needs …").
 */
export function runTool(tool: string, args: string[], label: string, needs: string, maxBuffer = 16 << 20): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(tool, args, { maxBuffer, timeout: 300_000 }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        reject(new Error(code === "ENOENT"
          ? `${label}: "${tool}" is not installed (${needs})`
          : `${label}: \`${tool} ${args.join(" ")}\` failed: ${err.message}\n${stderr}`));
        return;
      }
      resolve(stdout);
    });
  });
}

/**
 * The path of `name`'s binary for these inputs: `BUILD_DIR/name-<hash of parts>`, made by `build(out)`
 * when it is not there yet (`build` must create `out` atomically, e.g. by a rename).
 */
export async function cachedBinary(name: string, parts: (string | Buffer)[], build: (out: string) => Promise<void>): Promise<string> {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part).update("\0");
  const out = join(BUILD_DIR, `${name}-${hash.digest("hex").slice(0, 16)}`);
  try {
    await access(out, constants.X_OK);
    return out;
  } catch {
    // not built yet
  }
  await mkdir(BUILD_DIR, { recursive: true });
  await build(out);
  return out;
}
