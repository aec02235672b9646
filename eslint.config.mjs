// ESLint for the workspace: a small, type-aware rule set (issue 10). Promises are the usual way a
// Node RPC library loses errors, so floating and misused promises are errors; member accessibility
// is kept consistent (no redundant `public`). Generated code (proto/src, gen golden fixtures) is
// checked by tsc only.
import tseslint from "typescript-eslint";

export default tseslint.config(
  {
    ignores: [
      "**/dist/**",
      "**/node_modules/**",
      "**/*.capnp.ts",
      "packages/gen/test/fixtures/**",
      // The consumer test's app: compiled in a temp folder against the installed packages (scripts/consumer-test.mjs).
      "test/consumer/app/**",
      "**/*.mjs",
      "**/*.js",
      "**/*.cjs",
      "**/test/fixtures/**",
      "**/*.d.ts",
      "vitest.config.ts",
    ],
  },
  {
    files: ["**/*.ts"],
    languageOptions: {
      parser: tseslint.parser,
      // Sources belong to their package's tsconfig; tests to tsconfig.tests.json (checked against
      // the built packages, so run `pnpm build` first).
      parserOptions: {
        project: ["./packages/*/tsconfig.json", "./test/*/tsconfig.json", "./proto/tsconfig.json", "./bench/tsconfig.json", "./examples/tsconfig.json", "./tsconfig.tests.json"],
        tsconfigRootDir: import.meta.dirname,
      },
    },
    plugins: { "@typescript-eslint": tseslint.plugin },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/explicit-member-accessibility": ["error", { accessibility: "no-public" }],
    },
  },
);
