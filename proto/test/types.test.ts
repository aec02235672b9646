/**
 * Compile-only type tests of the generated API: proto/test/types/*.ts must type-check under the
 * repository's strict settings, and every `@ts-expect-error` there must be needed (an unneeded
 * one is itself an error). Uses the built declarations in proto/dist (run `pnpm build` first).
 */
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const here = path.dirname(fileURLToPath(import.meta.url));

describe("generated API types", () => {
  it("proto/test/types type-checks with tsc --noEmit (strict)", () => {
    const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
    let out = "";
    try {
      out = execFileSync(process.execPath, [tsc, "-p", path.join(here, "types/tsconfig.json")], { encoding: "utf8" });
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string };
      out = `${err.stdout ?? ""}${err.stderr ?? ""}` || String(e);
    }
    expect(out).toBe("");
  });
});
