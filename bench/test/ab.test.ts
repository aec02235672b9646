// The paired two-build diagnostics (diag-p3-ab.js, diag-p4-ab.js) run end to end with tiny loops
// against this checkout twice (built dist/, so `pnpm build` first): each prints both builds'
// medians and the paired differences as finite numbers. Speed is printed, never asserted.
import { execFile } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { assertNoHandleLeaks, handleBaseline } from "@multiprocess-ts/testing";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const DIST = join(HERE, "..", "dist");
const ROOT = join(HERE, "..", "..");

function run(script: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [join(DIST, script), ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${script} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** The numbers after each `name value` pair on the line starting with `prefix`. */
function values(out: string, prefix: string, names: string[]): number[] {
  const line = out.split("\n").find((l) => l.startsWith(prefix));
  expect(line, `a line starting "${prefix}" in:\n${out}`).toBeDefined();
  return names.map((n) => Number(new RegExp(`\\b${n} (-?[\\d.]+)`).exec(line!)?.[1]));
}

describe("paired two-build diagnostics", () => {
  it("diag-p4-ab.js prints each build's P4 medians and the paired differences", async () => {
    const baseline = handleBaseline();
    const out = await run("diag-p4-ab.js", ["--a", ROOT, "--b", ROOT, "--n", "50", "--blocks", "2", "--warm", "1"]);
    const keys = ["p50", "client", "server", "cw", "sw"];
    for (const p of ["A ", "B "]) for (const v of values(out, p, keys)) expect(Number.isFinite(v) && v >= 0).toBe(true);
    for (const v of values(out, "B − A", keys)) expect(Number.isFinite(v)).toBe(true);
    await assertNoHandleLeaks(baseline);
  });

  it("diag-p3-ab.js prints each build's P3 medians per thread and the paired differences", async () => {
    const baseline = handleBaseline();
    const out = await run("diag-p3-ab.js", ["--a", ROOT, "--b", ROOT, "--n", "100", "--warmup", "50", "--blocks", "2"]);
    const keys = ["p50", "worker", "loop", "server", "writes"];
    for (const p of ["A ", "B "]) for (const v of values(out, p, keys)) expect(Number.isFinite(v) && v >= 0).toBe(true);
    for (const v of values(out, "B − A", keys)) expect(Number.isFinite(v)).toBe(true);
    await assertNoHandleLeaks(baseline);
  });
});
