import { defineConfig } from "vitest/config";

// Tests import the built packages (dist/), so `pnpm test` builds first. Worker threads and child
// processes started by tests load the same built JavaScript.
export default defineConfig({
  // Node 20 has no `using` declarations: esbuild down-levels `await using` (the setups' leak check
  // runs through Symbol.asyncDispose even when an assertion fails).
  esbuild: { target: "node20" },
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/*/test/**/*.test.ts", "proto/test/**/*.test.ts", "bench/test/**/*.test.ts", "examples/test/**/*.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**"],
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: process.env.CI ? ["default", ["json", { outputFile: ".build/vitest.json" }]] : ["default"],
  },
});
