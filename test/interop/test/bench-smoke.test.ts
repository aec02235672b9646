// bench/src/rpc-rtt.ts runs end to end (tiny n): all four paths produce numbers. Needs the
// bench package built (`pnpm build`); the measurement itself is `node bench/dist/rpc-rtt.js`.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { INTEROP_ROOT } from "@multiprocess-ts/test-interop";

const SCRIPT = join(INTEROP_ROOT, "..", "..", "bench", "dist", "rpc-rtt.js");

describe("bench/rpc-rtt", () => {
  it("measures all four paths", async () => {
    expect(existsSync(SCRIPT), `${SCRIPT} is missing: run \`pnpm build\``).toBe(true);
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [SCRIPT, "--n", "50", "--warmup", "10", "--json"], { timeout: 120_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`${err.message}\n${stderr}`));
        else resolve(stdout);
      });
    });
    const rows = JSON.parse(out.trim().split("\n").pop()!) as { path: string; n: number; p50_us: number; p99_us: number }[];
    expect(rows.map((r) => r.n)).toEqual([50, 50, 50, 50]);
    for (const r of rows) {
      expect(r.p50_us).toBeGreaterThan(0);
      expect(r.p99_us).toBeGreaterThanOrEqual(r.p50_us);
    }
  });
});
